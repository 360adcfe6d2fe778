#!/usr/bin/env bash
# What PgBouncer costs Agora: the feed page and one post, directly and through PgBouncer.
#
#   bash bench/pgbouncer.sh [--duration S] [--rounds N] [--workers W] [--posts N]
#
# 1. starts the bench PostgreSQL (bench/pg.sh: 127.0.0.1:5440) and seeds agora_pgbouncer
#    (100 users, --posts posts (default 1,000), 5 votes per post) unless it is there;
# 2. starts PgBouncer (Debian's; installed when missing) on :6440 with an ini of its own in
#    a temporary directory: transaction pooling, W x DATABASE_POOL_SIZE (4) server
#    connections, as many as Agora opens directly;
# 3. starts Agora three times as the production start documents it (W workers, default
#    one per core; rate limits off): directly on :8301; through PgBouncer on :8302
#    (DATABASE_BEHIND_PGBOUNCER=true); and with DATABASE_BEHIND_PGBOUNCER=true but
#    directly on :8303, which tells the cost of the settings (no statement cache) from
#    the cost of PgBouncer itself (its proxying, on the same machine);
# 4. runs bench/driver.py, list (GET /posts/?limit=10&skip=...) and get (GET /posts/{id})
#    with 16 connections, interleaved rounds; ratios are to the direct start.
# Everything it starts is stopped on exit (PostgreSQL too, unless it was already running).
# Results: bench/results/<time>-pgbouncer/.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$REPO/bench"
PY="$REPO/.venv/bin/python"

DURATION=5 ROUNDS=3 WORKERS="$(nproc)" POSTS=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --posts) POSTS="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
USERS=100 VOTES=$((POSTS * 5))
DB=agora_pgbouncer
SERVER="postgresql://postgres@127.0.0.1:5440"
DIRECT_PORT=8301 BOUNCED_PORT=8302 NOCACHE_PORT=8303 BOUNCER_PORT=6440
OUT="$REPO/bench/results/$(date +%Y%m%d-%H%M%S)-pgbouncer"
mkdir -p "$OUT"
say() { printf '\n[agora-pgbouncer %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
answers() { curl -sf -o /dev/null --max-time 2 "$1"; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
PGBOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
[ -x "$PGBOUNCER" ] || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
PG_WAS_RUNNING=0
bash "$BENCH/pg.sh" status >/dev/null 2>&1 && PG_WAS_RUNNING=1
bash "$BENCH/pg.sh" start

HOME_DIR="$(mktemp -d /tmp/agora-pgbouncer-bench.XXXXXX)"
chmod 755 "$HOME_DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "$PG_WAS_RUNNING" = 1 ] || bash "$BENCH/pg.sh" stop >/dev/null 2>&1 || true
  rm -rf "$HOME_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! bash "$BENCH/pg.sh" psql "$DB" -qAtc "SELECT 1 FROM alembic_version" >/dev/null 2>&1; then
  say "seeding $DB ($USERS users, $POSTS posts, $VOTES votes)"
  bash "$BENCH/pg.sh" createdb "$DB" --recreate
  (cd "$REPO" && "$PY" -m bench.seed --database-url "$SERVER/$DB" --users "$USERS" --posts "$POSTS" --votes "$VOTES")
fi

say "PgBouncer on :$BOUNCER_PORT (transaction pooling, $((WORKERS * 4)) server connections)"
cat >"$HOME_DIR/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=5440 dbname=$DB user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $HOME_DIR/userlist.txt
pool_mode = transaction
default_pool_size = $((WORKERS * 4))
max_client_conn = 200
logfile = $HOME_DIR/pgbouncer.log
pidfile = $HOME_DIR/pgbouncer.pid
EOF
echo '"postgres" ""' >"$HOME_DIR/userlist.txt"
chown -R postgres "$HOME_DIR"
runuser -u postgres -- "$PGBOUNCER" "$HOME_DIR/pgbouncer.ini" 2>/dev/null &
PIDS+=($!)

SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')"
start_agora() { # start_agora PORT DATABASE_URL [VAR=VALUE ...]
  local port="$1" url="$2"
  shift 2
  (cd "$REPO" && exec env ENVIRONMENT=production SECRET_KEY="$SECRET" DATABASE_URL="$url" RATE_LIMIT_ENABLED=false "$@" \
    .venv/bin/python -m app --no-migrate --workers "$WORKERS" --port "$port" >"$OUT/agora-$port.log" 2>&1) &
  PIDS+=($!)
}
say "Agora ($WORKERS workers): directly on :$DIRECT_PORT, through PgBouncer on :$BOUNCED_PORT, no cache on :$NOCACHE_PORT"
start_agora "$DIRECT_PORT" "$SERVER/$DB"
start_agora "$BOUNCED_PORT" "postgresql://postgres@127.0.0.1:$BOUNCER_PORT/$DB" \
  DATABASE_BEHIND_PGBOUNCER=true MIGRATION_DATABASE_URL="$SERVER/$DB"
start_agora "$NOCACHE_PORT" "$SERVER/$DB" DATABASE_BEHIND_PGBOUNCER=true MIGRATION_DATABASE_URL="$SERVER/$DB"
for port in "$DIRECT_PORT" "$BOUNCED_PORT" "$NOCACHE_PORT"; do
  for _ in $(seq 1 150); do answers "http://127.0.0.1:$port/health" && break; sleep 0.2; done
  answers "http://127.0.0.1:$port/ready" || { echo "Agora on :$port is not ready:" >&2; tail -n 20 "$OUT/agora-$port.log" >&2; exit 1; }
done

say "load: $ROUNDS rounds x ${DURATION}s per scenario and target, 16 connections"
"$PY" "$BENCH/driver.py" --users "$USERS" --posts "$POSTS" --duration "$DURATION" --rounds "$ROUNDS" \
  --connections 16 --scenarios list,get --out "$OUT" \
  direct="http://127.0.0.1:$DIRECT_PORT" pgbouncer="http://127.0.0.1:$BOUNCED_PORT" \
  no-cache-direct="http://127.0.0.1:$NOCACHE_PORT"
tail -n 200 "$HOME_DIR/pgbouncer.log" >"$OUT/pgbouncer.log" 2>/dev/null || true
say "done: $OUT"
