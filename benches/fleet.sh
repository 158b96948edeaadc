# Sourced by the benchmark scripts: a fleet of the benchmark's own — a warehouse database, a
# database for the control plane and the stores, a queue prefix and a data directory, all
# removed on exit unless KEEP is set — started services, and the binary to run.
# Set BENCH (the prefix of the names) first; processes started go in `pids`.
BIN=${SLUICE_BIN:-target/release/sluice}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
ID=${BENCH}_$$
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

# The sum of a metric's series matching a label filter, over the processes on the ports given.
metric_sum() { # $1 = metric name, $2 = label filter (regex), ports...
  local name=$1 filter=$2; shift 2
  for p in "$@"; do curl -s "http://127.0.0.1:$p/metrics"; done |
    awk -v n="$name" -v f="$filter" '$1 ~ "^"n"[{]" && $1 ~ f { s += $NF } END { printf "%.3f", s + 0 }'
}

./deploy/services.sh >/dev/null
psql -q "$PG/postgres" -c "CREATE DATABASE ${ID}_wh" -c "CREATE DATABASE ${ID}_store"
