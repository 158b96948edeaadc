-- Every change of a watermark outside a run (resync, rewind): who, when, from where to where.
CREATE TABLE control.watermark_changes (
    id         bigserial PRIMARY KEY,
    import_id  bigint NOT NULL REFERENCES control.imports (id) ON DELETE CASCADE,
    operation  text NOT NULL,
    actor      text NOT NULL,
    from_position jsonb,
    to_position   jsonb,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX watermark_changes_by_import ON control.watermark_changes (import_id, at);
