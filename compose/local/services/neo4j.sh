#!/usr/bin/env bash
# Neo4j 5.26 Community, embedded in a tiny launcher (compose/local/neo4j), Bolt on 127.0.0.1 only.
# install: mvn copies org.neo4j:neo4j:$NEO4J_VERSION and its jars into $STACK_DIR/neo4j/libs
#          (cache ~/.m2), javac compiles the launcher into $STACK_DIR/neo4j/classes; done once,
#          redone only when the pom, the launcher source or NEO4J_VERSION change.
# up: runs local.albums.Neo4jLauncher with Neo4j home $STACK_DIR/neo4j (data/, logs/debug.log),
#     and waits for its "NEO4J READY" line (printed after RETURN 1 succeeded and the password of
#     user neo4j was set from NEO4J_PASSWORD) and for the Bolt port.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

: "${NEO4J_PASSWORD:=albums-neo4j}"
: "${NEO4J_PAGECACHE:=64m}"
export NEO4J_PASSWORD NEO4J_PAGECACHE NEO4J_BOLT_PORT

NAME=neo4j
HOME_DIR="$STACK_DIR/neo4j"
LIBS="$HOME_DIR/libs"
CLASSES="$HOME_DIR/classes"
MARKER="$HOME_DIR/.complete"
POM="$LOCAL_DIR/neo4j/pom.xml"
SRC="$LOCAL_DIR/neo4j/src/main/java/local/albums/Neo4jLauncher.java"
LOGF="$LOG_DIR/$NAME.log"
OFFSET_FILE="$RUN_DIR/$NAME.logoffset"   # where this start's output begins in $LOGF

# What the installed jars and classes were built from; the marker holds a copy of it.
install_key() { cat "$POM" "$SRC"; echo "neo4j.version=$NEO4J_VERSION"; }

neo4j_install() {
  if [ -f "$MARKER" ] && install_key | cmp -s - "$MARKER"; then return 0; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
  command -v mvn >/dev/null || apt_install maven
  log "neo4j: resolving Neo4j $NEO4J_VERSION jars with Maven and compiling the launcher (first run only)"
  rm -f "$MARKER"
  rm -rf "$LIBS" "$CLASSES"; mkdir -p "$LIBS" "$CLASSES"
  mvn -q -B -f "$POM" dependency:copy-dependencies -Dneo4j.version="$NEO4J_VERSION" \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$LOG_DIR/neo4j-install.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/neo4j-install.log" >&2; die "neo4j: mvn failed"; }
  javac --release 17 -nowarn -d "$CLASSES" -cp "$LIBS/*" "$SRC" >>"$LOG_DIR/neo4j-install.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/neo4j-install.log" >&2; die "neo4j: javac failed"; }
  install_key >"$MARKER"
}

# JVM flags: the heap from NEO4J_HEAP plus what Neo4j 5.26's neo4j.conf puts in
# server.jvm.additional (module opens for its off-heap/page-cache code and Netty).
read -r -a _heap <<<"$NEO4J_HEAP"
JAVA_ARGV=(java "${_heap[@]}" -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow
  -XX:+UnlockExperimentalVMOptions -XX:+TrustFinalNonStaticFields -XX:+DisableExplicitGC
  -XX:+ExitOnOutOfMemoryError -Djdk.nio.maxCachedBufferSize=1024
  -Dio.netty.tryReflectionSetAccessible=true -Djdk.tls.ephemeralDHKeySize=2048
  -Djdk.tls.rejectClientInitiatedRenegotiation=true
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --enable-native-access=ALL-UNNAMED
  -Dlog4j2.disable.jmx=true -Djava.awt.headless=true
  -cp "$CLASSES:$LIBS/*" local.albums.Neo4jLauncher "$HOME_DIR")

# ours_alive: the pid file names a live process running our launcher; not a crashed JVM that
# is still a zombie (not reaped yet), nor a recycled pid now used by something else.
ours_alive() {
  is_running $NAME || return 1
  local pid
  pid="$(cat "$(pidfile $NAME)")"
  [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep 'local\.albums\.Neo4jLauncher' >/dev/null
}

# wait_ready TIMEOUT_S : like lib.sh's wait_until, but notices a crash through ours_alive.
wait_ready() {
  local deadline=$((SECONDS + $1))
  until ready; do
    if ! ours_alive; then
      tail -n 40 "$LOGF" >&2 || true
      die "neo4j exited during start-up (log: $LOGF, Neo4j's own: $HOME_DIR/logs/debug.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$LOGF" >&2 || true
      die "neo4j did not answer within $1s (log: $LOGF, Neo4j's own: $HOME_DIR/logs/debug.log)"
    fi
    sleep 0.5
  done
}

# ready: the launcher of the current start printed its READY line and Bolt accepts connections.
ready() {
  port_open 127.0.0.1 "$NEO4J_BOLT_PORT" || return 1
  local off size
  off="$(cat "$OFFSET_FILE" 2>/dev/null || echo 0)"
  size="$(stat -c %s "$LOGF" 2>/dev/null || echo 0)"
  [ "$off" -le "$size" ] 2>/dev/null || off=0   # log truncated meanwhile
  # no grep -q: with pipefail, tail's SIGPIPE would make a found line count as a failure
  tail -c +"$((off + 1))" "$LOGF" 2>/dev/null | grep ' \[launcher\] NEO4J READY ' >/dev/null
}

neo4j_up() {
  if ours_alive && ready; then
    log "neo4j: already up (pid $(cat "$(pidfile $NAME)"))"; return 0
  fi
  if ours_alive; then
    # started but not ready yet (e.g. a concurrent `up`, or store recovery): wait for it
    wait_ready 300; return 0
  fi
  rm -f "$(pidfile $NAME)"   # stale after a crash; Neo4j's store lock dies with its process
  neo4j_install
  ensure_port_free neo4j 127.0.0.1 "$NEO4J_BOLT_PORT"
  mkdir -p "$HOME_DIR"
  stat -c %s "$LOGF" 2>/dev/null >"$OFFSET_FILE" || echo 0 >"$OFFSET_FILE"
  log "neo4j: starting on 127.0.0.1:$NEO4J_BOLT_PORT"
  start_bg $NAME "${JAVA_ARGV[@]}"
  wait_ready 300
  log "neo4j: up"
}

neo4j_status() {
  if ours_alive && port_open 127.0.0.1 "$NEO4J_BOLT_PORT"; then
    echo "neo4j: up (pid $(cat "$(pidfile $NAME)"), 127.0.0.1:$NEO4J_BOLT_PORT)"
  else
    echo "neo4j: down"; return 3
  fi
}

case "${1:-status}" in
  install) neo4j_install ;;
  up) neo4j_up ;;
  down) if ours_alive; then stop_pid $NAME 60; else rm -f "$(pidfile $NAME)"; fi ;;
  status) neo4j_status ;;
  *) die "usage: $0 install|up|down|status" ;;
esac
