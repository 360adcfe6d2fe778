#!/usr/bin/env bash
# Agora's benchmark, one command from the repository root (root needed: apt, runuser):
#
#   bash bench/run.sh [--size large|small] [--duration S] [--rounds N] [--workers W] [--no-seed]
#                     [--extra LABEL=URL ...] [--extra-db NAME ...] [--search-classes] [--search-only]
#
# Everything it needs is in bench/:
#   1. installs wrk when missing, starts the bench PostgreSQL (bench/pg.sh: 127.0.0.1:5440);
#   2. times `alembic upgrade head` on empty SQLite and PostgreSQL databases;
#   3. seeds agora_<size> with bench/seed.py (migrated by our chain, then loaded), and makes
#      limit_<size> a copy of it: both servers start from the same rows and indexes;
#   4. starts the limit server (bench/limit_server.py, 1 worker, :8201) and Agora as the
#      README's production start documents it (W workers, default one per core, on :8000;
#      its JSON access log on, rate limits off: all load comes from one address);
#   5. runs list, search, get, create, vote, login for each in turn, interleaved rounds
#      (bench/driver.py), printing req/s, p50, p99 and each target's ratio to the limit;
#   6. measures list p99 alone and while 4 logins/s run (bench/login_interference.py);
#   7. with --search-classes only (off by default: about 20 minutes more at the default
#      duration and rounds), searches by the class of query (bench/search_classes.py):
#      every class of bench/lua/search_classes.lua and their mix, per-class req/s, p50 and
#      p99, as seeded, then again after 20,000 new posts that match none of the seed's
#      words (bench/burst.py, written into both databases, removed at the end).
# --search-only: steps 1, 3, 4 and 7 (no migration timing, standard scenarios or logins).
# --no-seed uses the databases as they are (the limit copy is made only when missing).
# --extra LABEL=URL (repeatable) adds an already-running server, e.g. Agora at an older
# commit on its own copy of the data, to the same interleaved rounds (an A/B);
# --extra-db NAME (repeatable) names its database on the bench PostgreSQL, which step 7's
# burst then writes to as well (without it, step 7 refuses to run with --extra).
# Everything it starts is stopped on exit (PostgreSQL too, unless it was already running).
# Results: bench/results/<time>-<size>/ (step 7's in its search/ folder).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$REPO/bench"
PY="$REPO/.venv/bin/python"

SIZE=large DURATION=10 ROUNDS=3 WORKERS="$(nproc)" SEED=1 SEARCH_CLASSES=0 STANDARD=1
EXTRA=() EXTRA_DBS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --no-seed) SEED=0; shift ;;
    --extra)
      [[ "${2:-}" =~ ^[A-Za-z0-9_.-]+=http://[^/]+$ ]] || { echo "--extra takes LABEL=http://HOST:PORT" >&2; exit 2; }
      EXTRA+=("$2"); shift 2 ;;
    --extra-db)
      [[ "${2:-}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "--extra-db takes a database name" >&2; exit 2; }
      EXTRA_DBS+=("$2"); shift 2 ;;
    --search-classes) SEARCH_CLASSES=1; shift ;;
    --search-only) SEARCH_CLASSES=1 STANDARD=0; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$SIZE" in
  large) USERS=10000 POSTS=1000000 VOTES=5000000 ;;
  small) USERS=100 POSTS=1000 VOTES=5000 ;;
  *) echo "--size is large or small" >&2; exit 2 ;;
esac
# The burst must reach every server's data, or the second pass compares unlike feeds.
if [ "$SEARCH_CLASSES" = 1 ] && [ "${#EXTRA[@]}" -gt 0 ] && [ "${#EXTRA_DBS[@]}" != "${#EXTRA[@]}" ]; then
  echo "--search-classes with --extra needs one --extra-db per --extra (the burst goes into each)" >&2
  exit 2
fi
STEPS=6
[ "$SEARCH_CLASSES" = 1 ] && STEPS=7

say() { printf '\n[agora-bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
OUT="$REPO/bench/results/$(date +%Y%m%d-%H%M%S)-$SIZE"
mkdir -p "$OUT"
AGORA_PORT=8000 LIMIT_PORT=8201
AGORA_DB="agora_$SIZE" LIMIT_DB="limit_$SIZE"
SERVER="postgresql://postgres@127.0.0.1:5440"

answers() { curl -s -o /dev/null --max-time 2 "$1"; }
wait_up() { # wait_up NAME URL PID LOG: until URL answers; fail early if PID is gone
  local name="$1" url="$2" pid="$3" log="$4"
  for _ in $(seq 1 300); do
    answers "$url" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name did not start; the end of $log:" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "$name did not answer $url within 60 s (log: $log)" >&2
  return 1
}
stop_pid() { # stop_pid PID: SIGTERM, up to 20 s to finish, then SIGKILL
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

say "1/$STEPS tools and the bench PostgreSQL"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -x "$PY" ] || python3 -m venv "$REPO/.venv"
"$REPO/.venv/bin/pip" install -q -r "$REPO/requirements.txt"
PG_WAS_RUNNING=0
bash "$BENCH/pg.sh" status >/dev/null 2>&1 && PG_WAS_RUNNING=1
bash "$BENCH/pg.sh" start

AGORA_PID="" LIMIT_PID=""
cleanup() {
  [ -z "$AGORA_PID" ] || stop_pid "$AGORA_PID"
  [ -z "$LIMIT_PID" ] || stop_pid "$LIMIT_PID"
  [ "$PG_WAS_RUNNING" = 1 ] || bash "$BENCH/pg.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$STANDARD" = 1 ]; then
  say "2/$STEPS full migration chain on empty databases"
  "$PY" "$BENCH/time_migrations.py" --postgresql "$SERVER/postgres" | tee "$OUT/migrations.txt"
else
  say "2/$STEPS skipped (--search-only)"
fi

if [ "$SEED" = 1 ]; then
  say "3/$STEPS seeding $AGORA_DB (bench/seed.py: $USERS users, $POSTS posts, $VOTES votes), then $LIMIT_DB as its copy"
  bash "$BENCH/pg.sh" createdb "$AGORA_DB" --recreate
  (cd "$REPO" && "$PY" -m bench.seed --database-url "$SERVER/$AGORA_DB" \
    --users "$USERS" --posts "$POSTS" --votes "$VOTES")
  bash "$BENCH/pg.sh" createdb-from "$LIMIT_DB" "$AGORA_DB"
else
  say "3/$STEPS no seeding: $AGORA_DB and $LIMIT_DB as they are"
  bash "$BENCH/pg.sh" psql "$AGORA_DB" -qAtc "SELECT 1" >/dev/null ||
    { echo "no database $AGORA_DB: run without --no-seed first" >&2; exit 1; }
  bash "$BENCH/pg.sh" psql "$LIMIT_DB" -qAtc "SELECT 1" >/dev/null 2>&1 ||
    bash "$BENCH/pg.sh" createdb-from "$LIMIT_DB" "$AGORA_DB"
fi

say "4/$STEPS servers: limit (1 worker) on :$LIMIT_PORT, Agora ($WORKERS workers) on :$AGORA_PORT"
for port in "$LIMIT_PORT" "$AGORA_PORT"; do
  if answers "http://127.0.0.1:$port/"; then
    echo "something already answers on 127.0.0.1:$port: stop it first" >&2
    exit 1
  fi
done
SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')"
(cd "$REPO" && LIMIT_DATABASE_URL="$SERVER/$LIMIT_DB" LIMIT_SECRET_KEY="$SECRET" exec "$PY" -m uvicorn \
  bench.limit_server:app --host 127.0.0.1 --port "$LIMIT_PORT" --workers 1 --loop uvloop --http httptools \
  --no-access-log --log-level warning >"$OUT/limit.log" 2>&1) &
LIMIT_PID=$!
(cd "$REPO" && ENVIRONMENT=production SECRET_KEY="$SECRET" DATABASE_URL="$SERVER/$AGORA_DB" \
  RATE_LIMIT_ENABLED=false exec .venv/bin/python -m app --no-migrate \
  --workers "$WORKERS" --port "$AGORA_PORT" >"$OUT/agora.log" 2>&1) &
AGORA_PID=$!
wait_up "the limit server" "http://127.0.0.1:$LIMIT_PORT/health" "$LIMIT_PID" "$OUT/limit.log"
wait_up "Agora" "http://127.0.0.1:$AGORA_PORT/health" "$AGORA_PID" "$OUT/agora.log"
for extra in "${EXTRA[@]}"; do
  answers "${extra#*=}/health" || { echo "--extra ${extra}: nothing answers at ${extra#*=}" >&2; exit 1; }
done

if [ "$STANDARD" = 1 ]; then
  say "5/$STEPS load: $ROUNDS rounds x ${DURATION}s per scenario and target"
  "$PY" "$BENCH/driver.py" --users "$USERS" --posts "$POSTS" --duration "$DURATION" --rounds "$ROUNDS" \
    --out "$OUT" limit="http://127.0.0.1:$LIMIT_PORT" agora="http://127.0.0.1:$AGORA_PORT" "${EXTRA[@]}"

  say "6/$STEPS list p99 with and without 4 logins/s"
  "$PY" "$BENCH/login_interference.py" --url "http://127.0.0.1:$AGORA_PORT" \
    --users "$USERS" --duration "$DURATION" | tee "$OUT/login_interference.txt"
else
  say "5-6/$STEPS skipped (--search-only)"
fi

if [ "$SEARCH_CLASSES" = 1 ]; then
  say "7/$STEPS search by the class of query: as seeded, then after 20,000 posts matching no seed word"
  BURST_DBS=(--database-url "$SERVER/$AGORA_DB" --database-url "$SERVER/$LIMIT_DB")
  for db in "${EXTRA_DBS[@]}"; do BURST_DBS+=(--database-url "$SERVER/$db"); done
  (cd "$REPO" && "$PY" -m bench.search_classes --users "$USERS" --posts "$POSTS" --duration "$DURATION" \
    --rounds "$ROUNDS" --burst 20000 "${BURST_DBS[@]}" --out "$OUT/search" \
    limit="http://127.0.0.1:$LIMIT_PORT" agora="http://127.0.0.1:$AGORA_PORT" "${EXTRA[@]}")
fi

# Keep the end of the access log only (it holds one line per request).
tail -n 1000 "$OUT/agora.log" >"$OUT/agora.log.tail" && mv "$OUT/agora.log.tail" "$OUT/agora.log"
say "done: $OUT"
