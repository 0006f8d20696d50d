#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) without Docker.
#
#   deploy/kafka/kafka.sh fetch    resolve the pinned jars from Maven Central into the cache
#   deploy/kafka/kafka.sh up       fetch if needed, format a fresh log dir, start, wait until ready
#   deploy/kafka/kafka.sh down     stop the broker started by `up` (by its pid file)
#   deploy/kafka/kafka.sh status   exit 0 when the broker started by `up` is running
#
# Settings (environment):
#   INCIDENTFLOW_KAFKA_PORT   client port on 127.0.0.1 (default 9092; the controller uses port+1)
#   INCIDENTFLOW_KAFKA_HOME   run directory: data, logs, pid (default .kafka in the repository)
#   INCIDENTFLOW_KAFKA_CACHE  jar cache (default ~/.cache/incidentflow/kafka-<version>)
#   INCIDENTFLOW_KAFKA_KEEP=1 keep the data of an earlier run instead of formatting afresh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
port=${INCIDENTFLOW_KAFKA_PORT:-9092}
controller_port=$((port + 1))
home=${INCIDENTFLOW_KAFKA_HOME:-$repo/.kafka}
cache=${INCIDENTFLOW_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/incidentflow/kafka-$version}
pidfile=$home/kafka.pid

log() { echo "kafka: $*" >&2; }

fetch() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  command -v java >/dev/null || { log "java is not installed (Java 17+ is needed to run Kafka)"; exit 1; }
  command -v mvn >/dev/null || { log "mvn is not installed (Maven fetches the Kafka jars)"; exit 1; }
  log "fetching Apache Kafka $version from Maven Central into $cache"
  rm -rf "$cache" && mkdir -p "$cache"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$cache" -DincludeScope=runtime
  touch "$cache/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

up() {
  fetch
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return 0; fi
  if answers; then log "port $port is taken by another process"; exit 1; fi
  mkdir -p "$home"
  if [ "${INCIDENTFLOW_KAFKA_KEEP:-0}" != 1 ]; then rm -rf "$home/data" "$home/logs"; fi
  mkdir -p "$home/data" "$home/logs"
  cat >"$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$home/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
log.retention.check.interval.ms=60000
PROPS
  local cp="$cache/*"
  local java_opts=(-Xms256m -Xmx${INCIDENTFLOW_KAFKA_HEAP:-768m} -XX:+UseG1GC
    -Dkafka.logs.dir="$home/logs" -Dlog4j2.configurationFile="$here/log4j2.properties"
    -Djava.awt.headless=true)
  # Extra JVM options, after ours so that they win (the soak pre-touches the whole heap).
  read -r -a extra <<<"${INCIDENTFLOW_KAFKA_JAVA_OPTS:-}"
  java_opts+=("${extra[@]}")
  if [ ! -f "$home/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" "${java_opts[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)
    java -cp "$cp" "${java_opts[@]}" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$home/server.properties" >"$home/logs/format.log" 2>&1 \
      || { log "formatting the log dir failed:"; cat "$home/logs/format.log" >&2; exit 1; }
  fi
  nohup java -cp "$cp" "${java_opts[@]}" kafka.Kafka "$home/server.properties" \
    >"$home/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 240); do
    if ! running; then
      log "broker exited during start; last lines of its log:"
      tail -n 30 "$home/logs/stdout.log" "$home/logs/server.log" >&2 2>/dev/null || true
      rm -f "$pidfile"; exit 1
    fi
    if answers && grep -q "Kafka Server started" "$home/logs/server.log" 2>/dev/null; then
      log "ready on 127.0.0.1:$port (pid $(cat "$pidfile"), logs in $home/logs)"
      return 0
    fi
    sleep 0.25
  done
  log "broker did not become ready in 60 s; see $home/logs"; down; exit 1
}

down() {
  if ! running; then rm -f "$pidfile"; log "not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "broker did not stop in 30 s; killing it"; kill -9 "$pid" || true; fi
  rm -f "$pidfile"; log "stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) running ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
