-- Events, purchases and deletes: the workspace's retention policy and per-chunk counts.
ALTER TABLE control.workspaces ADD COLUMN event_retention_days integer;

ALTER TABLE control.chunks
    ADD COLUMN events_inserted   bigint NOT NULL DEFAULT 0,
    ADD COLUMN events_duplicate  bigint NOT NULL DEFAULT 0,
    ADD COLUMN profiles_deleted  bigint NOT NULL DEFAULT 0,
    ADD COLUMN deletes_not_found bigint NOT NULL DEFAULT 0;
