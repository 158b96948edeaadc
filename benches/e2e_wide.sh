# Sourced by e2e.sh once its fleet runs: the wide profile shape. WIDE rows of 12 columns (an
# email, a phone with empty strings and NULLs, names with quotes and non-ASCII letters, a tier,
# an integer, a date, a boolean, a JSON payload of 3 or 5 keys with nested arrays and decimals),
# 40% of them in 100 updated_at tie buckets; mapped as 8 typed properties and the payload into
# the workspace `wide`, so the initial load meets an empty store. Then 10% of the rows change
# and 1% are new, all on one new updated_at. The baseline copies the same columns in binary
# into a flat table keyed by external_id and upserts them in one statement.

psql -q "$WH" <<SQL
CREATE TABLE people (id bigint PRIMARY KEY, external_id text NOT NULL, email text, phone text,
                     first_name text, last_name text, tier text, visits integer, signup_date date,
                     vip boolean, attributes jsonb, updated_at timestamptz NOT NULL);
-- Row g of the shape, stamped at the given time, or else in a tie bucket or on its own second.
CREATE FUNCTION person(g bigint, at timestamptz) RETURNS people LANGUAGE sql IMMUTABLE AS \$\$
  SELECT g, 'person-' || g, 'person.' || g || '@example.com',
         CASE g % 10 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE '+3361' || lpad((g % 10000000)::text, 7, '0') END,
         (ARRAY['Zoë', 'O''Brien', 'Jean "JJ"', 'Łukasz'])[1 + g % 4] || ' ' || g,
         CASE WHEN g % 7 = 0 THEN NULL ELSE 'Müller-' || (g % 1000) END,
         (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + g % 4],
         ((g * 13) % 5000)::int, date '1960-01-01' + (g % 20000)::int, g % 3 = 0,
         jsonb_build_object('score', round((g % 1000) / 7.0, 3),
                            'tags', jsonb_build_array('t' || g % 5, 't' || g % 11),
                            'plan', jsonb_build_object('name', 'p' || g % 3, 'seats', jsonb_build_array(g % 50, g % 7)))
           || CASE WHEN g % 2 = 0 THEN jsonb_build_object('ltv', round((g % 100000) / 100.0, 2),
                                                            'channels', jsonb_build_array('email', 'push'))
                   ELSE '{}'::jsonb END,
         coalesce(at, CASE WHEN g % 10 < 4 THEN timestamptz '2024-01-01' + (g % 100) * interval '1 hour'
                           ELSE timestamptz '2024-01-01' + g * interval '1 second' END)
\$\$;
INSERT INTO people SELECT (person(g, NULL)).* FROM generate_series(1, $WIDE) g;
CREATE INDEX people_watermark ON people (updated_at, id);
VACUUM ANALYZE people;
SQL

psql -q "$STORE" <<'SQL'
CREATE TABLE baseline_people (id bigint NOT NULL, external_id text PRIMARY KEY, email text,
                              phone text, first_name text, last_name text, tier text, visits integer,
                              signup_date date, vip boolean, attributes jsonb,
                              updated_at timestamptz NOT NULL);
SQL
baseline_wide() { # $1 = WHERE clause on the source
  psql -q "$WH" -c "COPY (SELECT * FROM people WHERE $1) TO STDOUT (FORMAT binary)" |
    psql -q -v ON_ERROR_STOP=1 "$STORE" -f <(cat <<'SQL'
BEGIN;
CREATE TEMP TABLE stage (LIKE baseline_people) ON COMMIT DROP;
\copy stage FROM pstdin WITH (FORMAT binary)
INSERT INTO baseline_people SELECT * FROM stage
ON CONFLICT (external_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone,
    first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, tier = EXCLUDED.tier,
    visits = EXCLUDED.visits, signup_date = EXCLUDED.signup_date, vip = EXCLUDED.vip,
    attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at
  WHERE EXCLUDED.updated_at >= baseline_people.updated_at;
COMMIT;
SQL
)
}

cat > "$DATA/wide.yaml" <<YAML
workspace: wide
connections:
  - { name: wh, kind: postgres, url: "$WH" }
imports:
  - name: people
    connection: wh
    source: { table: public.people }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    properties:
      email: { column: email, type: string }
      phone: { column: phone, type: string }
      first_name: { column: first_name, type: string }
      last_name: { column: last_name, type: string }
      tier: { column: tier, type: string }
      visits: { column: visits, type: integer }
      signup_date: { column: signup_date, type: date, format: "yyyy-MM-dd" }
      vip: { column: vip, type: boolean }
    payload: attributes
    chunk_rows: ${CHUNK_ROWS:-50000}
    settle_lag: 1s
    lineage_retention: ${LINEAGE:-30d}
YAML
"$BIN" apply -f "$DATA/wide.yaml" --ready >/dev/null

settle; t0=$(now); baseline_wide "true"; t1=$(now)
base_wide=$(elapsed "$t0" "$t1")
sluice_wide=$(sluice_run people wide)
grep -q "\"rows_read\":$WIDE" "$DATA/people.json" || { cat "$DATA/people.json" >&2; exit 1; }
grep -q '"rows_rejected":0' "$DATA/people.json" || { cat "$DATA/people.json" >&2; exit 1; }
results+=("wide-initial $WIDE $base_wide $sluice_wide"); stages_of people wide-initial "$WIDE"

mark=$(psql -qAt "$WH" -c "SELECT now() - interval '2 seconds'")
psql -q "$WH" <<SQL
UPDATE people SET visits = visits + 1, tier = 'gold', updated_at = '$mark' WHERE id % 10 = 0;
INSERT INTO people SELECT (person(g, '$mark')).* FROM generate_series($WIDE + 1, $WIDE + $WIDE / 100) g;
SQL
sleep 2
settle; t0=$(now); baseline_wide "updated_at >= '$mark'"; t1=$(now)
base_wide_incr=$(elapsed "$t0" "$t1")
sluice_wide_incr=$(sluice_run people wide)
grep -q "\"rows_read\":$((WIDE / 10 + WIDE / 100))" "$DATA/people.json" || { cat "$DATA/people.json" >&2; exit 1; }
results+=("wide-incremental $((WIDE / 10 + WIDE / 100)) $base_wide_incr $sluice_wide_incr"); stages_of people wide-incremental "$((WIDE / 10 + WIDE / 100))"
