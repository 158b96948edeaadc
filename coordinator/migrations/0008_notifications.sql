-- Notifications: where each import's run events go, and an outbox of events to deliver.
-- A trigger on runs fills the outbox in the same transaction as the status change, so no
-- event is lost whichever code path changed the status; the coordinator delivers it.
CREATE TABLE control.notification_targets (
    id                bigserial PRIMARY KEY,
    import_id         bigint NOT NULL REFERENCES control.imports (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('webhook')),
    address           text NOT NULL,
    -- The signing secret, sealed with the master key.
    secret            jsonb,
    -- A partially succeeded run is notified when more than this share of its rows was rejected.
    partial_threshold double precision NOT NULL DEFAULT 0,
    UNIQUE (import_id, kind, address)
);

CREATE TABLE control.notifications (
    id              uuid PRIMARY KEY,
    target_id       bigint NOT NULL REFERENCES control.notification_targets (id) ON DELETE CASCADE,
    run_id          uuid NOT NULL,
    event           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    -- Set when delivery was given up after the last attempt.
    abandoned_at    timestamptz,
    last_error      text,
    UNIQUE (target_id, run_id, event)
);
CREATE INDEX notifications_due ON control.notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;

CREATE FUNCTION control.enqueue_run_notifications() RETURNS trigger AS $$
BEGIN
    IF NOT NEW.dry_run
       AND NEW.status IN ('planning', 'succeeded', 'partially_succeeded', 'failed')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        INSERT INTO control.notifications (id, target_id, run_id, event, created_at)
        SELECT gen_random_uuid(), t.id, NEW.id,
               CASE NEW.status WHEN 'planning' THEN 'run.started' ELSE 'run.' || NEW.status END,
               clock_timestamp()
          FROM control.notification_targets t
         WHERE t.import_id = NEW.import_id
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER runs_notify AFTER INSERT OR UPDATE OF status ON control.runs
    FOR EACH ROW EXECUTE FUNCTION control.enqueue_run_notifications();
