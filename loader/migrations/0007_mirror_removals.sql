-- What a mirror import's rows that left the source had set on a profile: of the import's own
-- property names, those the profile holds whose stamp is this import's and one of those rows'
-- keys, with their stamps ({name: stamp}). Values another import set, or another row of the
-- same import set since, are not theirs.
CREATE FUNCTION profile_store.set_by_rows(
    properties jsonb, stamps jsonb, source_updated_at timestamptz, source_import_id bigint,
    source_key text, names text[], import bigint, keys text[]) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (
        SELECT coalesce(jsonb_object_agg(n, s), '{}')
          FROM (SELECT n, coalesce(stamps -> n, profile_store.stamp(
                           source_updated_at, source_import_id, source_key)) AS s
                  FROM unnest(names) AS n
                 WHERE properties ? n) x
         WHERE (s ->> 1)::bigint = import AND s ->> 2 = ANY(keys));
