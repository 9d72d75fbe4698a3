#!/usr/bin/env bash
# Apache Kafka 3.9 (KRaft) from Maven Central jars: one node as broker+controller, or with
# KAFKA_BROKERS=3 a cluster of three such nodes (a controller quorum of three, replication
# factor 3 and min.insync.replicas 2 by default for every topic).
# install: mvn copies kafka_2.13 and a log4j binding into $STACK_DIR/kafka/libs (cache ~/.m2).
# up: formats each node's storage once (kafka.tools.StorageTool), then runs kafka.Kafka.
# Node i listens on KAFKA_PORT + (i-1)*KAFKA_NODE_PORT_STEP (controller and SASL listeners
# likewise); node 1 is the single broker's name, ports and data. KAFKA_NAME names a second
# stack of Kafka next to the first (its own pid files and data), e.g. a test cluster.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NAME="${KAFKA_NAME:-kafka}"
BROKERS="${KAFKA_BROKERS:-1}"
STEP="${KAFKA_NODE_PORT_STEP:-100}"
LIBS="$STACK_DIR/kafka/libs"
HOME_DIR="$STACK_DIR/$NAME"
[ "$BROKERS" -ge 1 ] && [ "$BROKERS" -le 9 ] || die "kafka: KAFKA_BROKERS must be 1..9, got $BROKERS"
# a cluster of another size is another cluster (its quorum is written into the storage)
[ "$BROKERS" -gt 1 ] && HOME_DIR="$STACK_DIR/$NAME/cluster-$BROKERS"

node_name() { if [ "$1" -eq 1 ]; then echo "$NAME"; else echo "$NAME-$1"; fi; }
node_port() { echo $((KAFKA_PORT + ($1 - 1) * STEP)); }
node_ctrl() { echo $((KAFKA_CONTROLLER_PORT + ($1 - 1) * STEP)); }
node_sasl() { echo $((KAFKA_SASL_PORT + ($1 - 1) * STEP)); }
node_data() { if [ "$BROKERS" -eq 1 ]; then echo "$HOME_DIR/data"; else echo "$HOME_DIR/node-$1"; fi; }
node_conf() {
  if [ "$BROKERS" -eq 1 ]; then echo "$HOME_DIR/server.properties"; else echo "$HOME_DIR/node-$1.properties"; fi
}

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

# replication of what the cluster creates: 3 copies with 2 in sync on three nodes
RF=$((BROKERS < 3 ? BROKERS : 3))
MIN_ISR=$((BROKERS < 3 ? 1 : 2))

voters() {
  local out="" i
  for ((i = 1; i <= BROKERS; i++)); do out+="${out:+,}$i@127.0.0.1:$(node_ctrl "$i")"; done
  echo "$out"
}

write_config() {
  local i="$1" port ctrl sasl data conf
  port="$(node_port "$i")"; ctrl="$(node_ctrl "$i")"; sasl="$(node_sasl "$i")"
  data="$(node_data "$i")"; conf="$(node_conf "$i")"
  mkdir -p "$HOME_DIR" "$data"
  cat >"$conf" <<CONF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${ctrl},SASL_PLAINTEXT://127.0.0.1:${sasl}
advertised.listeners=PLAINTEXT://127.0.0.1:${port},SASL_PLAINTEXT://127.0.0.1:${sasl}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="${KAFKA_SASL_USER}" password="${KAFKA_SASL_PASSWORD}" user_${KAFKA_SASL_USER}="${KAFKA_SASL_PASSWORD}";
log.dirs=${data}
num.partitions=8
default.replication.factor=${RF}
offsets.topic.replication.factor=${RF}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=${RF}
transaction.state.log.min.isr=${MIN_ISR}
transaction.state.log.num.partitions=8
min.insync.replicas=${MIN_ISR}
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
# JAVA_ARGV runs a broker; run_java runs Kafka's small tools with a small heap.
read -r -a _heap <<<"$KAFKA_HEAP"
java_argv() {
  JAVA_ARGV=(java "${_heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j.configuration="file:$HOME_DIR/log4j.properties" -cp "$LIBS/*")
}
run_java() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j.configuration="file:$HOME_DIR/log4j.properties" \
    -cp "$LIBS/*" "$@"
}

# A broker answers an API-versions request only once it is fully up.
answers() {
  local port="$1"
  port_open 127.0.0.1 "$port" || return 1
  run_java kafka.admin.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
}

all_up() {
  local i
  for ((i = 1; i <= BROKERS; i++)); do
    is_running "$(node_name "$i")" && port_open 127.0.0.1 "$(node_port "$i")" || return 1
  done
}

bootstrap() {
  local out="" i
  for ((i = 1; i <= BROKERS; i++)); do out+="${out:+,}127.0.0.1:$(node_port "$i")"; done
  echo "$out"
}

kafka_up() {
  if all_up; then
    log "kafka: already up ($BROKERS node(s): $(bootstrap))"; return 0
  fi
  kafka_install
  local i name cid
  mkdir -p "$HOME_DIR"
  cid="$(cat "$HOME_DIR/cluster.id" 2>/dev/null || true)"
  if [ -z "$cid" ]; then
    cid="$(run_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    echo "$cid" >"$HOME_DIR/cluster.id"
  fi
  java_argv
  for ((i = 1; i <= BROKERS; i++)); do
    name="$(node_name "$i")"
    if is_running "$name"; then continue; fi  # a node of the cluster still up: keep it
    rm -f "$(pidfile "$name")"
    ensure_port_free "$name" 127.0.0.1 "$(node_port "$i")"
    ensure_port_free "$name" 127.0.0.1 "$(node_sasl "$i")"
    write_config "$i"
    if [ ! -f "$(node_data "$i")/meta.properties" ]; then
      log "$name: formatting KRaft storage"
      run_java kafka.tools.StorageTool format -t "$cid" -c "$(node_conf "$i")" --ignore-formatted \
        >>"$LOG_DIR/$name.log" 2>&1 || die "$name: storage format failed (log: $LOG_DIR/$name.log)"
    fi
    log "$name: starting on 127.0.0.1:$(node_port "$i")"
    # the nodes of a quorum start together: none answers before a majority runs
    start_bg "$name" "${JAVA_ARGV[@]}" kafka.Kafka "$(node_conf "$i")"
  done
  for ((i = 1; i <= BROKERS; i++)); do
    name="$(node_name "$i")"
    wait_until "$name" 120 port_open 127.0.0.1 "$(node_port "$i")"
    wait_until "$name" 90 answers "$(node_port "$i")"
  done
  log "kafka: up ($BROKERS node(s): $(bootstrap))"
}

# down stops every node of this name, whatever the cluster size it was started with
kafka_down() {
  local f
  for f in "$RUN_DIR/$NAME.pid" "$RUN_DIR/$NAME"-[0-9].pid; do
    [ -e "$f" ] || continue
    stop_pid "$(basename "$f" .pid)" 60
  done
}

kafka_status() {
  if all_up; then
    if [ "$BROKERS" -eq 1 ]; then
      echo "kafka: up (pid $(cat "$(pidfile "$NAME")"), 127.0.0.1:$KAFKA_PORT)"
    else
      echo "kafka: up (pid $(cat "$(pidfile "$NAME")"), $BROKERS nodes: $(bootstrap))"
    fi
  else
    echo "kafka: down"; return 3
  fi
}

case "${1:-status}" in
  install) kafka_install ;;
  up) kafka_up ;;
  down) kafka_down ;;
  status) kafka_status ;;
  bootstrap) bootstrap ;;
  *) die "usage: $0 install|up|down|status|bootstrap" ;;
esac
