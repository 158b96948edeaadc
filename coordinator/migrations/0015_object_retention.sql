-- A run's chunk objects (the source rows as read, normalized, and rejected) are deleted once
-- its import's object_retention has passed since the run ended. The expiry is set whenever the
-- run's end is, so the sweep finds due runs on an index instead of reading every run.
ALTER TABLE control.runs
    ADD COLUMN object_retention_seconds bigint NOT NULL DEFAULT 604800,
    ADD COLUMN objects_expire_at        timestamptz,
    ADD COLUMN objects_deleted_at       timestamptz;

CREATE FUNCTION control.runs_objects_expire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.objects_expire_at := NEW.finished_at + make_interval(secs => NEW.object_retention_seconds);
    RETURN NEW;
END $$;

CREATE TRIGGER runs_objects_expire
    BEFORE INSERT OR UPDATE OF finished_at, object_retention_seconds ON control.runs
    FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION control.runs_objects_expire();

UPDATE control.runs SET objects_expire_at = finished_at + interval '7 days'
 WHERE finished_at IS NOT NULL;

CREATE INDEX runs_objects_due ON control.runs (objects_expire_at)
    WHERE objects_deleted_at IS NULL;
