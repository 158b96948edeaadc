-- The profile store: one row per profile, and the identities that name it.
CREATE SEQUENCE profile_store.profile_id_seq;

CREATE TABLE profile_store.profiles (
    workspace_id      bigint      NOT NULL,
    profile_id        bigint      NOT NULL DEFAULT nextval('profile_store.profile_id_seq'),
    properties        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The source's updated_at of the row last applied; older rows are never applied over it.
    source_updated_at timestamptz NOT NULL DEFAULT '-infinity',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, profile_id)
);

CREATE TABLE profile_store.identities (
    workspace_id bigint      NOT NULL,
    kind         text        NOT NULL,
    value        text        NOT NULL,
    profile_id   bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, kind, value),
    FOREIGN KEY (workspace_id, profile_id)
        REFERENCES profile_store.profiles (workspace_id, profile_id) ON DELETE CASCADE
);

CREATE INDEX identities_by_profile ON profile_store.identities (workspace_id, profile_id);
