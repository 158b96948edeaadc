-- A run's lineage objects (what happened to each row) are deleted once its import's
-- lineage_retention has passed since the run ended, on an index like its chunk objects.
ALTER TABLE control.runs
    ADD COLUMN lineage_retention_seconds bigint NOT NULL DEFAULT 2592000,
    ADD COLUMN lineage_expire_at         timestamptz,
    ADD COLUMN lineage_deleted_at        timestamptz;

CREATE OR REPLACE FUNCTION control.runs_objects_expire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.objects_expire_at := NEW.finished_at + make_interval(secs => NEW.object_retention_seconds);
    NEW.lineage_expire_at := NEW.finished_at + make_interval(secs => NEW.lineage_retention_seconds);
    RETURN NEW;
END $$;

DROP TRIGGER runs_objects_expire ON control.runs;
CREATE TRIGGER runs_objects_expire
    BEFORE INSERT OR UPDATE OF finished_at, object_retention_seconds, lineage_retention_seconds
    ON control.runs
    FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION control.runs_objects_expire();

UPDATE control.runs SET lineage_expire_at = finished_at + interval '30 days'
 WHERE finished_at IS NOT NULL;

CREATE INDEX runs_lineage_due ON control.runs (lineage_expire_at)
    WHERE lineage_deleted_at IS NULL;
