#!/usr/bin/env bash
# One control plane under many schedules: IMPORTS imports (10,000) on PERIOD-minute schedules
# (15) spread over the period (cron minutes 0..PERIOD-1, so about IMPORTS / PERIOD fire each
# minute, all in its first second), reading a source that has nothing new after their first
# run, with one coordinator and one process per worker role, for DURATION seconds (1800) of
# the system clock: the first period's runs load the table, the runs after it read nothing.
# Prints, for the runs after the first period:
#   - the fire delay: from a run's slot to a coordinator taking it up (p50, p99);
#   - a run that read nothing, from being taken up to its end (p50, p99), and from its slot;
#   - the coordinator's CPU share and RSS;
#   - the messages each run that read nothing took: every role's consumed messages.
#
#   cargo build --release && benches/control_plane.sh
#   IMPORTS=667 PERIOD=1 DURATION=240 benches/control_plane.sh    # one minute's slot, quickly
set -euo pipefail
cd "$(dirname "$0")/.."

IMPORTS=${IMPORTS:-10000}
DURATION=${DURATION:-1800}
PERIOD=${PERIOD:-15}
BENCH=control
source benches/fleet.sh
PORT=$((20000 + $$ % 20000))

psql -q "$WH" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, external_id text NOT NULL, tier text,
                    updated_at timestamptz NOT NULL);
INSERT INTO users SELECT g, 'user-' || g, 'tier-' || (g % 3), timestamptz '2024-01-01' + g * interval '1 second'
  FROM generate_series(1, 20) g;
CREATE INDEX users_watermark ON users (updated_at, id);
SQL

{
  printf 'workspace: control\nconnections:\n  - { name: wh, kind: postgres, url: "%s" }\nimports:\n' "$WH"
  for i in $(seq 1 "$IMPORTS"); do
    printf '  - { name: users%05d, connection: wh, source: { table: public.users }, data_type: profiles, key: id, watermark: updated_at, identity: { external_id: external_id }, properties: { tier: { column: tier, type: string } }, schedule: { cron: "%d/%d * * * *" } }\n' "$i" $((i % PERIOD)) "$PERIOD"
  done
} > "$DATA/spec.yaml"
t0=$(now)
"$BIN" apply -f "$DATA/spec.yaml" --ready >/dev/null
applied=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')

SLUICE_HTTP_ADDR=127.0.0.1:$PORT "$BIN" coordinator 2>"$DATA/coordinator.log" & coordinator=$!; pids+=($coordinator)
ports=("$PORT")
for role in extractor transformer loader; do
  port=$((PORT + ${#ports[@]}))
  SLUICE_HTTP_ADDR=127.0.0.1:$port "$BIN" "$role" 2>"$DATA/$role.log" & pids+=($!)
  ports+=("$port")
done
sleep 2
ticks() { awk '{ print $14 + $15 }' "/proc/$coordinator/stat"; }
messages() {
  for port in "${ports[@]}"; do curl -s "http://127.0.0.1:$port/metrics"; done |
    awk '/^sluice_messages_total[{]/ && /outcome="ok"/ { s += $NF } END { print s + 0 }'
}
# The first period's runs load the table; the measured window starts once they are done.
first=$((PERIOD * 60 + 30))
if [ "$DURATION" -le "$first" ]; then echo "DURATION must be over $first s (the first period and 30 s)" >&2; exit 1; fi
sleep "$first"
window=$(psql -qAt "$STORE" -c "SELECT now()")
cpu_a=$(ticks); messages_a=$(messages)
sleep $((DURATION - first))
cpu_b=$(ticks); messages_b=$(messages)
rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$coordinator/status")
hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$coordinator/status")
for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done
sleep 1

read -r runs noop loaded fire_p50 fire_p99 noop_p50 noop_p99 slot_p50 slot_p99 messaged < <(psql -qAt -F ' ' "$STORE" <<SQL
WITH measured AS (
  SELECT * FROM control.runs WHERE scheduled_for >= '$window' AND status = 'succeeded')
SELECT count(*),
       count(*) FILTER (WHERE chunk_count = 0),
       count(*) FILTER (WHERE chunk_count > 0),
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)))::numeric, 3),
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)))::numeric, 3),
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) FILTER (WHERE chunk_count = 0))::numeric, 3),
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) FILTER (WHERE chunk_count = 0))::numeric, 3),
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - scheduled_for)) FILTER (WHERE chunk_count = 0))::numeric, 3),
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - scheduled_for)) FILTER (WHERE chunk_count = 0))::numeric, 3),
       (SELECT count(*) FROM control.runs WHERE created_at >= '$window')
  FROM measured
SQL
)
hz=$(getconf CLK_TCK)
measured=$((DURATION - first))
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; $IMPORTS imports on ${PERIOD}-minute schedules (applied in ${applied}s); ${measured}s measured after the first ${first}s, on the system clock"
printf '| runs measured | of them no-op | fire delay p50 / p99 (s) | no-op run p50 / p99 (s) | no-op run from its slot p50 / p99 (s) | coordinator CPU | coordinator RSS / peak (MiB) | messages per run |\n|---|---|---|---|---|---|---|---|\n'
printf '| %s | %s | %s / %s | %s / %s | %s / %s | %s | %s / %s | %s |\n' "$runs" "$noop" "$fire_p50" "$fire_p99" "$noop_p50" "$noop_p99" "$slot_p50" "$slot_p99" \
  "$(awk -v t="$((cpu_b - cpu_a))" -v hz="$hz" -v d="$measured" 'BEGIN { printf "%.0f%%", 100 * t / hz / d }')" "$rss" "$hwm" \
  "$(awk -v m="$((messages_b - messages_a))" -v r="$messaged" 'BEGIN { if (r) printf "%.2f", m / r; else print "-" }')"
[ "$loaded" = 0 ] || echo "note: $loaded measured runs read rows" >&2
