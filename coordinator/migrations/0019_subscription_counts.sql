-- What each loaded chunk did to consent: changes of status by channel or group and by the
-- status changed to ({"email": {"unsubscribed": 3}}), and statuses older than the store's.
ALTER TABLE control.chunks
    ADD COLUMN subscriptions_changed jsonb,
    ADD COLUMN subscriptions_stale   bigint NOT NULL DEFAULT 0;
