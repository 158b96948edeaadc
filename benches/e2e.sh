#!/usr/bin/env bash
# End-to-end benchmark: an initial import of ROWS generated profiles, an incremental run of
# 110,000 changes (100,000 updated, 10,000 inserted) and an import of EVENTS events, through
# RabbitMQ, Parquet in object storage, DataFusion and the stores; and, in the same run, the
# baselines: plain binary COPY out of the source, binary COPY into a staging table and one
# set-based statement into a table shaped like the store.
# Then the wide shape (WIDE rows, ROWS by default; 0 leaves it out): 12 source columns mapped
# as 8 typed properties and a JSON payload into a workspace of its own, initial and then 10%
# updated and 1% inserted on one new updated_at, against binary COPY into a flat table with
# the same columns and one upsert.
# Prints rows/s for each, the ratio, and the peak RSS of each role's processes (with what of it is
# the process's own memory and what the binary's mapped pages).
#
#   cargo bench --bench e2e                               # builds the release binary first
#   cargo build --release && benches/e2e.sh               # ROWS=1000000, EVENTS=1000000
#   PROCS=2 benches/e2e.sh                                # two processes per worker role
#   ROWS=200000 EVENTS=0 SLUICE_BIN=target/debug/sluice benches/e2e.sh
#   LINEAGE=0s benches/e2e.sh                             # the imports keep no lineage
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
WIDE=${WIDE:-$ROWS}
EVENTS=${EVENTS:-1000000}
PROCS=${PROCS:-1}
BENCH=bench
source benches/fleet.sh
roles=()

# Each timed phase starts from a checkpoint, so none pays for another's dirty pages.
settle() { psql -q "$STORE" -c CHECKPOINT; psql -q "$WH" -c CHECKPOINT; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
results=()

psql -q "$WH" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, external_id text NOT NULL, first_name text,
                    loyalty_points integer, birthday date, updated_at timestamptz NOT NULL);
INSERT INTO users SELECT g, 'user-' || g, 'Name ' || g, (g * 7) % 1000, date '1970-01-01' + (g % 15000)::int,
       timestamptz '2024-01-01 00:00:00+00' + (g / 100) * interval '1 second'
  FROM generate_series(1, $ROWS) g;
CREATE INDEX users_watermark ON users (updated_at, id);
VACUUM ANALYZE users;
-- Events of the same users over two months, ten per user on average.
CREATE TABLE events (id bigint PRIMARY KEY, user_id text NOT NULL, event text NOT NULL,
                     screen text, occurred_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO events SELECT g, 'user-' || (1 + (g::bigint * 7919) % greatest($ROWS / 10, 1)), 'Screen Viewed',
       'screen-' || (g % 50), timestamptz '2026-09-01 00:00:00+00' + (g % 5000000) * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + (g / 100) * interval '1 second'
  FROM generate_series(1, $EVENTS) g;
CREATE INDEX events_watermark ON events (updated_at, id);
VACUUM ANALYZE events;
SQL

# --- baselines: binary COPY out, binary COPY into staging, one set-based statement -------------
psql -q "$STORE" <<'SQL'
CREATE TABLE baseline_profiles (external_id text PRIMARY KEY, properties jsonb NOT NULL,
                                source_updated_at timestamptz NOT NULL);
CREATE TABLE baseline_event_keys (dedup_key text PRIMARY KEY);
-- Shaped like the event store: a generated id, the key on (id, time), an index by user.
CREATE TABLE baseline_events (event_id bigserial, user_id text NOT NULL, name text NOT NULL,
                              time timestamptz NOT NULL, dedup_key text NOT NULL,
                              properties jsonb NOT NULL, PRIMARY KEY (event_id, time))
  PARTITION BY RANGE (time);
CREATE INDEX ON baseline_events (user_id, time);
CREATE TABLE baseline_events_09 PARTITION OF baseline_events FOR VALUES FROM ('2026-09-01') TO ('2026-10-01');
CREATE TABLE baseline_events_10 PARTITION OF baseline_events FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE baseline_events_11 PARTITION OF baseline_events FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
SQL
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
baseline_events() {
  psql -q "$WH" -c "COPY (SELECT user_id, event, occurred_at, 'evt-' || id, jsonb_build_object('screen', screen) FROM events) TO STDOUT (FORMAT binary)" |
    psql -q -v ON_ERROR_STOP=1 "$STORE" -f <(cat <<'SQL'
BEGIN;
CREATE TEMP TABLE stage (user_id text, name text, time timestamptz, dedup_key text, properties jsonb) ON COMMIT DROP;
\copy stage FROM pstdin WITH (FORMAT binary)
WITH fresh AS (INSERT INTO baseline_event_keys SELECT dedup_key FROM stage ON CONFLICT DO NOTHING RETURNING dedup_key)
INSERT INTO baseline_events (user_id, name, time, dedup_key, properties)
  SELECT s.* FROM stage s JOIN fresh USING (dedup_key);
COMMIT;
SQL
)
}
settle; t0=$(now); baseline "true"; t1=$(now)
base_initial=$(elapsed "$t0" "$t1")

# --- Sluice: PROCS processes per worker role --------------------------------------------------
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
    lineage_retention: ${LINEAGE:-30d}
  - name: screens
    connection: wh
    source: { table: public.events }
    data_type: events
    key: id
    watermark: updated_at
    identity: { external_id: user_id }
    event_name: { column: event }
    event_time: { column: occurred_at }
    properties:
      screen: { column: screen, type: string }
    chunk_rows: ${CHUNK_ROWS:-50000}
    settle_lag: 1s
    lineage_retention: ${LINEAGE:-30d}
YAML
"$BIN" apply -f "$DATA/spec.yaml" --ready >/dev/null
PORT=$((20000 + $$ % 20000))
ports=()
for role in coordinator extractor transformer loader; do
  for i in $(seq 1 "$( [ "$role" = coordinator ] && echo 1 || echo "$PROCS")"); do
    port=$((PORT + ${#ports[@]}))
    SLUICE_HTTP_ADDR=127.0.0.1:$port "$BIN" "$role" 2>"$DATA/$role.$i.log" & pids+=($!); roles+=("$role")
    ports+=("$port")
  done
done
sleep 2
# Seconds every process spent in each stage's handlers (planning is the coordinator's commands
# stage, result bookkeeping its results stage) and chunks spent waiting in the extract,
# transform and load queues, summed over all messages so far.
stage_seconds() {
  local stage queue out=()
  for stage in commands extract transform load results; do
    out+=("$(metric_sum sluice_stage_duration_seconds_sum "stage=\"$stage\"" "${ports[@]}")")
  done
  for queue in extract transform load; do
    out+=("$(metric_sum sluice_queue_wait_seconds_sum "queue=\"$ID.$queue\"" "${ports[@]}")")
  done
  echo "${out[*]}"
}
# With PROFILE=1, the store's statements of each run from pg_stat_statements (the server must
# preload it: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements', then restart).
# With EXPLAIN_MS, the plans of statements slower than that in the server's log (auto_explain,
# with the time of each node; timing every node slows every statement down). With PERF=1,
# `perf record` of the whole machine during each run, its busiest functions reported.
profile_reset() { [ -z "${PROFILE:-}" ] || psql -qAt "$STORE" -c "SELECT pg_stat_statements_reset()" >/dev/null; }
profile_report() {
  [ -n "${PROFILE:-}" ] || return 0
  # A statement on a chunk's temporary tables is a new entry per chunk: summed by its text.
  psql -qAt -F ' | ' "$STORE" -c "SELECT '', sum(calls), round((sum(total_exec_time) / 1000)::numeric, 1),
      round((sum(total_exec_time) / sum(calls))::numeric, 1), sum(rows), q || ' |'
    FROM (SELECT *, left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS q FROM pg_stat_statements
           WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())) s
    GROUP BY q ORDER BY sum(total_exec_time) DESC LIMIT 12"
}
if [ -n "${PROFILE:-}" ]; then
  psql -qAt "$STORE" -c "SHOW shared_preload_libraries" | grep -q pg_stat_statements ||
    { echo "PROFILE=1 needs pg_stat_statements in the server's shared_preload_libraries" >&2; exit 1; }
  psql -q "$STORE" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
fi
if [ -n "${EXPLAIN_MS:-}" ]; then
  psql -q "$STORE" -c "ALTER DATABASE ${ID}_store SET session_preload_libraries = 'auto_explain'" \
    -c "ALTER DATABASE ${ID}_store SET auto_explain.log_min_duration = '$EXPLAIN_MS'" \
    -c "ALTER DATABASE ${ID}_store SET auto_explain.log_analyze = on"
fi

# CPU seconds used so far by the Sluice processes, and by the whole machine (all cores).
sluice_cpu() {
  local pid t=0 hz; hz=$(getconf CLK_TCK)
  for pid in "${pids[@]}"; do
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  awk -v t="$t" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'
}
machine_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}
stages=()
cpus=()
sluice_run() { # $1 = import, $2 = workspace (bench); prints the seconds the run took
  local a b before cpu_before
  settle; before=$(stage_seconds); cpu_before="$(sluice_cpu) $(machine_cpu)"
  profile_reset
  [ -z "${PERF:-}" ] || { perf record -a -q -o "$DATA/$1.perf" 2>/dev/null & perf_pid=$!; sleep 0.5; }
  a=$(now)
  "$BIN" run "$1" --workspace "${2:-bench}" --wait --output json > "$DATA/$1.json"; b=$(now)
  [ -z "${PERF:-}" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true
    { # perf names threads: each role's thread ids, to read the lines below by.
      for i in "${!pids[@]}"; do echo "${roles[$i]}: threads $(ls "/proc/${pids[$i]}/task" | tr '\n' ' ')"; done
      perf report -i "$DATA/$1.perf" --sort pid --stdio 2>/dev/null | grep -v '^#' | grep . | head -8
      perf report -i "$DATA/$1.perf" --sort pid,symbol --stdio 2>/dev/null | grep -v '^#' | grep . | head -40
    } | sed 's/ *$//' > "$DATA/$1.perf.txt"; }
  grep -q '"status":"succeeded"' "$DATA/$1.json" || { cat "$DATA/$1.json" >&2; exit 1; }
  echo "$before $(stage_seconds)" > "$DATA/$1.stages"
  echo "$cpu_before $(sluice_cpu) $(machine_cpu)" > "$DATA/$1.cpu"
  profile_report > "$DATA/$1.statements"
  elapsed "$a" "$b"
}
# Keeps the stage seconds, CPU seconds and store statements of import $1's last run for the
# results row named $2 of $3 rows.
named=()
stages_of() {
  stages+=("$2 $(cat "$DATA/$1.stages")")
  cpus+=("$2 $3 $(cat "$DATA/$1.cpu")")
  named+=("$2")
  cp "$DATA/$1.statements" "$DATA/$2.statements"
  [ -z "${PERF:-}" ] || cp "$DATA/$1.perf.txt" "$DATA/$2.perf.txt"
}
sluice_initial=$(sluice_run users)
results+=("initial $ROWS $base_initial $sluice_initial"); stages_of users initial "$ROWS"

# --- incremental: 100,000 updated and 10,000 inserted -------------------------------------------
changed=$(( ROWS < 100000 ? ROWS : 100000 ))
mark=$(psql -qAt "$WH" -c "SELECT now() - interval '2 seconds'")
psql -q "$WH" <<SQL
UPDATE users SET loyalty_points = loyalty_points + 1, updated_at = now() - interval '2 seconds' WHERE id <= $changed;
INSERT INTO users SELECT g, 'user-' || g, 'New ' || g, 1, date '2000-01-01', now() - interval '2 seconds'
  FROM generate_series($ROWS + 1, $ROWS + 10000) g;
SQL
sleep 2
settle; t0=$(now); baseline "updated_at > '$mark'"; t1=$(now)
base_incr=$(elapsed "$t0" "$t1")
sluice_incr=$(sluice_run users)
grep -q "\"rows_read\":$((changed + 10000))" "$DATA/users.json" || { cat "$DATA/users.json"; exit 1; }
results+=("incremental $((changed + 10000)) $base_incr $sluice_incr"); stages_of users incremental "$((changed + 10000))"

# --- small runs: SMALL_RUNS runs of 1,000 changed rows on the store just loaded, each followed by
# a run that reads nothing; from `sluice run` to `succeeded` as the CLI sees it ------------------
small=() noop=() small_stages=()
for i in $(seq 1 "${SMALL_RUNS:-7}"); do
  sleep 1
  psql -q "$WH" -c "UPDATE users SET loyalty_points = loyalty_points + 1,
      updated_at = now() - interval '1.2 seconds' WHERE id > $((i * 1000)) AND id <= $((i * 1000 + 1000))"
  before=$(stage_seconds); a=$(now)
  "$BIN" run users --workspace bench --wait --output json > "$DATA/small.json"; b=$(now)
  grep -q '"status":"succeeded"' "$DATA/small.json" && grep -q '"rows_read":1000,' "$DATA/small.json" ||
    { cat "$DATA/small.json" >&2; exit 1; }
  small+=("$(elapsed "$a" "$b")"); small_stages+=("$before $(stage_seconds)")
  a=$(now)
  "$BIN" run users --workspace bench --wait --output json > "$DATA/noop.json"; b=$(now)
  grep -q '"rows_read":0,' "$DATA/noop.json" || { cat "$DATA/noop.json" >&2; exit 1; }
  noop+=("$(elapsed "$a" "$b")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- events ---------------------------------------------------------------------------------------
if [ "$EVENTS" -gt 0 ]; then
  settle; t0=$(now); baseline_events; t1=$(now)
  base_events=$(elapsed "$t0" "$t1")
  sluice_events=$(sluice_run screens)
  grep -q "\"events_inserted\":$EVENTS" "$DATA/screens.json" || { cat "$DATA/screens.json"; exit 1; }
  results+=("events $EVENTS $base_events $sluice_events"); stages_of screens events "$EVENTS"
fi

# --- the wide shape ------------------------------------------------------------------------------
if [ "$WIDE" -gt 0 ]; then source benches/e2e_wide.sh; fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%F); binary $BIN; $PROCS process(es) per worker role; chunk_rows ${CHUNK_ROWS:-50000}; lineage_retention ${LINEAGE:-30d}"
printf '| run | rows | baseline rows/s | sluice rows/s | sluice / baseline |\n|---|---|---|---|---|\n'
for r in "${results[@]}"; do
  set -- $r
  b=$(rate "$2" "$3"); s=$(rate "$2" "$4")
  printf '| %s | %s | %s | %s | %s%% |\n' "$1" "$2" "$b" "$s" "$(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.0f", 100 * s / b }')"
done
printf '\n| run | planning (s) | extract (s) | transform (s) | load (s) | results (s) | waiting for extract / transform / load (s) |\n|---|---|---|---|---|---|---|\n'
for r in "${stages[@]}"; do
  set -- $r
  name=$1; shift
  read -r -a d < <(awk -v line="$*" 'BEGIN { n = split(line, v, " "); h = n / 2
                                            for (i = 1; i <= h; i++) printf "%.1f ", v[i + h] - v[i]; print "" }')
  printf '| %s | %s | %s | %s | %s | %s | %s / %s / %s |\n' "$name" "${d[@]}"
done
printf '\n| small run (%s each) | p50 (s) | max (s) |\n|---|---|---|\n' "${#small[@]}"
printf '| 1,000 changed rows | %s | %s |\n' "$(median "${small[@]}")" "$(printf '%s\n' "${small[@]}" | sort -g | tail -1)"
printf '| nothing changed | %s | %s |\n' "$(median "${noop[@]}")" "$(printf '%s\n' "${noop[@]}" | sort -g | tail -1)"
printf '\nthe 1,000-row runs'"'"' stages, mean per run (s): planning, extract, transform, load, results; waiting for extract / transform / load\n'
for r in "${small_stages[@]}"; do echo "$r"; done |
  awk '{ h = NF / 2; for (i = 1; i <= h; i++) s[i] += $(i + h) - $i; n++ }
       END { for (i = 1; i <= 8; i++) printf "%.3f%s", s[i] / n, i < 8 ? " " : "\n" }'
printf '\n| run | Sluice CPU (s) | Sluice CPU s per million rows | machine CPU (s, all cores) | Sluice share |\n|---|---|---|---|---|\n'
for r in "${cpus[@]}"; do
  set -- $r
  awk -v name="$1" -v n="$2" -v s0="$3" -v m0="$4" -v s1="$5" -v m1="$6" 'BEGIN {
    s = s1 - s0; m = m1 - m0
    printf "| %s | %.1f | %.1f | %.1f | %.0f%% |\n", name, s, s * 1000000 / n, m, 100 * s / m }'
done
if [ -n "${PROFILE:-}" ]; then
  for n in "${named[@]}"; do
    printf '\n%s: the store'"'"'s statements by total time\n\n| calls | total (s) | mean (ms) | rows | statement |\n|---|---|---|---|---|\n' "$n"
    cat "$DATA/$n.statements"
  done
fi
if [ -n "${PERF:-}" ]; then
  for n in "${named[@]}"; do
    printf '\n%s: the busiest functions on the machine (perf)\n\n```\n' "$n"
    cat "$DATA/$n.perf.txt"; printf '```\n'
  done
fi
[ -z "${EXPLAIN_MS:-}" ] || { echo; echo "plans of statements over $EXPLAIN_MS ms: the server's log (auto_explain)"; }
# The peak, and at the end its two parts: the process's own memory and the pages of the binary
# it has mapped (its code, shared with every sluice process on the host).
printf '\n| role | peak RSS (MiB), each process | at the end: own / the binary'"'"'s pages |\n|---|---|---|\n'
for role in coordinator extractor transformer loader; do
  hwms=() parts=()
  for i in "${!pids[@]}"; do
    [ "${roles[$i]}" = "$role" ] || continue
    read -r hwm part < <(awk '/VmHWM/ { h = $2 } /RssAnon/ { a = $2 } /RssFile/ { f = $2 }
      END { printf "%d %d/%d\n", h / 1024, a / 1024, f / 1024 }' "/proc/${pids[$i]}/status")
    hwms+=("$hwm") parts+=("$part")
  done
  printf '| %s | %s | %s |\n' "$role" "${hwms[*]}" "${parts[*]}"
done
