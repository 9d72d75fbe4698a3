# Shared helpers for the local stack scripts (sourced, not run).
# Every server runs as a plain process bound to 127.0.0.1, with its files under $STACK_DIR
# (git-ignored), a log in $STACK_DIR/logs and a pid file in $STACK_DIR/run. Processes are
# stopped by pid file, never by name.
set -euo pipefail

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO_ROOT/.stack}"
case "$STACK_DIR" in /*) ;; *) STACK_DIR="$REPO_ROOT/$STACK_DIR" ;; esac
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
mkdir -p "$RUN_DIR" "$LOG_DIR"

# shellcheck source=compose/local/env.sh
source "$LOCAL_DIR/env.sh"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG... : install Debian packages when missing (root on these machines).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ ! -f "$STACK_DIR/.apt-updated" ]; then
    $sudo apt-get update -q >"$LOG_DIR/apt-update.log" 2>&1 || die "apt-get update failed (see $LOG_DIR/apt-update.log)"
    touch "$STACK_DIR/.apt-updated"
  fi
  # policy-rc.d keeps Debian's postinst from starting system-wide services we do not use.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" \
    >"$LOG_DIR/apt-install.log" 2>&1 || die "apt-get install ${missing[*]} failed (see $LOG_DIR/apt-install.log)"
}

pidfile() { echo "$RUN_DIR/$1.pid"; }

# is_running NAME : true when NAME's pid file names a live process.
is_running() {
  local f pid
  f="$(pidfile "$1")"
  [ -f "$f" ] || return 1
  pid="$(cat "$f" 2>/dev/null)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # a killed process can linger as a zombie until its parent reaps it: that is not running
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

# port_open HOST PORT : true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_bg NAME CMD... : start CMD detached (own session), log to $LOG_DIR/NAME.log, record pid.
start_bg() {
  local name="$1"; shift
  local logf="$LOG_DIR/$name.log"
  echo "---- $(date -u +%FT%TZ) start: $*" >>"$logf"
  setsid nohup "$@" >>"$logf" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# wait_until NAME TIMEOUT_S CMD... : poll CMD until it succeeds; fail if NAME dies or time runs out.
wait_until() {
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$name"; then
      tail -n 40 "$LOG_DIR/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOG_DIR/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$LOG_DIR/$name.log" >&2 || true
      die "$name did not answer within ${timeout}s (log: $LOG_DIR/$name.log)"
    fi
    sleep 0.5
  done
}

# stop_pid NAME [GRACE_S] [SIGNAL] : send SIGNAL (TERM) to the pid in NAME's pid file,
# SIGKILL after GRACE_S.
stop_pid() {
  local name="$1" grace="${2:-30}" sig="${3:-TERM}" f pid
  f="$(pidfile "$name")"
  if ! is_running "$name"; then rm -f "$f"; return 0; fi
  pid="$(cat "$f")"
  log "stopping $name (pid $pid)"
  kill -"$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + grace))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name did not stop in ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.3
  done
  rm -f "$f"
}

# ensure_port_free NAME HOST PORT : refuse to start on a port another process holds.
ensure_port_free() {
  if port_open "$2" "$3"; then
    die "$1: $2:$3 is already in use by a process that is not ours (set the port variable in compose/local/env.sh's list to move it)"
  fi
}
