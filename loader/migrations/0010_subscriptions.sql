-- Consent, kept apart from properties: one status per profile and channel (email, sms,
-- whatsapp, push) or group ('group:' and its name), as of when the person gave or withdrew it.
CREATE TABLE profile_store.subscriptions (
    workspace_id bigint             NOT NULL,
    profile_id   bigint             NOT NULL,
    topic        text COLLATE "C"   NOT NULL,
    status       text               NOT NULL
                 CHECK (status IN ('subscribed', 'unsubscribed', 'opted_in')),
    -- The consent time the source gave, or the source row's time.
    changed_at   timestamptz        NOT NULL,
    import_id    bigint             NOT NULL,
    updated_at   timestamptz        NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, profile_id, topic)
);

-- A workspace's subscription groups, created by the first import that names one.
CREATE TABLE profile_store.subscription_groups (
    workspace_id bigint           NOT NULL,
    name         text COLLATE "C" NOT NULL,
    import_id    bigint           NOT NULL,
    created_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, name)
);

-- Every change of a status, appended and never updated: the audit trail. A deleted profile's
-- statuses end with a change to NULL; its history stays.
CREATE TABLE profile_store.subscription_changes (
    change_id    bigserial,
    workspace_id bigint           NOT NULL,
    profile_id   bigint           NOT NULL,
    topic        text COLLATE "C" NOT NULL,
    from_status  text,
    to_status    text,
    changed_at   timestamptz      NOT NULL,
    import_id    bigint           NOT NULL,
    run_id       uuid,
    cause        text             NOT NULL CHECK (cause IN ('import', 'profile_deleted')),
    recorded_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, profile_id, change_id)
);
