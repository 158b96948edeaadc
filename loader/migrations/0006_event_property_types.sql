-- The schema registry of event properties: per event name, the first import that writes a
-- property fixes its type (as the profile registry does for profile properties).
CREATE TABLE profile_store.event_property_types (
    workspace_id bigint      NOT NULL,
    event_name   text        NOT NULL,
    name         text        NOT NULL,
    type         text        NOT NULL,
    import_id    bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, event_name, name)
);
