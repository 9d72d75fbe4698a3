#!/usr/bin/env bash
# PostgreSQL from Debian's packages with its own data dir under $STACK_DIR/postgres, on
# 127.0.0.1:$POSTGRES_PORT. Postgres refuses to run as root, so as root it runs as the
# unprivileged `postgres` user (setpriv execs, so the pid file holds the postmaster itself).
# up creates the app role and two databases: $POSTGRES_DB and $POSTGRES_TEST_DB.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME=postgres
HOME_DIR="$STACK_DIR/postgres"
DATA="$HOME_DIR/data"
SOCK="$HOME_DIR/run"

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && echo "$d"; done | sort -V | tail -n 1
}

postgres_install() {
  [ -n "$(pg_bin)" ] || apt_install postgresql
  [ -n "$(pg_bin)" ] || die "postgres: no server binary after install"
}

# as_pg CMD... : run CMD as the database owner.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

psql_su() { as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$POSTGRES_PORT" -U postgres "$@"; }

answers() { as_pg "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; }

init_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  log "postgres: initdb in $DATA"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    mkdir -p "$HOME_DIR"
    chown postgres:postgres "$HOME_DIR"
    # the clone may live under a private folder (mktemp -d is 0700): let the unprivileged
    # server user pass through (search bit only, nothing becomes listable)
    local d="$STACK_DIR"
    while [ "$d" != "/" ]; do
      if ! setpriv --reuid=postgres --regid=postgres --init-groups -- test -x "$d"; then
        log "postgres: chmod o+x $d so the postgres user can reach its data dir"
        chmod o+x "$d"
      fi
      d="$(dirname "$d")"
    done
  fi
  as_pg mkdir -p "$DATA" "$SOCK"
  as_pg "$(pg_bin)/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$LOG_DIR/postgres-initdb.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/postgres-initdb.log" >&2; die "postgres: initdb failed"; }
  as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<CONF
# album-pipeline local stack
listen_addresses = '127.0.0.1'
port = ${POSTGRES_PORT}
unix_socket_directories = '${SOCK}'
max_connections = 200
shared_buffers = 128MB
fsync = on
logging_collector = off
CONF
}

create_app_dbs() {
  psql_su -d postgres <<SQL
SELECT 'CREATE ROLE ${POSTGRES_USER} LOGIN PASSWORD ''${POSTGRES_PASSWORD}'''
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${POSTGRES_USER}') \gexec
ALTER ROLE ${POSTGRES_USER} LOGIN PASSWORD '${POSTGRES_PASSWORD}' CREATEDB;
SELECT 'CREATE DATABASE ${POSTGRES_DB} OWNER ${POSTGRES_USER}'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${POSTGRES_DB}') \gexec
SELECT 'CREATE DATABASE ${POSTGRES_TEST_DB} OWNER ${POSTGRES_USER}'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${POSTGRES_TEST_DB}') \gexec
SQL
}

postgres_up() {
  if is_running $NAME && answers; then
    log "postgres: already up (pid $(cat "$(pidfile $NAME)"))"; return 0
  fi
  if is_running $NAME; then wait_until $NAME 60 answers; return 0; fi
  rm -f "$(pidfile $NAME)"
  postgres_install
  ensure_port_free postgres 127.0.0.1 "$POSTGRES_PORT"
  init_cluster
  # a postmaster.pid left by a SIGKILLed server names a dead pid; postgres checks that itself
  log "postgres: starting on 127.0.0.1:$POSTGRES_PORT"
  if [ "$(id -u)" -eq 0 ]; then
    start_bg $NAME setpriv --reuid=postgres --regid=postgres --init-groups -- "$(pg_bin)/postgres" -D "$DATA"
  else
    start_bg $NAME "$(pg_bin)/postgres" -D "$DATA"
  fi
  wait_until $NAME 60 answers
  create_app_dbs
  log "postgres: up"
}

postgres_status() {
  if is_running $NAME && answers; then
    echo "postgres: up (pid $(cat "$(pidfile $NAME)"), 127.0.0.1:$POSTGRES_PORT, databases $POSTGRES_DB, $POSTGRES_TEST_DB)"
  else
    echo "postgres: down"; return 3
  fi
}

case "${1:-status}" in
  install) postgres_install ;;
  up) postgres_up ;;
  down) stop_pid $NAME 60 INT ;;   # SIGINT = fast shutdown (SIGTERM waits for clients)
  status) postgres_status ;;
  *) die "usage: $0 install|up|down|status" ;;
esac
