#!/usr/bin/env bash
# Apache Kafka 3.9 (KRaft, one node as broker+controller) from Maven Central jars.
# install: mvn copies kafka_2.13 and a log4j binding into $STACK_DIR/kafka/libs (cache ~/.m2).
# up: formats storage once (kafka.tools.StorageTool), then runs kafka.Kafka server.properties.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME=kafka
HOME_DIR="$STACK_DIR/kafka"
LIBS="$HOME_DIR/libs"
DATA="$HOME_DIR/data"
CONF="$HOME_DIR/server.properties"

kafka_install() {
  if [ -f "$LIBS/.complete" ] && cmp -s "$LOCAL_DIR/kafka/pom.xml" "$LIBS/.complete"; then return 0; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "kafka: resolving jars with Maven (first run only)"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  mvn -q -B -f "$LOCAL_DIR/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime >"$LOG_DIR/kafka-install.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/kafka-install.log" >&2; die "kafka: mvn failed"; }
  cp "$LOCAL_DIR/kafka/pom.xml" "$LIBS/.complete"
}

write_config() {
  mkdir -p "$HOME_DIR" "$DATA"
  cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT},SASL_PLAINTEXT://127.0.0.1:${KAFKA_SASL_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},SASL_PLAINTEXT://127.0.0.1:${KAFKA_SASL_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="${KAFKA_SASL_USER}" password="${KAFKA_SASL_PASSWORD}" user_${KAFKA_SASL_USER}="${KAFKA_SASL_PASSWORD}";
log.dirs=${DATA}
num.partitions=8
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=67108864
log.cleaner.dedupe.buffer.size=16777216
num.network.threads=2
num.io.threads=4
CONF
  cat >"$HOME_DIR/log4j.properties" <<'CONF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
CONF
}

# run_java [JVM_OPT...] CLASS ARGS... : the JVM with Kafka's jars on the class path.
# JAVA_ARGV runs the broker; run_java runs Kafka's small tools with a small heap.
read -r -a _heap <<<"$KAFKA_HEAP"
JAVA_ARGV=(java "${_heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j.configuration="file:$HOME_DIR/log4j.properties" -cp "$LIBS/*")
run_java() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j.configuration="file:$HOME_DIR/log4j.properties" \
    -cp "$LIBS/*" "$@"
}

# The broker answers an API-versions request only once it is fully up; the pure-bash check
# below asks the metadata of the cluster through kafka's own admin tool class.
answers() {
  port_open 127.0.0.1 "$KAFKA_PORT" || return 1
  run_java kafka.admin.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1
}

kafka_up() {
  if is_running $NAME && port_open 127.0.0.1 "$KAFKA_PORT"; then
    log "kafka: already up (pid $(cat "$(pidfile $NAME)"))"; return 0
  fi
  if is_running $NAME; then
    # started but not answering yet (e.g. a concurrent `up`): wait for it
    wait_until $NAME 120 port_open 127.0.0.1 "$KAFKA_PORT"; return 0
  fi
  rm -f "$(pidfile $NAME)"
  kafka_install
  ensure_port_free kafka 127.0.0.1 "$KAFKA_PORT"
  ensure_port_free kafka 127.0.0.1 "$KAFKA_SASL_PORT"
  write_config
  if [ ! -f "$DATA/meta.properties" ]; then
    log "kafka: formatting KRaft storage"
    local cid
    cid="$(cat "$HOME_DIR/cluster.id" 2>/dev/null || true)"
    if [ -z "$cid" ]; then
      cid="$(run_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
      echo "$cid" >"$HOME_DIR/cluster.id"
    fi
    run_java kafka.tools.StorageTool format -t "$cid" -c "$CONF" --ignore-formatted \
      >>"$LOG_DIR/kafka.log" 2>&1 || die "kafka: storage format failed (log: $LOG_DIR/kafka.log)"
  fi
  log "kafka: starting on 127.0.0.1:$KAFKA_PORT"
  start_bg $NAME "${JAVA_ARGV[@]}" kafka.Kafka "$CONF"
  wait_until $NAME 120 port_open 127.0.0.1 "$KAFKA_PORT"
  wait_until $NAME 60 answers
  log "kafka: up"
}

kafka_status() {
  if is_running $NAME && port_open 127.0.0.1 "$KAFKA_PORT"; then
    echo "kafka: up (pid $(cat "$(pidfile $NAME)"), 127.0.0.1:$KAFKA_PORT)"
  else
    echo "kafka: down"; return 3
  fi
}

case "${1:-status}" in
  install) kafka_install ;;
  up) kafka_up ;;
  down) stop_pid $NAME 60 ;;
  status) kafka_status ;;
  *) die "usage: $0 install|up|down|status" ;;
esac
