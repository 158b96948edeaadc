-- Rows rejected for a cause outside the row, kept per import by source key so that later runs
-- read them again: the key as its run's bounds type it, the last reason, how often it was
-- tried, and since when.
CREATE TABLE control.retry_rows (
    import_id         bigint NOT NULL REFERENCES control.imports (id) ON DELETE CASCADE,
    row_key           text NOT NULL,
    key               jsonb NOT NULL,
    reason_code       text NOT NULL,
    attempts          integer NOT NULL DEFAULT 1,
    first_rejected_at timestamptz NOT NULL DEFAULT now(),
    last_run_id       uuid NOT NULL,
    PRIMARY KEY (import_id, row_key)
);
CREATE INDEX retry_rows_by_age ON control.retry_rows (import_id, first_rejected_at);

-- A retry chunk reads the rows of these keys (a JSON array of keys) at or before its `hi`.
ALTER TABLE control.chunks ADD COLUMN keys jsonb;

-- Rejected rows a run dropped from the retry set because they were retried for longer than
-- the import's retry_rejected_for.
ALTER TABLE control.runs ADD COLUMN rows_retry_expired bigint NOT NULL DEFAULT 0;

-- Whether the run's import kept its retryable rejected rows when the run was planned.
ALTER TABLE control.runs ADD COLUMN retries_rejected boolean NOT NULL DEFAULT false;

ALTER TABLE control.chunks DROP CONSTRAINT chunks_kind_check;
ALTER TABLE control.chunks ADD CONSTRAINT chunks_kind_check
    CHECK (kind IN ('rows', 'keys', 'retry'));
