#!/usr/bin/env bash
# The Faust worker as a background process of the local stack: up|down|status|info.
# Runs `python -m streams worker` from the repo's venv with its log in $STACK_DIR/logs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=worker
PY="${VENV:-$REPO_ROOT/.venv}/bin/python"

answers() { curl -fsS "http://127.0.0.1:${WEB_PORT}/health" >/dev/null; }

worker_up() {
  if is_running $NAME; then
    log "worker: already running (pid $(cat "$(pidfile $NAME)"))"
    wait_until $NAME 180 answers
    return 0
  fi
  rm -f "$(pidfile $NAME)"
  [ -x "$PY" ] || die "worker: no venv at $PY (run make venv)"
  ensure_port_free worker 127.0.0.1 "$WEB_PORT"
  log "worker: starting (web on 127.0.0.1:$WEB_PORT)"
  cd "$REPO_ROOT"
  start_bg $NAME "$PY" -m streams worker --loglevel "${LOG_LEVEL:-info}"
  wait_until $NAME 180 answers
  log "worker: up"
}

worker_info() {
  local py="$PY"
  sleep 3  # let the sample albums flow through
  echo
  echo "  album.assembled: $("$py" -m streams describe --topic album.assembled 2>/dev/null | tail -n 1)"
  echo "  albums.dlq:      $("$py" -m streams describe --topic albums.dlq 2>/dev/null | tail -n 1)"
  # every path but /health and /metrics needs the bearer token (WEB_AUTH_TOKEN, or the one
  # the worker keeps in DATA_DIR/web-token)
  local token auth
  token="$(cd "$REPO_ROOT" && "$py" -c 'from streams.webauth import web_token; print(web_token())')"
  auth="-H 'Authorization: Bearer ${token}'"
  cat <<INFO

  The album pipeline is running.
    health           curl http://127.0.0.1:${WEB_PORT}/health
    detailed health  curl ${auth} http://127.0.0.1:${WEB_PORT}/health/detailed
    metrics          curl http://127.0.0.1:${WEB_PORT}/metrics
    table views      curl ${auth} http://127.0.0.1:${WEB_PORT}/table/album_state/1/
    album 1 in S3, Postgres, Qdrant and Neo4j
                     curl ${auth} 'http://127.0.0.1:${WEB_PORT}/stores/1/?tenant_id=acme'
    sink status      curl -s ${auth} http://127.0.0.1:${WEB_PORT}/health/detailed | python3 -m json.tool
    (the web token:  ${token}; WEB_AUTH_TOKEN sets your own)
    assembled albums .venv/bin/python -m streams tail --topic album.assembled --n 3
    dead letters     .venv/bin/python -m streams tail --topic albums.dlq --n 3
    replay the DLQ   .venv/bin/python -m streams dlq-replay --dry-run
    more albums      .venv/bin/python -m streams generate-albums --albums 100 --first-album-id 1000
    Qdrant filtering .venv/bin/python docs/examples/qdrant_album_filtering_example.py
    Prometheus       http://127.0.0.1:${PROMETHEUS_PORT}   (alerts: /alerts, rules: compose/prometheus/alerts.yml)
    run report       .venv/bin/python -m streams report --albums 2000   (PNGs + summary.md in .stack/report)
    worker log       make worker-logs      (file: ${LOG_DIR}/worker.log)
    servers          make stack-status
    stop everything  make stop
  Albums missing a vision event are emitted 'partial' after ALBUM_DEADLINE_SECONDS (600 s).

INFO
}

case "${1:-status}" in
  up) worker_up ;;
  down) stop_pid $NAME 60 ;;
  status) if is_running $NAME && answers; then echo "worker: up (pid $(cat "$(pidfile $NAME)"))"; else echo "worker: down"; exit 3; fi ;;
  info) worker_info ;;
  *) die "usage: $0 up|down|status|info" ;;
esac
