-- Every profile's event lifecycle, maintained by event loads.
ALTER TABLE profile_store.profiles
    ADD COLUMN first_event_at timestamptz,
    ADD COLUMN last_event_at  timestamptz,
    ADD COLUMN event_count    bigint NOT NULL DEFAULT 0;

-- The event store, partitioned by month; the loader creates partitions as events arrive.
CREATE SEQUENCE profile_store.event_id_seq;

CREATE TABLE profile_store.events (
    workspace_id bigint      NOT NULL,
    event_id     bigint      NOT NULL DEFAULT nextval('profile_store.event_id_seq'),
    profile_id   bigint      NOT NULL,
    import_id    bigint      NOT NULL,
    name         text        NOT NULL,
    time         timestamptz NOT NULL,
    dedup_key    text        NOT NULL,
    properties   jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, event_id, time)
) PARTITION BY RANGE (time);

CREATE INDEX events_by_profile ON profile_store.events (workspace_id, profile_id, time);

-- One row per event ever stored, so a dedup key is unique per workspace across every
-- partition (a replayed or re-read event finds its key here and is not stored twice).
CREATE TABLE profile_store.event_keys (
    workspace_id bigint NOT NULL,
    dedup_key    text   NOT NULL,
    PRIMARY KEY (workspace_id, dedup_key)
);
