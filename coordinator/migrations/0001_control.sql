-- The control plane: tenants, connections, imports, runs, chunks, watermarks and row errors.
CREATE TABLE control.workspaces (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE control.connections (
    id           bigserial PRIMARY KEY,
    workspace_id bigint NOT NULL REFERENCES control.workspaces (id),
    name         text NOT NULL,
    kind         text NOT NULL,
    -- The connection's settings, sealed with the master key (never stored in clear).
    credentials  jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE TABLE control.imports (
    id            bigserial PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES control.workspaces (id),
    name          text NOT NULL,
    connection_id bigint NOT NULL REFERENCES control.connections (id),
    data_type     text NOT NULL,
    state         text NOT NULL DEFAULT 'ready',
    spec          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE TABLE control.runs (
    id               uuid PRIMARY KEY,
    workspace_id     bigint NOT NULL REFERENCES control.workspaces (id),
    import_id        bigint NOT NULL REFERENCES control.imports (id),
    status           text NOT NULL,
    dry_run          boolean NOT NULL DEFAULT false,
    requested_by     text NOT NULL,
    trace_id         text,
    lo               jsonb,
    hi               jsonb,
    cap              timestamptz,
    held_back_future bigint NOT NULL DEFAULT 0,
    chunk_count      integer NOT NULL DEFAULT 0,
    error_code       text,
    error_message    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);

-- At most one active run per import.
CREATE UNIQUE INDEX runs_one_active ON control.runs (import_id)
    WHERE status IN ('queued', 'planning', 'running');
CREATE INDEX runs_by_import ON control.runs (import_id, created_at DESC);

CREATE TABLE control.chunks (
    run_id             uuid NOT NULL REFERENCES control.runs (id) ON DELETE CASCADE,
    seq                integer NOT NULL,
    lo                 jsonb,
    hi                 jsonb NOT NULL,
    status             text NOT NULL DEFAULT 'pending',
    rows_read          bigint NOT NULL DEFAULT 0,
    bytes              bigint NOT NULL DEFAULT 0,
    rows_accepted      bigint NOT NULL DEFAULT 0,
    rows_rejected      bigint NOT NULL DEFAULT 0,
    rows_loaded        bigint NOT NULL DEFAULT 0,
    profiles_created   bigint NOT NULL DEFAULT 0,
    profiles_updated   bigint NOT NULL DEFAULT 0,
    profiles_unchanged bigint NOT NULL DEFAULT 0,
    attempts           integer NOT NULL DEFAULT 0,
    error_stage        text,
    error_code         text,
    error_message      text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE control.watermarks (
    import_id  bigint PRIMARY KEY REFERENCES control.imports (id),
    position   jsonb NOT NULL,
    run_id     uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE control.run_errors (
    run_id      uuid NOT NULL REFERENCES control.runs (id) ON DELETE CASCADE,
    chunk_seq   integer NOT NULL,
    row_key     text NOT NULL,
    column_name text NOT NULL,
    value       text,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, chunk_seq, row_key, column_name)
);
