-- Identities are compared byte by byte: every resolution probe and every insert into the
-- identities key compares values many times, and the "C" collation does it without the
-- locale's rules (identity values are opaque; their order means nothing to anyone).
ALTER TABLE profile_store.identities
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN value TYPE text COLLATE "C";

-- Identities no longer check their profile row by a foreign key on every insert: a per-row
-- trigger lookup that doubled the cost of creating profiles. Deletes remove a profile's
-- identities themselves, and a delete holds the workspace's profile lock exclusively while
-- loads hold it shared, so no load links an identity to a profile being deleted.
ALTER TABLE profile_store.identities
    DROP CONSTRAINT IF EXISTS identities_workspace_id_profile_id_fkey;

-- Event dedup keys are opaque too: the key is probed and inserted once per event.
ALTER TABLE profile_store.event_keys ALTER COLUMN dedup_key TYPE text COLLATE "C";

-- Room on each page for a profile's next version: event loads update every profile's event
-- lifecycle and imports its properties (no indexed column), and a version that fits on its
-- page touches no index.
ALTER TABLE profile_store.profiles SET (fillfactor = 80);

-- Email and phone are indexed by value alone: the few profiles sharing one are ordered by
-- updated_at when looked up. With updated_at out of every index, a profile's update that
-- keeps its email and phone stays on its page (a heap-only tuple) and writes no index entry.
DROP INDEX profile_store.profiles_by_email;
DROP INDEX profile_store.profiles_by_phone;
CREATE INDEX profiles_by_email ON profile_store.profiles (workspace_id, email)
    WHERE email IS NOT NULL;
CREATE INDEX profiles_by_phone ON profile_store.profiles (workspace_id, phone)
    WHERE phone IS NOT NULL;
