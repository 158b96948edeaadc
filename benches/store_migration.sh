#!/usr/bin/env bash
# Times the profile store's migrations 5 (per-property freshness), 6 (event property types),
# 7 (mirror removals) and 8 (the identities re-indexed by profile id) on a store already holding
# PROFILES profiles, each with an identity and five properties: what an operator pays to roll
# them out.
#
#   PROFILES=10000000 benches/store_migration.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILES=${PROFILES:-10000000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=store_migration_$$
URL="$PG/$DB"
cleanup() { psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null; }
trap cleanup EXIT

./deploy/services.sh >/dev/null
psql -q "$PG/postgres" -c "CREATE DATABASE $DB"
psql -q "$URL" -c "CREATE SCHEMA profile_store"
for n in 1 2 3 4; do psql -q -v ON_ERROR_STOP=1 "$URL" -f loader/migrations/000${n}_*.sql; done
start=$(date +%s.%N)
psql -q -v ON_ERROR_STOP=1 "$URL" <<SQL
INSERT INTO profile_store.profiles (workspace_id, profile_id, properties, email, source_updated_at)
SELECT 1, g, jsonb_build_object('first_name', 'Name ' || g, 'points', g % 1000,
                                'birthday', '1990-01-01', 'tier', 'gold', 'active', true),
       'user' || g || '@example.com', timestamptz '2024-01-01' + g * interval '1 second'
  FROM generate_series(1, $PROFILES) g;
INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
SELECT 1, 'external_id', 'user-' || g, g FROM generate_series(1, $PROFILES) g;
VACUUM ANALYZE profile_store.profiles;
SQL
loaded=$(date +%s.%N)
size=$(psql -qAt "$URL" -c "SELECT pg_size_pretty(pg_total_relation_size('profile_store.profiles'))")
echo "store of $PROFILES profiles ($size) built in $(awk -v a="$start" -v b="$loaded" 'BEGIN { printf "%.0f", b - a }') s"

for n in 5 6 7 8; do
  file=$(ls loader/migrations/000${n}_*.sql)
  t0=$(date +%s.%N)
  psql -q -v ON_ERROR_STOP=1 "$URL" -1 -f "$file"
  t1=$(date +%s.%N)
  echo "migration $n ($(basename "$file")): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s"
done
after=$(psql -qAt "$URL" -c "SELECT pg_size_pretty(pg_total_relation_size('profile_store.profiles'))")
echo "profiles after the migrations: $after"
# Every existing property now reads as stamped by today's source_updated_at.
psql -qAt "$URL" -c "SELECT count(*) FILTER (WHERE property_stamps IS NULL AND source_import_id = 0 AND source_key = ''), count(*) FROM profile_store.profiles"
