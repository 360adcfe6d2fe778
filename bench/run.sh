#!/usr/bin/env bash
# Agora's benchmark, one command from the repository root:
#
#   bash bench/run.sh [--size large|small] [--duration S] [--rounds N] [--workers W] [--no-seed]
#
# It uses the shared measuring tools beside the repo (../shared/bench: a tuned
# throwaway PostgreSQL on 127.0.0.1:5440, the "limit" reference server and the
# interleaved wrk driver), and Agora's own seeder and start command:
#   1. installs wrk and the harness venv when missing, starts the bench PostgreSQL;
#   2. times `alembic upgrade head` on empty SQLite and PostgreSQL databases;
#   3. seeds limit_<size> with the shared seeder and agora_<size> (migrated by our chain)
#      with bench/seed.py: the same 10,000 users / 1,000,000 posts / 5,000,000 votes;
#   4. starts the limit server (1 worker) and Agora as the README's production start
#      documents it (W workers, default one per core; its JSON access log on, rate
#      limits off: all load comes from one address), both on their own database;
#   5. runs list, search, get, create, vote, login for each in turn (interleaved rounds),
#      printing req/s, p50, p99 and Agora's ratio to the limit server;
#   6. measures list p99 alone and while 4 logins/s run (bench/login_interference.py).
# Everything it starts is stopped on exit. Results: bench/results/<time>/.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${AGORA_SHARED_BENCH:-$REPO/../shared/bench}"
[ -f "$SHARED/env.sh" ] || { echo "missing $SHARED (the shared measuring tools beside the repo)" >&2; exit 1; }
. "$SHARED/env.sh"

SIZE=large DURATION=10 ROUNDS=3 WORKERS="$(nproc)" SEED=1
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --no-seed) SEED=0; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$SIZE" in
  large) USERS=10000 POSTS=1000000 VOTES=5000000 ;;
  small) USERS=100 POSTS=1000 VOTES=5000 ;;
  *) echo "--size is large or small" >&2; exit 2 ;;
esac

say() { printf '\n[agora-bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
OUT="$REPO/bench/results/$(date +%Y%m%d-%H%M%S)-$SIZE"
mkdir -p "$OUT"
AGORA_PORT=8000 LIMIT_PORT=8201
AGORA_DB="agora_$SIZE" LIMIT_DB="limit_$SIZE"
AGORA_URL="postgresql://$PGUSER@$PGHOST:$PGPORT/$AGORA_DB"

say "1/6 tools"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -x "$REPO/.venv/bin/python" ] || python3 -m venv "$REPO/.venv"
"$REPO/.venv/bin/pip" install -q -r "$REPO/requirements.txt"
[ -x "$BENCH_PY" ] || { python3 -m venv "$BENCH_HOME/venv" &&
  "$BENCH_HOME/venv/bin/pip" install -q psycopg2-binary bcrypt asyncpg uvicorn uvloop httptools orjson py-spy; }
"$SHARED/pg_start.sh"

AGORA_PID=""
cleanup() {
  [ -n "$AGORA_PID" ] && kill "$AGORA_PID" 2>/dev/null && wait "$AGORA_PID" 2>/dev/null
  "$SHARED/limit_stop.sh" "$LIMIT_PORT" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "2/6 full migration chain on empty databases"
"$REPO/.venv/bin/python" "$REPO/bench/time_migrations.py" \
  --postgresql "postgresql://$PGUSER@$PGHOST:$PGPORT/postgres" | tee "$OUT/migrations.txt"

if [ "$SEED" = 1 ]; then
  say "3/6 seeding $LIMIT_DB (shared seeder) and $AGORA_DB (bench/seed.py): $USERS users, $POSTS posts, $VOTES votes"
  "$SHARED/pg_createdb.sh" "$LIMIT_DB" --recreate
  "$BENCH_PY" "$SHARED/seed.py" --db "$LIMIT_DB" --users "$USERS" --posts "$POSTS" --votes "$VOTES" \
    --create-schema --careful-indexes
  "$SHARED/pg_createdb.sh" "$AGORA_DB" --recreate
  (cd "$REPO" && .venv/bin/python -m bench.seed --database-url "$AGORA_URL" \
    --users "$USERS" --posts "$POSTS" --votes "$VOTES")
fi

say "4/6 servers: limit (1 worker) on :$LIMIT_PORT, Agora ($WORKERS workers) on :$AGORA_PORT"
"$SHARED/limit_stop.sh" "$LIMIT_PORT" >/dev/null 2>&1 || true
"$SHARED/limit_start.sh" "$LIMIT_DB" 1 "$LIMIT_PORT"
(cd "$REPO" && ENVIRONMENT=production SECRET_KEY="$BENCH_SECRET-agora-benchmark-key" DATABASE_URL="$AGORA_URL" \
  RATE_LIMIT_ENABLED=false exec .venv/bin/python -m app --no-migrate \
  --workers "$WORKERS" --port "$AGORA_PORT" >"$OUT/agora.log" 2>&1) &
AGORA_PID=$!
wait_http "http://127.0.0.1:$AGORA_PORT/docs" 60

say "5/6 load: $ROUNDS rounds x ${DURATION}s per scenario and target"
"$SHARED/run.sh" --size "$SIZE" --duration "$DURATION" --rounds "$ROUNDS" --out "$OUT" \
  limit="http://127.0.0.1:$LIMIT_PORT" agora="http://127.0.0.1:$AGORA_PORT"

say "6/6 list p99 with and without 4 logins/s"
"$REPO/.venv/bin/python" "$REPO/bench/login_interference.py" --url "http://127.0.0.1:$AGORA_PORT" \
  --users "$USERS" --duration "$DURATION" | tee "$OUT/login_interference.txt"

# Keep the end of the access log only (it holds one line per request).
tail -n 1000 "$OUT/agora.log" >"$OUT/agora.log.tail" && mv "$OUT/agora.log.tail" "$OUT/agora.log"
say "done: $OUT"
