#!/usr/bin/env bash
# The local stack of real servers as plain processes on 127.0.0.1 (no Docker needed).
#   compose/local/stack.sh up|down|status|install [SERVICE...]
# Services: kafka postgres neo4j s3 prometheus (default: all). `up` is idempotent and recovers
# after a crash; `down` stops every process by its pid file; `status` exits 0 only when every
# named service is up. Qdrant runs embedded in the worker (qdrant-client local mode).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL_SERVICES=(kafka postgres neo4j s3 prometheus)

cmd="${1:-status}"; shift || true
services=("$@")
[ ${#services[@]} -eq 0 ] && services=("${ALL_SERVICES[@]}")
for s in "${services[@]}"; do
  [ -f "$here/services/$s.sh" ] || { echo "unknown service: $s (known: ${ALL_SERVICES[*]})" >&2; exit 2; }
done

case "$cmd" in
  up|install)
    for s in "${services[@]}"; do
      t0=$SECONDS
      bash "$here/services/$s.sh" "$cmd"
      echo "[stack] $s $cmd done in $((SECONDS - t0))s" >&2
    done ;;
  down)
    # reverse order: the scraper and clients before the servers they watch
    for ((i=${#services[@]}-1; i>=0; i--)); do bash "$here/services/${services[i]}.sh" down; done ;;
  status)
    rc=0
    for s in "${services[@]}"; do bash "$here/services/$s.sh" status || rc=3; done
    exit $rc ;;
  *) echo "usage: $0 up|down|status|install [SERVICE...]" >&2; exit 2 ;;
esac
