-- Schedules, idempotent triggers and the audit trail of import state changes.
ALTER TABLE control.imports ADD COLUMN next_fire_at timestamptz;
CREATE INDEX imports_due ON control.imports (next_fire_at) WHERE next_fire_at IS NOT NULL;

ALTER TABLE control.runs
    ADD COLUMN scheduled_for   timestamptz,
    ADD COLUMN idempotency_key text;
-- One run per schedule slot and per idempotency key, whoever fires it.
CREATE UNIQUE INDEX runs_one_per_slot ON control.runs (import_id, scheduled_for)
    WHERE scheduled_for IS NOT NULL;
CREATE UNIQUE INDEX runs_one_per_key ON control.runs (import_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE control.import_transitions (
    id         bigserial PRIMARY KEY,
    import_id  bigint NOT NULL REFERENCES control.imports (id) ON DELETE CASCADE,
    from_state text,
    to_state   text NOT NULL,
    actor      text NOT NULL,
    reason     text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX import_transitions_by_import ON control.import_transitions (import_id, at);

-- Which coordinator leads the scheduler (the lead itself is an advisory lock).
CREATE TABLE control.scheduler_lead (
    id     integer PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    since  timestamptz NOT NULL
);
