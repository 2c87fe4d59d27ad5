#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL server for the Postgres test suites and benchmarks.
#
# Usage:
#     eval "$(bash scripts/postgres.sh)"        # exports PIKKU_TEST_POSTGRES_DSN
#     bash scripts/postgres.sh stop             # stops the server (data dir is kept)
#     bash scripts/postgres.sh destroy          # stops it and removes the data dir
#
# stdout carries ONLY the `export PIKKU_TEST_POSTGRES_DSN=...` line (so `eval` works); progress
# goes to stderr. Idempotent: a second call reuses the running server and prints the same DSN.
#
# On a fresh Debian machine (as root) it installs PostgreSQL from Debian's packages when
# `initdb`/`pg_ctl` are missing. initdb refuses to run as root, so the server runs as the
# `postgres` user (created if missing). The server listens on 127.0.0.1 only, on a free port,
# with its unix socket in the data dir's parent under /tmp, trust authentication, and
# durability switched off (fsync=off): it is for tests, never for data you want to keep.
#
# Environment:
#     PIKKU_PG_DIR   base directory (default /tmp/pikku-postgres); data in $PIKKU_PG_DIR/data
#     PIKKU_PG_DB    database name (default pikku_test)
#     PIKKU_PG_PORT  port (default: a free port chosen on first start, then remembered)
#     PIKKU_PG_DURABLE=1  keep fsync, synchronous_commit and full_page_writes on (the server
#                    defaults), e.g. for benchmarks/floor.py's commit floor on a second server:
#                    PIKKU_PG_DIR=/tmp/pikku-pg-fsync PIKKU_PG_DURABLE=1 bash scripts/postgres.sh
#                    (read at start; a running server keeps the settings it was started with)
set -euo pipefail

BASE="${PIKKU_PG_DIR:-/tmp/pikku-postgres}"
DB="${PIKKU_PG_DB:-pikku_test}"
DATA="$BASE/data"
SOCK="$BASE/sock"
LOG="$BASE/server.log"
PORT_FILE="$BASE/port"
ACTION="${1:-start}"

say() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  local d
  # Debian keeps the server binaries out of PATH, one directory per major version: newest wins.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  return 1
}

BIN="$(find_bindir || true)"
if [ -z "$BIN" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "PostgreSQL is not installed and this is not root: install the 'postgresql' package"
    exit 1
  fi
  say "installing PostgreSQL from Debian's packages..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN="$(find_bindir || true)"
  if [ -z "$BIN" ]; then
    say "apt-get installed postgresql but no initdb/pg_ctl was found under /usr/lib/postgresql"
    exit 1
  fi
fi

# Run server commands as an unprivileged user when we are root (initdb refuses root).
if [ "$(id -u)" -eq 0 ]; then
  RUN_USER=postgres
  if ! id "$RUN_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$RUN_USER"
  fi
  as_pg() { runuser -u "$RUN_USER" -- "$@"; }
else
  RUN_USER="$(id -un)"
  as_pg() { "$@"; }
fi

# Running = pg_ctl sees a live postmaster AND it accepts connections on the remembered port
# (a killed server's pid can linger as a zombie for a moment, and pg_ctl would believe it).
is_running() {
  [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 \
    && [ -f "$PORT_FILE" ] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$(cat "$PORT_FILE")" -t 5
}

case "$ACTION" in
  stop)
    if is_running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2; fi
    exit 0
    ;;
  destroy)
    if is_running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >&2; fi
    rm -rf "$BASE"
    exit 0
    ;;
  start) ;;
  *)
    say "unknown action '$ACTION' (use start, stop or destroy)"
    exit 2
    ;;
esac

mkdir -p "$BASE" "$SOCK"
chown "$RUN_USER" "$BASE" "$SOCK" 2>/dev/null || true
chmod 0755 "$BASE"

if [ ! -f "$DATA/PG_VERSION" ]; then
  say "initdb $DATA (binaries in $BIN)"
  rm -rf "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null 2>&1 \
    || as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >&2
fi

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

if is_running; then
  PORT="$(cat "$PORT_FILE")"
else
  PORT="${PIKKU_PG_PORT:-}"
  if [ -z "$PORT" ] && [ -f "$PORT_FILE" ]; then
    PORT="$(cat "$PORT_FILE")"
    # The remembered port may have been taken by something else since.
    # (SO_REUSEADDR like the server itself: a port in TIME_WAIT after a stop is free to it)
    if ! python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$PORT" 2>/dev/null; then
      PORT=""
    fi
  fi
  [ -n "$PORT" ] || PORT="$(free_port)"
  echo "$PORT" >"$PORT_FILE"
  rm -f "$DATA/postmaster.pid" 2>/dev/null || true  # stale after a crash/reboot
  say "starting PostgreSQL on 127.0.0.1:$PORT (log: $LOG)"
  touch "$LOG" && chown "$RUN_USER" "$LOG" 2>/dev/null || true
  FAST="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${PIKKU_PG_DURABLE:-0}" = 1 ] && FAST=""
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c max_connections=300 $FAST" >&2
fi

if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" >&2
  say "created database $DB"
fi

echo "export PIKKU_TEST_POSTGRES_DSN='postgresql://postgres@127.0.0.1:$PORT/$DB'"
