-- Web page sessions: the browser's cookie holds a random session id, never an API token. Only
-- its hash is kept, with the token the person signed in with: revoking the token ends them.
CREATE TABLE control.ui_sessions (
    secret_hash bytea PRIMARY KEY,
    token_id    uuid NOT NULL REFERENCES control.api_tokens (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expiry ON control.ui_sessions (expires_at);
