-- Email joins webhooks as a notification channel.
ALTER TABLE control.notification_targets DROP CONSTRAINT notification_targets_kind_check;
ALTER TABLE control.notification_targets ADD CONSTRAINT notification_targets_kind_check
    CHECK (kind IN ('webhook', 'email'));
