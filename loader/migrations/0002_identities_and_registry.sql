-- Email and phone name profiles as well, but several profiles may share one: they live on the
-- profile, indexed so the most recently updated holder is found with one probe.
ALTER TABLE profile_store.profiles ADD COLUMN email text, ADD COLUMN phone text;

CREATE INDEX profiles_by_email ON profile_store.profiles
    (workspace_id, email, updated_at DESC, profile_id DESC) WHERE email IS NOT NULL;
CREATE INDEX profiles_by_phone ON profile_store.profiles
    (workspace_id, phone, updated_at DESC, profile_id DESC) WHERE phone IS NOT NULL;

-- The schema registry: the first import that writes a property fixes its type.
CREATE TABLE profile_store.property_types (
    workspace_id bigint      NOT NULL,
    name         text        NOT NULL,
    type         text        NOT NULL,
    import_id    bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, name)
);
