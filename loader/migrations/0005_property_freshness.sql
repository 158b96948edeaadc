-- Freshness per property. A property takes a row's value only when the row is not older than
-- the row that last set that property, compared on the stamp (source updated_at, import id,
-- source key). Most properties of a profile were set by its newest row, so the profile keeps
-- that row's stamp once (source_updated_at, source_import_id, source_key) and the names it
-- removed (source_unset); property_stamps holds the stamp of every other property, the
-- exceptions, as {name: [epoch seconds, import id, key]}. Email and phone are stamped under
-- the names $email and $phone (names starting with $ belong to the store).
--
-- Each column has a constant default, so adding them rewrites nothing: existing properties
-- keep today's source_updated_at as their stamp, with import 0 and an empty key, so any row
-- of the same instant from an import sorts after them.
ALTER TABLE profile_store.profiles
    ADD COLUMN source_import_id bigint NOT NULL DEFAULT 0,
    ADD COLUMN source_key       text   NOT NULL DEFAULT '',
    ADD COLUMN source_unset     text[] NOT NULL DEFAULT '{}',
    -- A hash of the names the newest row claimed: a row claiming the same names leaves no
    -- property of the profile without a stamp, checked without reading the properties.
    ADD COLUMN source_names     bigint,
    ADD COLUMN property_stamps  jsonb;

-- A stamp as stored in property_stamps; jsonb arrays of three elements compare element by
-- element, numbers exactly and strings in the database's collation, as the row comparison of
-- the profile's own stamp does.
CREATE FUNCTION profile_store.stamp(t timestamptz, import bigint, key text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_array(
        CASE WHEN isfinite(t) THEN extract(epoch FROM t) ELSE -1e15 END, import, key);

-- The names of a row older than the profile's newest row that must not be applied: a name
-- stamped by a newer row, or one the newest row set or removed.
CREATE FUNCTION profile_store.stale_names(
    properties jsonb, stamps jsonb, unset text[], email text, phone text,
    names text[], row_stamp jsonb) RETURNS text[]
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN ARRAY(
        SELECT n FROM unnest(names) AS n
         WHERE CASE WHEN stamps ? n THEN row_stamp < stamps -> n
                    ELSE properties ? n OR n = ANY(unset)
                         OR (n = '$email' AND email IS NOT NULL)
                         OR (n = '$phone' AND phone IS NOT NULL) END);

-- The properties after a row older than the profile's newest row is applied: its values and
-- removals, but for the stale names.
CREATE FUNCTION profile_store.older_applied(
    properties jsonb, props jsonb, unset text[], stale text[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (properties || (props - stale))
           - ARRAY(SELECT u FROM unnest(unset) AS u WHERE u <> ALL(stale));

-- The property_stamps after a row is applied (NULL when none is left). A row at least as new
-- as the profile's own stamp becomes that stamp: its names leave the exceptions, and the names
-- the old stamp covered that the row leaves alone (orphans) keep it as exceptions. An older
-- row stamps the names it applied.
CREATE FUNCTION profile_store.restamp(
    properties jsonb, stamps jsonb, unset text[], email text, phone text,
    source_updated_at timestamptz, source_import_id bigint, source_key text,
    names text[], newest boolean, row_stamp jsonb) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN nullif(CASE
        WHEN newest THEN (coalesce(stamps, '{}') - names) || coalesce(
            (SELECT jsonb_object_agg(x, profile_store.stamp(
                        source_updated_at, source_import_id, source_key))
               FROM (SELECT jsonb_object_keys(properties)
                     UNION ALL SELECT unnest(unset)
                     UNION ALL SELECT '$email' WHERE email IS NOT NULL
                     UNION ALL SELECT '$phone' WHERE phone IS NOT NULL) AS k(x)
              WHERE x <> ALL(names) AND NOT coalesce(stamps ? x, false)), '{}')
        ELSE coalesce(stamps, '{}') || coalesce(
            (SELECT jsonb_object_agg(x, row_stamp) FROM unnest(names) AS x
              WHERE x <> ALL(profile_store.stale_names(
                        properties, stamps, unset, email, phone, names, row_stamp))), '{}')
        END, '{}');
