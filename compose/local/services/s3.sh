#!/usr/bin/env bash
# S3-compatible object store: Versity S3 Gateway (versitygw), posix backend, one root account.
# install: `go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION` from the Go
#   module proxy into $STACK_DIR/bin (module/build caches stay in ~/go and ~/.cache, so a second
#   install only relinks). Skipped when `versitygw --version` already reports the pinned version.
# up: serves $STACK_DIR/s3/data (each top-level directory is a bucket) on 127.0.0.1:$S3_PORT with
#   S3_ACCESS_KEY/S3_SECRET_KEY as root credentials, then creates $S3_BUCKET through a signed
#   S3 request (curl --aws-sigv4) when it is missing.
# Object metadata (Content-Type, Content-Encoding, x-amz-meta-*, ETag) lives in user xattrs; on a
# filesystem without them the first `up` switches to a sidecar directory ($STACK_DIR/s3/meta)
# and remembers the choice in $STACK_DIR/s3/meta-mode (S3_META_MODE=xattr|sidecar forces one).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME=s3
HOME_DIR="$STACK_DIR/s3"
DATA="$HOME_DIR/data"
META="$HOME_DIR/meta"
MODE_FILE="$HOME_DIR/meta-mode"
BIN="$STACK_DIR/bin/versitygw"
PKG="github.com/versity/versitygw/cmd/versitygw"
: "${S3_META_MODE:=auto}"
URL="http://127.0.0.1:$S3_PORT"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

installed_version() { "$BIN" --version 2>/dev/null | awk '$1 == "Version" {print $3}'; }

s3_install() {
  if [ -x "$BIN" ] && [ "$(installed_version)" = "$VERSITYGW_VERSION" ]; then return 0; fi
  local go
  go="$(command -v go || true)"
  [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
  [ -n "$go" ] || die "s3: Go (>= 1.25) is needed to build versitygw: not on PATH nor in /usr/local/go/bin"
  log "s3: building versitygw $VERSITYGW_VERSION with $("$go" env GOVERSION) (first run only, ~1-2 min)"
  mkdir -p "$STACK_DIR/bin"
  # GOTOOLCHAIN=auto: an older local Go fetches the toolchain versitygw's go.mod asks for (a
  # module from the same proxy); with a new enough Go it changes nothing.
  (cd "$STACK_DIR" && GOBIN="$STACK_DIR/bin" GOTOOLCHAIN=auto GOWORK=off \
    "$go" install -ldflags "-X main.Version=$VERSITYGW_VERSION" "$PKG@$VERSITYGW_VERSION") \
    >"$LOG_DIR/s3-install.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/s3-install.log" >&2; die "s3: go install $PKG@$VERSITYGW_VERSION failed"; }
  [ "$(installed_version)" = "$VERSITYGW_VERSION" ] || die "s3: built versitygw does not report $VERSITYGW_VERSION"
}

# our_pid : print the pid from the pid file when it is a live versitygw (not a recycled pid).
our_pid() {
  is_running $NAME || return 1
  local pid
  pid="$(cat "$(pidfile $NAME)")"
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q versitygw || return 1
  echo "$pid"
}

# http_code [CURL_ARG...] : HTTP status of a request to the gateway ("000" when nothing answers).
# With --signed the request carries SigV4 headers for the root account.
http_code() {
  local sign=()
  if [ "${1:-}" = --signed ]; then
    shift
    sign=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY"
      -H "x-amz-content-sha256: $EMPTY_SHA256")
  fi
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${sign[@]}" "$@" || true
}

# answers : any HTTP status from the S3 port (an anonymous GET / gets 403 AccessDenied).
answers() { [ "$(http_code "$URL/")" != "000" ]; }

# start_gateway MODE : start versitygw with xattr or sidecar metadata; returns 0 once it answers
# HTTP, 1 if it exits during start-up (its start-up output is then in $START_OUTPUT), dies on
# timeout.
start_gateway() {
  local mode="$1" logf="$LOG_DIR/$NAME.log" offset args
  offset="$(stat -c %s "$logf" 2>/dev/null || echo 0)"
  # root credentials through versitygw's own variables (same as --access/--secret), so that
  # they show neither in `ps` nor in the start line of the log
  export ROOT_ACCESS_KEY_ID="$S3_ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$S3_SECRET_KEY"
  args=(--port "127.0.0.1:$S3_PORT" --region us-east-1 --quiet posix)
  if [ "$mode" = sidecar ]; then mkdir -p "$META"; args+=(--sidecar "$META"); fi
  log "s3: starting versitygw ($mode metadata) on 127.0.0.1:$S3_PORT"
  start_bg $NAME "$BIN" "${args[@]}" "$DATA"
  local deadline=$((SECONDS + 60))
  until answers; do
    if ! is_running $NAME; then
      START_OUTPUT="$(tail -c +"$((offset + 1))" "$logf" 2>/dev/null || true)"
      rm -f "$(pidfile $NAME)"
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$logf" >&2 || true
      die "s3 did not answer within 60s (log: $logf)"
    fi
    sleep 0.2
  done
}

ensure_bucket() {
  local code
  code="$(http_code --signed -I "$URL/$S3_BUCKET")"
  case "$code" in
    200) return 0 ;;
    404)
      log "s3: creating bucket $S3_BUCKET"
      code="$(http_code --signed -X PUT "$URL/$S3_BUCKET")"
      [ "$code" = 200 ] || die "s3: CreateBucket $S3_BUCKET answered HTTP $code (log: $LOG_DIR/$NAME.log)"
      code="$(http_code --signed -I "$URL/$S3_BUCKET")"
      [ "$code" = 200 ] || die "s3: HeadBucket $S3_BUCKET answered HTTP $code after creating it" ;;
    403) die "s3: HeadBucket $S3_BUCKET was refused (HTTP 403): do S3_ACCESS_KEY/S3_SECRET_KEY match the running server?" ;;
    *) die "s3: HeadBucket $S3_BUCKET answered HTTP $code" ;;
  esac
}

s3_up() {
  local pid
  if pid="$(our_pid)"; then
    if answers; then log "s3: already up (pid $pid)"; ensure_bucket; return 0; fi
    # started but not answering yet (e.g. a concurrent `up`): wait for it
    wait_until $NAME 60 answers; ensure_bucket; return 0
  fi
  rm -f "$(pidfile $NAME)"   # stale after a crash or kill -9
  s3_install
  command -v curl >/dev/null || apt_install curl
  ensure_port_free s3 127.0.0.1 "$S3_PORT"
  mkdir -p "$DATA"
  local mode="$S3_META_MODE"
  [ "$mode" = auto ] && mode="$(cat "$MODE_FILE" 2>/dev/null || echo auto)"
  case "$mode" in
    xattr|sidecar)
      start_gateway "$mode" || { printf '%s\n' "$START_OUTPUT" >&2; die "s3 exited during start-up (log: $LOG_DIR/$NAME.log)"; } ;;
    auto)
      if start_gateway xattr; then
        mode=xattr
      elif grep -q "xattr check failed" <<<"$START_OUTPUT"; then
        log "s3: no user xattrs on $(df --output=target "$DATA" | tail -n 1): metadata goes to $META"
        mode=sidecar
        start_gateway sidecar || { printf '%s\n' "$START_OUTPUT" >&2; die "s3 exited during start-up (log: $LOG_DIR/$NAME.log)"; }
      else
        printf '%s\n' "$START_OUTPUT" >&2; die "s3 exited during start-up (log: $LOG_DIR/$NAME.log)"
      fi
      echo "$mode" >"$MODE_FILE" ;;
    *) die "s3: S3_META_MODE must be auto, xattr or sidecar (got $mode)" ;;
  esac
  ensure_bucket
  log "s3: up"
}

s3_down() {
  # never signal a recycled pid: only a pid file naming a live versitygw is ours to stop
  if ! our_pid >/dev/null; then rm -f "$(pidfile $NAME)"; return 0; fi
  stop_pid $NAME 20
}

s3_status() {
  local pid
  if pid="$(our_pid)" && answers; then
    echo "s3: up (pid $pid, 127.0.0.1:$S3_PORT)"
  else
    echo "s3: down"; return 3
  fi
}

case "${1:-status}" in
  install) s3_install ;;
  up) s3_up ;;
  down) s3_down ;;
  status) s3_status ;;
  *) die "usage: $0 install|up|down|status" ;;
esac
