#!/usr/bin/env bash
# One control plane under many schedules: IMPORTS imports (10,000) on 15-minute schedules
# spread over the quarter hour (cron minutes 0..14, so about IMPORTS / 15 fire each minute),
# reading a source that has nothing new after their first run, with one coordinator and one
# process per worker role, for DURATION seconds of real time (1800). The scheduler runs on the
# system clock. Prints the fire delay (a slot's run recorded after its time, p50 and p99), the
# end-to-end time of a run that read nothing (p50 and p99, from its slot to its end), the
# coordinator's CPU and peak RSS, and the messages each run took (every stage's consumed
# messages over the runs).
#
#   cargo build --release && benches/control_plane.sh
#   IMPORTS=300 DURATION=180 benches/control_plane.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMPORTS=${IMPORTS:-10000}
DURATION=${DURATION:-1800}
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
    printf '  - { name: users%05d, connection: wh, source: { table: public.users }, data_type: profiles, key: id, watermark: updated_at, identity: { external_id: external_id }, properties: { tier: { column: tier, type: string } }, schedule: { cron: "%d/15 * * * *" } }\n' "$i" $((i % 15))
  done
} > "$DATA/spec.yaml"
t0=$(now)
"$BIN" apply -f "$DATA/spec.yaml" --ready >/dev/null
applied=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')

SLUICE_HTTP_ADDR=127.0.0.1:$PORT "$BIN" coordinator 2>"$DATA/coordinator.log" & coordinator=$!; pids+=($coordinator)
for role in extractor transformer loader; do
  "$BIN" "$role" 2>"$DATA/$role.log" & pids+=($!)
done
sleep 2
start=$(psql -qAt "$STORE" -c "SELECT now()")
ticks() { awk '{ print $14 + $15 }' "/proc/$coordinator/stat"; }
cpu_a=$(ticks)
sleep "$DURATION"
cpu_b=$(ticks)
hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$coordinator/status")
messages=$(curl -s "http://127.0.0.1:$PORT/metrics" |
  awk '/^sluice_messages_total[{]/ && /outcome="ok"/ { s += $NF } END { print s + 0 }')
for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done

read -r runs noop fire_p50 fire_p99 noop_p50 noop_p99 < <(psql -qAt -F ' ' "$STORE" <<SQL
SELECT count(*),
       count(*) FILTER (WHERE chunk_count = 0),
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - scheduled_for)))::numeric, 3),
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - scheduled_for)))::numeric, 3),
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - scheduled_for)) FILTER (WHERE chunk_count = 0))::numeric, 3),
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - scheduled_for)) FILTER (WHERE chunk_count = 0))::numeric, 3)
  FROM control.runs WHERE scheduled_for >= '$start' AND status = 'succeeded'
SQL
)
hz=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; $IMPORTS imports (applied in ${applied}s), ${DURATION}s on the system clock"
printf '| runs | no-op runs | fire delay p50 / p99 (s) | no-op run p50 / p99 (s) | coordinator CPU | coordinator peak RSS (MiB) | messages per run (coordinator) |\n|---|---|---|---|---|---|---|\n'
printf '| %s | %s | %s / %s | %s / %s | %s | %s | %s |\n' "$runs" "$noop" "$fire_p50" "$fire_p99" "$noop_p50" "$noop_p99" \
  "$(awk -v t="$((cpu_b - cpu_a))" -v hz="$hz" -v d="$DURATION" 'BEGIN { printf "%.0f%%", 100 * t / hz / d }')" "$hwm" \
  "$(awk -v m="$messages" -v r="$runs" 'BEGIN { if (r) printf "%.1f", m / r; else print "-" }')"
