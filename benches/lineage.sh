#!/usr/bin/env bash
# Lineage: a run of ROWS profiles (two imports of the same table shape, one keeping lineage and
# one with lineage_retention: 0s, run alternately ROUNDS times each into workspaces of their
# own), then LOOKUPS lookups of one random key in the last run's lineage through the CLI
# (`sluice runs lineage RUN --key K`, a process start included) and through the API
# (`GET /v1/runs/{id}/lineage?key=K`). Prints the run times with and without lineage, the
# lineage's size per row, and the lookups' median and slowest.
#
#   cargo build --release && benches/lineage.sh           # ROWS=100000 LOOKUPS=20 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-100000}
LOOKUPS=${LOOKUPS:-20}
ROUNDS=${ROUNDS:-3}
BENCH=lineage
source benches/fleet.sh

psql -q "$WH" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, external_id text NOT NULL, email text, tier text,
                    points integer, updated_at timestamptz NOT NULL);
INSERT INTO users SELECT g, 'user-' || g, 'user' || g || '@example.com', 'tier-' || (g % 5),
       (g * 7) % 1000, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, $ROWS) g;
CREATE INDEX users_watermark ON users (updated_at, id);
VACUUM ANALYZE users;
SQL

spec() { # $1 = workspace, $2 = lineage_retention
  cat <<YAML
workspace: $1
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
      points: { column: points, type: integer }
    settle_lag: 1s
    lineage_retention: $2
YAML
}

"$BIN" migrate >/dev/null
port=$((20000 + RANDOM % 20000))
"$BIN" all --http-addr "127.0.0.1:$port" 2>"$DATA/all.log" & pids+=($!)
sleep 2

with=() without=()
run_id=""
for round in $(seq 1 "$ROUNDS"); do
  for kind in kept none; do
    ws="${kind}_$round"
    retention=30d; [ "$kind" = none ] && retention=0s
    spec "$ws" "$retention" > "$DATA/$ws.yaml"
    "$BIN" apply -f "$DATA/$ws.yaml" --ready >/dev/null
    psql -q "$STORE" -c CHECKPOINT
    t0=$(now)
    "$BIN" run users --workspace "$ws" --wait --output json > "$DATA/$ws.json"
    t1=$(now)
    grep -q '"status":"succeeded"' "$DATA/$ws.json" || { cat "$DATA/$ws.json" >&2; exit 1; }
    seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    if [ "$kind" = kept ]; then
      with+=("$seconds")
      run_id=$(sed -E 's/.*"run_id":"([^"]+)".*/\1/' "$DATA/$ws.json")
      last_ws=$ws
    else
      without+=("$seconds")
    fi
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
bytes=$(du -sb "$DATA/objects/lineage" | awk '{ print $1 }')
token=$("$BIN" tokens create --workspace "$last_ws" --name bench --role viewer 2>/dev/null)

cli=() api=()
for _ in $(seq 1 "$LOOKUPS"); do
  key=$(( (RANDOM * 32768 + RANDOM) % ROWS + 1 ))
  t0=$(now)
  out=$("$BIN" runs lineage "$run_id" --key "$key" --output json)
  t1=$(now)
  echo "$out" | grep -q "\"row_key\":\"$key\"" || { echo "key $key not found: $out" >&2; exit 1; }
  cli+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
  t0=$(now)
  out=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/runs/$run_id/lineage?key=$key")
  t1=$(now)
  echo "$out" | grep -q "\"profile_id\":[0-9]" || { echo "API: key $key: $out" >&2; exit 1; }
  api+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; $ROWS rows, $ROUNDS rounds"
printf '| | median | runs |\n|---|---|---|\n'
printf '| run with lineage (s) | %s | %s |\n' "$(median "${with[@]}")" "${with[*]}"
printf '| run without lineage (s) | %s | %s |\n' "$(median "${without[@]}")" "${without[*]}"
printf '| lineage size | %s bytes per row | %s bytes for %s runs |\n' \
  "$(awk -v b="$bytes" -v n="$ROWS" -v r="$ROUNDS" 'BEGIN { printf "%.1f", b / n / r }')" "$bytes" "$ROUNDS"
printf '| key lookup, CLI (s) | %s | slowest %s |\n' "$(median "${cli[@]}")" "$(printf '%s\n' "${cli[@]}" | sort -n | tail -1)"
printf '| key lookup, API (s) | %s | slowest %s |\n' "$(median "${api[@]}")" "$(printf '%s\n' "${api[@]}" | sort -n | tail -1)"
