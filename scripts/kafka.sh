#!/usr/bin/env bash
# Starts and stops a single-node Apache Kafka broker (KRaft) on 127.0.0.1 for slaguard's
# tests and for local use. The broker jars come from Maven Central (scripts/kafka/pom.xml,
# pinned version) and are cached; the broker's data lives in a temporary folder.
#
#   scripts/kafka.sh start     # prints the bootstrap address, e.g. 127.0.0.1:19092
#   scripts/kafka.sh stop      # the data stays: start again to restart the same broker
#   scripts/kafka.sh reset     # stop and delete the data
#   scripts/kafka.sh status
#
# Environment: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), KAFKA_RUN_DIR
# (/tmp/slaguard-kafka), SLAGUARD_CACHE (~/.cache/slaguard).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
cache="${SLAGUARD_CACHE:-$HOME/.cache/slaguard}/kafka-$version"
run="${KAFKA_RUN_DIR:-/tmp/slaguard-kafka}"
port="${KAFKA_PORT:-19092}"
cport="${KAFKA_CONTROLLER_PORT:-19093}"

fetch() {
  if [ ! -f "$cache/.complete" ]; then
    mkdir -p "$cache/libs"
    echo "fetching Apache Kafka $version jars into $cache" >&2
    mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/libs" >&2
    touch "$cache/.complete"
  fi
}

running() {
  [ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null
}

start() {
  if running; then
    echo "127.0.0.1:$port"
    return
  fi
  fetch
  mkdir -p "$run/data" "$run/logs"
  rm -f "$run/logs/server.log"
  cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
PROPS
  local java=(java -Xms256m -Xmx768m -XX:+UseSerialGC -Dkafka.logs.dir="$run/logs"
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -cp "$cache/libs/*")
  if [ ! -f "$run/data/meta.properties" ]; then
    local id
    id="$("${java[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)"
    "${java[@]}" kafka.tools.StorageTool format -t "$id" -c "$run/server.properties" > "$run/logs/format.log" 2>&1
  fi
  nohup "${java[@]}" kafka.Kafka "$run/server.properties" > "$run/logs/stdout.log" 2>&1 &
  echo $! > "$run/pid"
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && grep -q "started" "$run/logs/server.log" 2>/dev/null; then
      echo "127.0.0.1:$port"
      return
    fi
    if ! running; then
      echo "the Kafka broker exited; see $run/logs" >&2
      tail -n 30 "$run/logs/stdout.log" "$run/logs/server.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  echo "the Kafka broker did not start within 60 s; see $run/logs" >&2
  exit 1
}

stop() {
  if running; then
    local pid
    pid="$(cat "$run/pid")"
    kill "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$run/pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$run" ;;
  status) if running; then echo "running on 127.0.0.1:$port"; else echo "stopped"; exit 1; fi ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|reset|status|fetch" >&2; exit 2 ;;
esac
