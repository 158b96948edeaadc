-- Mirror imports (removals: unset): a run's key chunk reads every key of the source rather
-- than a range of changes; the import keeps the object holding the key set of its last
-- successful run, which the next run's key chunk compares its own with.
ALTER TABLE control.chunks
    ADD COLUMN kind text NOT NULL DEFAULT 'rows' CHECK (kind IN ('rows', 'keys')),
    ADD COLUMN profiles_removed_from_source bigint NOT NULL DEFAULT 0;
ALTER TABLE control.imports ADD COLUMN key_set text;
