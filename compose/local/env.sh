# Ports, versions and credentials of the local stack (sourced). Each may be overridden from
# the environment; the defaults match streams/settings.py so `make run` and `make test` work
# with no variable set.
: "${KAFKA_PORT:=9092}"
: "${KAFKA_CONTROLLER_PORT:=9093}"
# a second listener with SASL/PLAIN authentication (tests of KAFKA_SECURITY_PROTOCOL); the
# pipeline itself uses the plaintext one on loopback
: "${KAFKA_SASL_PORT:=9094}"
: "${KAFKA_SASL_USER:=albums}"
: "${KAFKA_SASL_PASSWORD:=albums-kafka-secret}"
: "${KAFKA_HEAP:=-Xms256m -Xmx768m}"
# KAFKA_BROKERS=3: a three-node KRaft cluster (node i on KAFKA_PORT + (i-1)*KAFKA_NODE_PORT_STEP)
: "${KAFKA_BROKERS:=1}"
: "${KAFKA_NODE_PORT_STEP:=100}"
: "${POSTGRES_PORT:=5432}"
: "${POSTGRES_USER:=albums}"
: "${POSTGRES_PASSWORD:=albums}"
: "${POSTGRES_DB:=albums}"
: "${POSTGRES_TEST_DB:=albums_test}"
: "${NEO4J_BOLT_PORT:=7687}"
: "${NEO4J_VERSION:=5.26.30}"
: "${NEO4J_HEAP:=-Xms256m -Xmx768m}"
: "${S3_PORT:=9000}"
: "${S3_ACCESS_KEY:=albums}"
: "${S3_SECRET_KEY:=albums-secret-key}"
: "${S3_BUCKET:=albums}"
: "${VERSITYGW_VERSION:=v1.8.0}"
: "${PROMETHEUS_PORT:=9090}"
: "${WEB_PORT:=6066}"
: "${INGEST_WEB_PORT:=6067}"
export KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_BROKERS KAFKA_NODE_PORT_STEP KAFKA_SASL_PORT KAFKA_SASL_USER KAFKA_SASL_PASSWORD KAFKA_HEAP POSTGRES_PORT POSTGRES_USER POSTGRES_PASSWORD \
  POSTGRES_DB POSTGRES_TEST_DB NEO4J_BOLT_PORT NEO4J_VERSION NEO4J_HEAP S3_PORT S3_ACCESS_KEY \
  S3_SECRET_KEY S3_BUCKET VERSITYGW_VERSION PROMETHEUS_PORT WEB_PORT INGEST_WEB_PORT
