#!/usr/bin/env bash
# End-to-end benchmark: an initial import of ROWS generated profiles and an incremental run of
# 110,000 changes (100,000 updated, 10,000 inserted), through RabbitMQ, Parquet in object storage,
# DataFusion and the profile store; and, in the same run, the baseline: plain binary COPY out of
# the source, binary COPY into a staging table and one set-based upsert of the same rows.
# Prints rows/s for both, their ratio, and the peak RSS of each role's process.
#
#   cargo build --release && benches/e2e.sh            # ROWS=1000000 by default
#   ROWS=200000 SLUICE_BIN=target/debug/sluice benches/e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
BIN=${SLUICE_BIN:-target/release/sluice}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ID=bench_$$
WH="$PG/${ID}_wh"
STORE="$PG/${ID}_store"
DATA=$(mktemp -d)
export SLUICE_DATABASE_URL="$STORE" SLUICE_AMQP_PREFIX="$ID" SLUICE_DATA_DIR="$DATA"
export SLUICE_LOAD_ROWS_PER_SECOND=1000000000 SLUICE_LOG=warn
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS ${ID}_wh WITH (FORCE)" -c "DROP DATABASE IF EXISTS ${ID}_store WITH (FORCE)" >/dev/null
  rm -rf "$DATA"
  if command -v rabbitmqctl >/dev/null 2>&1; then
    for q in $(rabbitmqctl list_queues name -q 2>/dev/null | grep "^$ID\."); do rabbitmqctl delete_queue "$q" >/dev/null 2>&1 || true; done
  fi
}
[ -n "${KEEP:-}" ] || trap cleanup EXIT

now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

./deploy/services.sh >/dev/null
psql -q "$PG/postgres" -c "CREATE DATABASE ${ID}_wh" -c "CREATE DATABASE ${ID}_store"
psql -q "$WH" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, external_id text NOT NULL, first_name text,
                    loyalty_points integer, birthday date, updated_at timestamptz NOT NULL);
INSERT INTO users SELECT g, 'user-' || g, 'Name ' || g, (g * 7) % 1000, date '1970-01-01' + (g % 15000)::int,
       timestamptz '2024-01-01 00:00:00+00' + (g / 100) * interval '1 second'
  FROM generate_series(1, $ROWS) g;
CREATE INDEX users_watermark ON users (updated_at, id);
VACUUM ANALYZE users;
SQL

# --- baseline: binary COPY out, binary COPY into staging, one set-based upsert ---------------
psql -q "$STORE" -c "CREATE TABLE baseline_profiles (external_id text PRIMARY KEY, properties jsonb NOT NULL, source_updated_at timestamptz NOT NULL)"
baseline() { # $1 = WHERE clause on the source
  psql -q "$WH" -c "COPY (SELECT external_id, jsonb_build_object('first_name', first_name, 'points', loyalty_points, 'birthday', to_char(birthday, 'YYYY-MM-DD')), updated_at FROM users WHERE $1) TO STDOUT (FORMAT binary)" |
    psql -q -v ON_ERROR_STOP=1 "$STORE" -f <(cat <<'SQL'
BEGIN;
CREATE TEMP TABLE stage (external_id text, properties jsonb, updated_at timestamptz) ON COMMIT DROP;
\copy stage FROM pstdin WITH (FORMAT binary)
INSERT INTO baseline_profiles SELECT external_id, properties, updated_at FROM stage
ON CONFLICT (external_id) DO UPDATE SET properties = baseline_profiles.properties || EXCLUDED.properties,
    source_updated_at = EXCLUDED.source_updated_at
  WHERE EXCLUDED.source_updated_at >= baseline_profiles.source_updated_at;
COMMIT;
SQL
)
}
t0=$(now); baseline "true"; t1=$(now)
base_initial=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

# --- Sluice: one process per role -------------------------------------------------------------
"$BIN" migrate >/dev/null
cat > "$DATA/spec.yaml" <<YAML
workspace: bench
connections:
  - { name: wh, kind: postgres, url: "$WH" }
imports:
  - name: users
    connection: wh
    source: { table: public.users }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    properties:
      first_name: { column: first_name, type: string }
      points: { column: loyalty_points, type: integer }
      birthday: { column: birthday, type: date, format: "yyyy-MM-dd" }
    chunk_rows: ${CHUNK_ROWS:-50000}
    settle_lag: 1s
YAML
"$BIN" apply -f "$DATA/spec.yaml" --ready >/dev/null
for role in coordinator extractor transformer loader; do
  "$BIN" "$role" 2>"$DATA/$role.log" & pids+=($!)
done
sleep 2
t0=$(now); "$BIN" run users --workspace bench --wait --output json > "$DATA/initial.json"; t1=$(now)
sluice_initial=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
grep -q '"status":"succeeded"' "$DATA/initial.json" || { cat "$DATA/initial.json"; exit 1; }

# --- incremental: 100,000 updated and 10,000 inserted -------------------------------------------
mark=$(psql -qAt "$WH" -c "SELECT now() - interval '2 seconds'")
psql -q "$WH" <<SQL
UPDATE users SET loyalty_points = loyalty_points + 1, updated_at = now() - interval '2 seconds' WHERE id <= 100000;
INSERT INTO users SELECT g, 'user-' || g, 'New ' || g, 1, date '2000-01-01', now() - interval '2 seconds'
  FROM generate_series($ROWS + 1, $ROWS + 10000) g;
SQL
sleep 2
t0=$(now); baseline "updated_at > '$mark'"; t1=$(now)
base_incr=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
t0=$(now); "$BIN" run users --workspace bench --wait --output json > "$DATA/incremental.json"; t1=$(now)
sluice_incr=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
grep -q '"rows_read":110000' "$DATA/incremental.json" || { cat "$DATA/incremental.json"; exit 1; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; rows $ROWS"
printf '| run | rows | baseline rows/s | sluice rows/s | sluice / baseline |\n|---|---|---|---|---|\n'
for pair in "initial $ROWS $base_initial $sluice_initial" "incremental 110000 $base_incr $sluice_incr"; do
  set -- $pair
  b=$(rate "$2" "$3"); s=$(rate "$2" "$4")
  printf '| %s | %s | %s | %s | %s%% |\n' "$1" "$2" "$b" "$s" "$(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.0f", 100 * s / b }')"
done
printf '\n| role | peak RSS (MiB) |\n|---|---|\n'
i=0
for role in coordinator extractor transformer loader; do
  hwm=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/${pids[$i]}/status")
  printf '| %s | %s |\n' "$role" "$hwm"
  i=$((i + 1))
done
