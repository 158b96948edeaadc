-- Alerting for on-call: each notification target chooses its events (NULL: every one), Slack
-- joins email and webhooks, every event also lands in the workspace's feed (the page's
-- in-app notifications, read per token), pauses are notified however they happen, and
-- alert rules keep their state so each fires once and resolves once.
ALTER TABLE control.notification_targets ADD COLUMN events text[];
-- Email targets stored before hear what a spec applied now gives them: what on-call acts on.
UPDATE control.notification_targets
   SET events = ARRAY['run.failed', 'import.paused', 'alert.firing', 'alert.resolved']
 WHERE kind = 'email';
ALTER TABLE control.notification_targets DROP CONSTRAINT notification_targets_kind_check;
ALTER TABLE control.notification_targets ADD CONSTRAINT notification_targets_kind_check
    CHECK (kind IN ('webhook', 'email', 'slack'));

CREATE TABLE control.feed (
    id           bigserial PRIMARY KEY,
    workspace_id bigint NOT NULL REFERENCES control.workspaces (id) ON DELETE CASCADE,
    import_id    bigint REFERENCES control.imports (id) ON DELETE CASCADE,
    run_id       uuid,
    event        text NOT NULL,
    -- What the event says besides its run: an alert's rule and figures, a pause's actor.
    detail       jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX feed_by_workspace ON control.feed (workspace_id, id DESC);

-- How far each token has read its workspace's feed.
CREATE TABLE control.feed_reads (
    token_id     uuid NOT NULL,
    workspace_id bigint NOT NULL REFERENCES control.workspaces (id) ON DELETE CASCADE,
    read_up_to   bigint NOT NULL,
    PRIMARY KEY (token_id, workspace_id)
);

ALTER TABLE control.notifications ALTER COLUMN run_id DROP NOT NULL;
ALTER TABLE control.notifications ADD COLUMN feed_id bigint REFERENCES control.feed (id) ON DELETE CASCADE;
-- One delivery per target and feed entry (a run-less event has no run to tell them apart).
ALTER TABLE control.notifications DROP CONSTRAINT notifications_target_id_run_id_event_key;
ALTER TABLE control.notifications ADD CONSTRAINT notifications_target_feed_key UNIQUE (target_id, feed_id);

-- Alert rules that are firing now, with what made them fire.
CREATE TABLE control.alert_states (
    import_id bigint NOT NULL REFERENCES control.imports (id) ON DELETE CASCADE,
    rule      text NOT NULL,
    since     timestamptz NOT NULL,
    figures   jsonb NOT NULL,
    PRIMARY KEY (import_id, rule)
);

-- One event of an import: into the feed, and to each of its targets that listens for it.
CREATE FUNCTION control.notify_event(p_import bigint, p_run uuid, p_event text, p_detail jsonb)
RETURNS void AS $$
DECLARE
    entry bigint;
BEGIN
    INSERT INTO control.feed (workspace_id, import_id, run_id, event, detail)
    SELECT i.workspace_id, i.id, p_run, p_event, coalesce(p_detail, '{}'::jsonb)
      FROM control.imports i WHERE i.id = p_import
    RETURNING id INTO entry;
    INSERT INTO control.notifications (id, target_id, run_id, event, created_at, feed_id)
    SELECT gen_random_uuid(), t.id, p_run, p_event, clock_timestamp(), entry
      FROM control.notification_targets t
     WHERE t.import_id = p_import AND (t.events IS NULL OR p_event = ANY (t.events))
    ON CONFLICT DO NOTHING;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION control.enqueue_run_notifications() RETURNS trigger AS $$
BEGIN
    IF NOT NEW.dry_run
       AND NEW.status IN ('planning', 'succeeded', 'partially_succeeded', 'failed')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        PERFORM control.notify_event(
            NEW.import_id, NEW.id,
            CASE NEW.status WHEN 'planning' THEN 'run.started' ELSE 'run.' || NEW.status END,
            NULL);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

-- A pause, by hand or after failed runs, is notified with who paused and the last run.
CREATE FUNCTION control.enqueue_pause_notifications() RETURNS trigger AS $$
BEGIN
    IF NEW.to_state = 'paused' THEN
        PERFORM control.notify_event(
            NEW.import_id,
            (SELECT r.id FROM control.runs r
              WHERE r.import_id = NEW.import_id AND NOT r.dry_run
              ORDER BY r.created_at DESC LIMIT 1),
            'import.paused',
            jsonb_build_object('actor', NEW.actor, 'reason', NEW.reason));
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER import_transitions_notify AFTER INSERT ON control.import_transitions
    FOR EACH ROW EXECUTE FUNCTION control.enqueue_pause_notifications();
