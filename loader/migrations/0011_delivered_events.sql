-- The events delivered to each destination, by dedup key: the ledger that keeps a replay or a
-- resync from sending an event again to a platform whose API has no idempotency of its own.
CREATE TABLE profile_store.delivered_events (
    workspace_id bigint           NOT NULL,
    destination  text COLLATE "C" NOT NULL,
    dedup_key    text COLLATE "C" NOT NULL,
    delivered_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, destination, dedup_key)
);
