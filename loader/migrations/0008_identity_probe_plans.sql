-- A profile's identities are found by profile id first. Led by the workspace, this index
-- competed with the identities' key for every probe by (workspace, kind, value): where the
-- statistics still called a grown workspace small, the planner walked the whole workspace
-- here and filtered on the kind and value, row by row. Led by the profile id, it serves only
-- look-ups that name a profile, and a probe by identity can only use the key.
DROP INDEX profile_store.identities_by_profile;
CREATE INDEX identities_by_profile ON profile_store.identities (profile_id, workspace_id);
