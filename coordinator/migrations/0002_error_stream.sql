-- Row-level outcomes: every rejected row with its reason code and mapped columns, counts by
-- reason, skipped and ambiguous rows, and a dry run's sample.
ALTER TABLE control.chunks
    ADD COLUMN rows_skipped         bigint NOT NULL DEFAULT 0,
    ADD COLUMN identities_ambiguous bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_rejected_load   bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejected_by_reason   jsonb  NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN load_rejected_by_reason jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN sample               jsonb;

ALTER TABLE control.run_errors RENAME COLUMN reason TO message;
ALTER TABLE control.run_errors
    ADD COLUMN stage       text  NOT NULL DEFAULT 'transform',
    ADD COLUMN reason_code text  NOT NULL DEFAULT 'invalid_value',
    ADD COLUMN row_values  jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE control.run_errors
    ALTER COLUMN stage DROP DEFAULT,
    ALTER COLUMN reason_code DROP DEFAULT,
    DROP CONSTRAINT run_errors_pkey,
    ADD PRIMARY KEY (run_id, chunk_seq, stage, row_key);
CREATE INDEX run_errors_by_reason ON control.run_errors (run_id, reason_code);
