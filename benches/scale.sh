#!/usr/bin/env bash
# Scale-out against a remote warehouse: the same ROWS-row table imported through 1, 2, 4 and 8
# extractor processes (STEPS), one transformer and one loader each time. The warehouse is the
# machine's PostgreSQL behind benches/latency_proxy.py, which gives every connection a think
# time per reading statement (QUERY_LATENCY seconds), a round trip (RTT seconds) and a cap on
# the bytes the server sends (BANDWIDTH bytes/s): extraction waits on the network as it does
# against a warehouse across a WAN, so more extractors should read proportionally more.
# Prints rows/s per step, the speed-up over one extractor, each stage's busy share (from the
# processes' sluice_stage_duration_seconds), the mean ready messages in each queue (from the
# coordinator's sluice_queue_messages), the machine's CPU use, and the stage that saturated
# where the speed-up fell below 0.8 x N.
#
#   cargo build --release && benches/scale.sh
#   ROWS=200000 STEPS="1 2" benches/scale.sh
#   QUERY_LATENCY=1 RTT=0.1 BANDWIDTH=1000000 benches/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-2000000}
STEPS=${STEPS:-"1 2 4 8"}
QUERY_LATENCY=${QUERY_LATENCY:-0.5}
RTT=${RTT:-0.05}
BANDWIDTH=${BANDWIDTH:-2000000}
CHUNK_ROWS=${CHUNK_ROWS:-20000}
BENCH=scale
source benches/fleet.sh
PORT=$((20000 + $$ % 20000))
export SLUICE_CHUNK_WINDOW=64

cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }

psql -q "$WH" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, external_id text NOT NULL, email text, first_name text,
                    last_name text, tier text, loyalty_points integer, notes text,
                    updated_at timestamptz NOT NULL);
INSERT INTO users SELECT g, 'user-' || g, 'user' || g || '@example.com', 'Name ' || g, 'Family ' || (g % 5000),
       (ARRAY['bronze', 'silver', 'gold'])[1 + g % 3], (g * 7) % 1000, repeat(md5(g::text), 4),
       timestamptz '2024-01-01 00:00:00+00' + (g / 100) * interval '1 second'
  FROM generate_series(1, $ROWS) g;
CREATE INDEX users_watermark ON users (updated_at, id);
VACUUM ANALYZE users;
SQL

python3 benches/latency_proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:5432 \
  --query-latency "$QUERY_LATENCY" --rtt "$RTT" --bandwidth "$BANDWIDTH" > "$DATA/proxy.out" &
pids+=($!)
for _ in $(seq 1 50); do grep -q listening "$DATA/proxy.out" 2>/dev/null && break; sleep 0.1; done
proxy=$(awk '{ print $3 }' "$DATA/proxy.out")
REMOTE="postgres://postgres@$proxy/${ID}_wh"

"$BIN" migrate >/dev/null
SLUICE_HTTP_ADDR=127.0.0.1:$PORT "$BIN" coordinator 2>"$DATA/coordinator.log" & pids+=($!)
SLUICE_HTTP_ADDR=127.0.0.1:$((PORT + 1)) "$BIN" transformer 2>"$DATA/transformer.log" & pids+=($!)
SLUICE_HTTP_ADDR=127.0.0.1:$((PORT + 2)) "$BIN" loader 2>"$DATA/loader.log" & pids+=($!)
sleep 2

results=()
base_rate=
for n in $STEPS; do
  cat > "$DATA/spec.yaml" <<YAML
workspace: scale$n
connections:
  - { name: wh, kind: postgres, url: "$REMOTE" }
imports:
  - name: users
    connection: wh
    source: { table: public.users }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    properties:
      email: { column: email, type: string }
      first_name: { column: first_name, type: string }
      last_name: { column: last_name, type: string }
      tier: { column: tier, type: string }
      points: { column: loyalty_points, type: integer }
      notes: { column: notes, type: string }
    chunk_rows: $CHUNK_ROWS
    settle_lag: 1s
YAML
  "$BIN" apply -f "$DATA/spec.yaml" --ready >/dev/null
  extractors=()
  ports=()
  for i in $(seq 1 "$n"); do
    port=$((PORT + 10 + i))
    SLUICE_HTTP_ADDR=127.0.0.1:$port "$BIN" extractor --concurrency 1 2>"$DATA/extractor.$n.$i.log" &
    extractors+=($!); pids+=($!); ports+=("$port")
  done
  sleep 3
  before_extract=$(metric_sum sluice_stage_duration_seconds_sum 'stage="extract"' "${ports[@]}")
  before_transform=$(metric_sum sluice_stage_duration_seconds_sum 'stage="transform"' $((PORT + 1)))
  before_load=$(metric_sum sluice_stage_duration_seconds_sum 'stage="load"' $((PORT + 2)))
  read -r cpu_a total_a < <(cpu_busy)
  # Ready messages in each queue, sampled every second while the run goes.
  (while true; do
     curl -s "http://127.0.0.1:$PORT/metrics" |
       awk -v id="$ID" '/^sluice_queue_messages[{]/ {
                          if ($0 ~ "queue=\""id".extract\"") e = $NF
                          if ($0 ~ "queue=\""id".transform\"") t = $NF
                          if ($0 ~ "queue=\""id".load\"") l = $NF }
                        END { print e + 0, t + 0, l + 0 }'
     sleep 1
   done) > "$DATA/queues.$n" &
  sampler=$!
  t0=$(now)
  "$BIN" run users --workspace "scale$n" --wait --output json > "$DATA/run.$n.json"
  t1=$(now)
  kill "$sampler" 2>/dev/null || true
  grep -q '"status":"succeeded"' "$DATA/run.$n.json" || { cat "$DATA/run.$n.json" >&2; exit 1; }
  grep -q "\"rows_read\":$ROWS" "$DATA/run.$n.json" || { cat "$DATA/run.$n.json" >&2; exit 1; }
  read -r cpu_b total_b < <(cpu_busy)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  ex=$(metric_sum sluice_stage_duration_seconds_sum 'stage="extract"' "${ports[@]}")
  tr=$(metric_sum sluice_stage_duration_seconds_sum 'stage="transform"' $((PORT + 1)))
  ld=$(metric_sum sluice_stage_duration_seconds_sum 'stage="load"' $((PORT + 2)))
  # Busy share: handling time over the time each stage's consumers had (extractors hold one
  # chunk at a time; the transformer and the loader two, their default concurrency).
  busy() { awk -v a="$1" -v b="$2" -v s="$secs" -v c="$3" 'BEGIN { printf "%.0f%%", 100 * (b - a) / (s * c) }'; }
  ex_busy=$(busy "$before_extract" "$ex" "$n")
  tr_busy=$(busy "$before_transform" "$tr" 2)
  ld_busy=$(busy "$before_load" "$ld" 2)
  cpu=$(awk -v a="$cpu_a" -v b="$cpu_b" -v ta="$total_a" -v tb="$total_b" 'BEGIN { printf "%.0f%%", 100 * (b - a) / (tb - ta) }')
  queues=$(awk '{ e += $1; t += $2; l += $3; n++ } END { if (n) printf "%.1f / %.1f / %.1f", e / n, t / n, l / n; else print "-" }' "$DATA/queues.$n")
  # Planning reads the chunk boundaries from the warehouse before the first chunk goes out.
  run_id=$(sed 's/.*"run_id":"\([^"]*\)".*/\1/' "$DATA/run.$n.json")
  planning=$(psql -qAt "$STORE" -c "SELECT round(extract(epoch FROM min(c.released_at) - r.created_at)::numeric, 1)
                                      FROM control.runs r JOIN control.chunks c ON c.run_id = r.id WHERE r.id = '$run_id' GROUP BY r.created_at")
  rate=$(awk -v r="$ROWS" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
  after_planning=$(awk -v r="$ROWS" -v s="$secs" -v p="$planning" 'BEGIN { printf "%.0f", r / (s - p) }')
  [ -n "${base_after:-}" ] || base_after=$after_planning
  speedup_after=$(awk -v r="$after_planning" -v b="$base_after" 'BEGIN { printf "%.2f", r / b }')
  [ -n "$base_rate" ] || base_rate=$rate
  speedup=$(awk -v r="$rate" -v b="$base_rate" 'BEGIN { printf "%.2f", r / b }')
  # Where the speed-up falls short, the stage whose consumers were busiest saturated; with the
  # machine's cores nearly all in use, every stage was waiting for CPU.
  saturated=$(awk -v s="$speedup" -v a="$speedup_after" -v n="$n" -v e="${ex_busy%\%}" -v t="${tr_busy%\%}" -v l="${ld_busy%\%}" -v c="${cpu%\%}" -v p="$planning" 'BEGIN {
      if (s >= 0.8 * n) { print "-"; exit }
      if (a >= 0.8 * n) { printf "planning (%ss, serial)", p; exit }
      stage = "extract"; top = e
      if (t > top) { stage = "transform"; top = t }
      if (l > top) { stage = "load"; top = l }
      printf "%s (%d%% busy)%s", stage, top, (c >= 90 ? ", CPU " c "%" : "") }')
  results+=("| $n | $secs | $planning | $rate | ${speedup}x | $after_planning | ${speedup_after}x | $(awk -v n="$n" 'BEGIN { printf "%.1fx", 0.8 * n }') | $ex_busy | $tr_busy | $ld_busy | $queues | $cpu | $saturated |")
  for pid in "${extractors[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; $ROWS rows, chunk_rows $CHUNK_ROWS;" \
     "latency proxy: ${QUERY_LATENCY}s per reading statement, ${RTT}s round trip, $BANDWIDTH bytes/s per connection"
printf '| extractors | seconds | planning (s) | rows/s | speed-up | rows/s after planning | speed-up after planning | 0.8 x N | extract busy | transform busy | load busy | ready messages extract / transform / load | CPU | saturated |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
printf '%s\n' "${results[@]}"
