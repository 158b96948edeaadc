-- What a chunk's load left aside (values older than the store's, per property; rows whose
-- unique identities name two profiles) and the events its transform stamped with the run's
-- start for want of a time.
ALTER TABLE control.chunks
    ADD COLUMN properties_stale       bigint NOT NULL DEFAULT 0,
    ADD COLUMN identities_conflicting bigint NOT NULL DEFAULT 0,
    ADD COLUMN events_time_imputed    bigint NOT NULL DEFAULT 0;
