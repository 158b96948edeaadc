#!/usr/bin/env bash
# Grows a new workspace from empty to ROWS profiles in 1,000-row chunks, in a store that already
# holds an established workspace of SEED profiles whose statistics are the only ones the server
# has (autovacuum is off on the store's tables for the run, as it would not trigger on a change
# of a few percent of a large store anyway): the statistics call the new workspace empty all
# along. Prints the time per chunk as the workspace grows; it must stay flat.
#
#   cargo build --release && benches/workspace_growth.sh     # ROWS=200000 SEED=2000000
#   OLD_INDEX=1 benches/workspace_growth.sh                   # with the index before migration 8
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-200000}
SEED=${SEED:-2000000}
BENCH=growth
source benches/fleet.sh
psql -q "$WH" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, external_id text NOT NULL, email text, tier text,
                    updated_at timestamptz NOT NULL);
INSERT INTO users SELECT g, 'user-' || g, 'user' || g || '@example.com', 'tier-' || (g % 5),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, $ROWS) g;
CREATE INDEX users_watermark ON users (updated_at, id);
VACUUM ANALYZE users;
SQL

"$BIN" migrate >/dev/null
[ -z "${OLD_INDEX:-}" ] || psql -q "$STORE" -c "DROP INDEX profile_store.identities_by_profile" \
  -c "CREATE INDEX identities_by_profile ON profile_store.identities (workspace_id, profile_id)"
t0=$(date +%s)
psql -q -v ON_ERROR_STOP=1 "$STORE" <<SQL
ALTER TABLE profile_store.profiles SET (autovacuum_enabled = false);
ALTER TABLE profile_store.identities SET (autovacuum_enabled = false);
INSERT INTO profile_store.profiles (workspace_id, profile_id, properties, email, source_updated_at)
SELECT 1000000, g, jsonb_build_object('tier', 'tier-' || (g % 5)), 'seed' || g || '@example.com',
       timestamptz '2024-01-01' + g * interval '1 second'
  FROM generate_series(1, $SEED) g;
INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
SELECT 1000000, 'external_id', 'seed-' || g, g FROM generate_series(1, $SEED) g;
SELECT setval('profile_store.profile_id_seq', $SEED);
VACUUM ANALYZE profile_store.profiles;
VACUUM ANALYZE profile_store.identities;
SQL
echo "seeded $SEED profiles in $(( $(date +%s) - t0 )) s" >&2

cat > "$DATA/spec.yaml" <<YAML
workspace: growth
connections:
  - { name: wh, kind: postgres, url: "$WH" }
imports:
  - name: users
    connection: wh
    source: { table: public.users }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id, email: email }
    properties:
      tier: { column: tier, type: string }
    chunk_rows: 1000
    settle_lag: 1s
YAML
"$BIN" apply -f "$DATA/spec.yaml" --ready >/dev/null
for role in coordinator extractor transformer loader; do
  "$BIN" "$role" 2>"$DATA/$role.log" & pids+=($!)
done
sleep 2
"$BIN" run users --workspace growth --wait --output json > "$DATA/run.json"
grep -q '"status":"succeeded"' "$DATA/run.json" || { cat "$DATA/run.json" >&2; exit 1; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; seed $SEED; ${OLD_INDEX:+old index}"
printf '| profiles in the new workspace | ms per chunk (mean of the 20 chunks before) |\n|---|---|\n'
# Chunks finish in order of their bounds give or take the two in flight: the time between
# every 20th chunk's completion, over 20.
psql -qAt -F ' ' "$STORE" <<'SQL' | while read -r rows ms; do printf '| %s | %s |\n' "$rows" "$ms"; done
WITH done AS (
  SELECT row_number() OVER (ORDER BY c.updated_at) AS n, c.updated_at
    FROM control.chunks c JOIN control.runs r ON r.id = c.run_id
    JOIN control.imports i ON i.id = r.import_id WHERE i.name = 'users')
SELECT b.n * 1000, round(extract(epoch FROM b.updated_at - a.updated_at) * 1000 / 20)
  FROM done a JOIN done b ON b.n = a.n + 20
 WHERE b.n % 20 = 0
 ORDER BY b.n
SQL
