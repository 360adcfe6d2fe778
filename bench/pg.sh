#!/usr/bin/env bash
# A disposable PostgreSQL 15 cluster for the benchmark, tuned for speed, not for safety.
#
#   bash bench/pg.sh start                          # initialise on first use, then start (no-op when running)
#   bash bench/pg.sh stop                           # fast shutdown (no-op when stopped)
#   bash bench/pg.sh status                         # exit 0 when it accepts connections
#   bash bench/pg.sh createdb NAME [--recreate]     # an empty database (--recreate: drop it first)
#   bash bench/pg.sh createdb-from NAME TEMPLATE    # NAME becomes a fresh copy of TEMPLATE
#   bash bench/pg.sh psql [DB] [psql arguments]     # a psql session on the cluster
#
# Data in /tmp/agora-bench/pgdata, served on 127.0.0.1:5440 to the role `postgres` with
# trust authentication: never point this at anything you want to keep. The server runs as
# the OS user `postgres` (initdb refuses root). Durability is switched off (fsync,
# synchronous_commit, full_page_writes): the benchmark measures the servers' CPU path.
# Overrides: AGORA_BENCH_HOME, AGORA_BENCH_PGPORT, AGORA_BENCH_PGBIN, AGORA_BENCH_PGUSER_OS.
set -euo pipefail

HOME_DIR="${AGORA_BENCH_HOME:-/tmp/agora-bench}"
PGDATA="$HOME_DIR/pgdata"
PORT="${AGORA_BENCH_PGPORT:-5440}"
BIN="${AGORA_BENCH_PGBIN:-/usr/lib/postgresql/15/bin}"
OS_USER="${AGORA_BENCH_PGUSER_OS:-postgres}"
LOG="$HOME_DIR/postgres.log"

as_pg() { (cd / && runuser -u "$OS_USER" -- "$@"); }
sql() { # sql DB STATEMENT: run one statement as the superuser, stop on error
  PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d "$1" -c "$2"
}
query() { "$BIN/psql" -X -q -At -h 127.0.0.1 -p "$PORT" -U postgres -d "$1" -c "$2"; }
ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }
ident() { # a database name is used inside double quotes: refuse anything unusual
  [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "pg.sh: unusual database name '$1'" >&2; exit 2; }
}
exists() { [ "$(query postgres "SELECT 1 FROM pg_database WHERE datname = '$1'")" = 1 ]; }
terminate() { # end every other session on database $1
  query postgres "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                  WHERE datname = '$1' AND pid <> pg_backend_pid()" >/dev/null
}

initialise() {
  mkdir -p "$HOME_DIR"
  chmod 755 "$HOME_DIR"
  install -d -m 700 -o "$OS_USER" "$PGDATA"
  as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$HOME_DIR/initdb.log" 2>&1 || { cat "$HOME_DIR/initdb.log" >&2; exit 1; }
  as_pg tee "$PGDATA/agora_bench.conf" >/dev/null <<EOF
# Written by bench/pg.sh: a throwaway cluster for benchmarks only.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '/tmp'
max_connections = 200
shared_buffers = 1GB
effective_cache_size = 4GB
work_mem = 16MB
maintenance_work_mem = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 4GB
checkpoint_timeout = 30min
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
log_line_prefix = '%m [%p] %d '
EOF
  echo "include 'agora_bench.conf'" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
  echo "pg.sh: initialised $PGDATA"
}

start() {
  if ready; then
    echo "pg.sh: already running on 127.0.0.1:$PORT"
    return 0
  fi
  [ -f "$PGDATA/PG_VERSION" ] || initialise
  mkdir -p "$HOME_DIR"
  touch "$LOG" && chown "$OS_USER" "$LOG"
  as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 120 start >/dev/null
  echo "pg.sh: started on 127.0.0.1:$PORT (log $LOG)"
}

stop() {
  if [ ! -f "$PGDATA/postmaster.pid" ]; then
    echo "pg.sh: not running"
    return 0
  fi
  if as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 120 stop >/dev/null
    echo "pg.sh: stopped"
  else
    echo "pg.sh: not running"
  fi
}

createdb() {
  local name="${1:?usage: pg.sh createdb NAME [--recreate]}"
  ident "$name"
  if [ "${2:-}" = "--recreate" ]; then
    sql postgres "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)"
  elif [ -n "${2:-}" ]; then
    echo "pg.sh: unknown option $2" >&2
    exit 2
  fi
  if exists "$name"; then
    echo "pg.sh: database $name already exists"
  else
    sql postgres "CREATE DATABASE \"$name\""
    echo "pg.sh: created database $name"
  fi
  sql "$name" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
}

createdb_from() {
  local name="${1:?usage: pg.sh createdb-from NAME TEMPLATE}" template="${2:?usage: pg.sh createdb-from NAME TEMPLATE}"
  ident "$name"
  ident "$template"
  [ "$name" != "$template" ] || { echo "pg.sh: a database cannot be a copy of itself" >&2; exit 2; }
  exists "$template" || { echo "pg.sh: no database $template to copy" >&2; exit 1; }
  sql postgres "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)"
  # A template must have no other session while it is copied.
  terminate "$template"
  # FILE_COPY copies the files (after a checkpoint, cheap with fsync off) instead of
  # writing every page through the WAL: much faster for the 1M-post database.
  sql postgres "CREATE DATABASE \"$name\" TEMPLATE \"$template\" STRATEGY FILE_COPY"
  echo "pg.sh: created database $name as a copy of $template"
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  start) start ;;
  stop) stop ;;
  status) ready && echo "pg.sh: running on 127.0.0.1:$PORT" || { echo "pg.sh: not running"; exit 1; } ;;
  createdb) ready || start; createdb "$@" ;;
  createdb-from) ready || start; createdb_from "$@" ;;
  psql) db="${1:-postgres}"; [ $# -gt 0 ] && shift; exec "$BIN/psql" -X -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" "$@" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; [ "$command" = "-h" ] || [ "$command" = "--help" ]; exit $? ;;
esac
