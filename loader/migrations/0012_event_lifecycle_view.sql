-- A profile's event lifecycle is read from its events instead of kept on its row. Keeping it
-- made every event chunk update each of its profiles inside the load's transaction, a third
-- of the chunk's insert, and chunks loading events of the same profiles waited for each
-- other's row locks. The events' own index (workspace, profile, time) answers a profile's
-- first and last event and its count, and events are only ever added or deleted with their
-- profile, so the view is exact.
ALTER TABLE profile_store.profiles
    DROP COLUMN first_event_at,
    DROP COLUMN last_event_at,
    DROP COLUMN event_count;

CREATE VIEW profile_store.event_lifecycle AS
SELECT workspace_id, profile_id,
       min(time) AS first_event_at, max(time) AS last_event_at, count(*) AS event_count
  FROM profile_store.events
 GROUP BY workspace_id, profile_id;
