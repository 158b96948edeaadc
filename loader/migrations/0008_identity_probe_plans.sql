-- A profile's identities are found by profile id first. Led by the workspace, this index
-- competed with the identities' key for every probe by (workspace, kind, value): where the
-- statistics still called a grown workspace small, the planner walked the whole workspace
-- here and filtered on the kind and value, row by row. Led by the profile id, it serves only
-- look-ups that name a profile, and a probe by identity can only use the key.
DROP INDEX profile_store.identities_by_profile;
CREATE INDEX identities_by_profile ON profile_store.identities (profile_id, workspace_id);

-- The same holds for email and phone against the profiles' key (workspace, profile id): led by
-- the value, these indexes serve the probes, which name the workspace in a form no index uses.
DROP INDEX profile_store.profiles_by_email;
DROP INDEX profile_store.profiles_by_phone;
CREATE INDEX profiles_by_email ON profile_store.profiles (email, workspace_id)
    WHERE email IS NOT NULL;
CREATE INDEX profiles_by_phone ON profile_store.profiles (phone, workspace_id)
    WHERE phone IS NOT NULL;
