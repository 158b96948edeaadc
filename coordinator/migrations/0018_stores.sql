-- The profile and event stores a fleet writes to. Each workspace lives in one, chosen when it
-- is created. `default` is the store every process is configured with (SLUICE_STORE_URL); the
-- others are registered with `sluice stores add` and their URLs sealed like credentials.
CREATE TABLE control.stores (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    url         jsonb,
    -- Profiles the store held when last measured: the coordinator estimates every few
    -- minutes, `sluice stores list` and `sluice workspaces create` count exactly.
    profiles    bigint NOT NULL DEFAULT 0,
    measured_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((name = 'default') = (url IS NULL))
);
INSERT INTO control.stores (name) VALUES ('default');

ALTER TABLE control.workspaces ADD COLUMN store text NOT NULL DEFAULT 'default'
    REFERENCES control.stores (name);

-- The store a workspace created without naming one goes to: the one with the fewest
-- profiles when last measured, then the fewest workspaces, then by name.
CREATE FUNCTION control.least_loaded_store() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT s.name
      FROM control.stores s
     ORDER BY s.profiles,
              (SELECT count(*) FROM control.workspaces w WHERE w.store = s.name),
              s.name
     LIMIT 1
$$;

ALTER TABLE control.workspaces ALTER COLUMN store SET DEFAULT control.least_loaded_store();
