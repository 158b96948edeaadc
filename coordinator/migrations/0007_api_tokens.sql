-- API tokens: each scoped to one workspace with a role. Only a SHA-256 hash of the secret is
-- kept; the token is shown once, when it is made.
CREATE TABLE control.api_tokens (
    id           uuid PRIMARY KEY,
    workspace_id bigint NOT NULL REFERENCES control.workspaces (id),
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_workspace ON control.api_tokens (workspace_id);
