-- Engagement platforms an import may deliver to instead of the built-in stores: declared per
-- workspace, their credentials sealed like a connection's; chunks count what they delivered.
CREATE TABLE control.destinations (
    id                  bigserial PRIMARY KEY,
    workspace_id        bigint NOT NULL REFERENCES control.workspaces (id) ON DELETE CASCADE,
    name                text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('braze', 'clevertap', 'klaviyo')),
    url                 text NOT NULL,
    credentials         jsonb NOT NULL,
    requests_per_second integer NOT NULL CHECK (requests_per_second > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

ALTER TABLE control.chunks
    ADD COLUMN records_delivered bigint NOT NULL DEFAULT 0,
    ADD COLUMN delivery_requests bigint NOT NULL DEFAULT 0,
    ADD COLUMN delivery_sample jsonb;
