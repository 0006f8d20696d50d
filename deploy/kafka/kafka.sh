#!/usr/bin/env bash
# Local Apache Kafka (KRaft) without Docker: one node, or a cluster of three on this machine.
#
#   deploy/kafka/kafka.sh fetch      resolve the pinned jars from Maven Central into the cache
#   deploy/kafka/kafka.sh up         fetch if needed, format fresh log dirs, start every node, wait until ready
#   deploy/kafka/kafka.sh down       stop every node started by `up` (by their pid files)
#   deploy/kafka/kafka.sh status     exit 0 when every node started by `up` is running
#   deploy/kafka/kafka.sh bootstrap  print the bootstrap servers (host:port,...)
#   deploy/kafka/kafka.sh start N    start node N again on its data (N = 1..nodes) and wait until it is ready
#   deploy/kafka/kafka.sh stop N     stop node N (SIGTERM, a clean shutdown)
#   deploy/kafka/kafka.sh kill N     kill node N (SIGKILL)
#   deploy/kafka/kafka.sh pause N    freeze node N (SIGSTOP); `resume N` (SIGCONT) thaws it
#   deploy/kafka/kafka.sh pid N      print node N's process id
#
# Every node is a combined broker and controller. A cluster of three is three JVMs of the same jars,
# node N on client port PORT+2(N-1) and controller port PORT+2(N-1)+1, in HOME/node-N; its topics
# default to replication factor 3 with min.insync.replicas=2 (the internal topics too), and the
# controllers form a quorum of three. One node keeps replication factor 1.
#
# Settings (environment):
#   INCIDENTFLOW_KAFKA_PORT   first client port on 127.0.0.1 (default 9092; the controller uses port+1)
#   INCIDENTFLOW_KAFKA_NODES  1 (default) or 3
#   INCIDENTFLOW_KAFKA_HOME   run directory: data, logs, pid (default .kafka in the repository)
#   INCIDENTFLOW_KAFKA_CACHE  jar cache (default ~/.cache/incidentflow/kafka-<version>)
#   INCIDENTFLOW_KAFKA_HEAP   JVM heap of each node (default 768m for one node, 512m each for three)
#   INCIDENTFLOW_KAFKA_JAVA_OPTS  more JVM options, after ours
#   INCIDENTFLOW_KAFKA_KEEP=1 keep the data of an earlier run instead of formatting afresh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
port=${INCIDENTFLOW_KAFKA_PORT:-9092}
nodes=${INCIDENTFLOW_KAFKA_NODES:-1}
home=${INCIDENTFLOW_KAFKA_HOME:-$repo/.kafka}
cache=${INCIDENTFLOW_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/incidentflow/kafka-$version}
case "$nodes" in
  1) replicas=1; min_isr=1; heap=${INCIDENTFLOW_KAFKA_HEAP:-768m} ;;
  3) replicas=3; min_isr=2; heap=${INCIDENTFLOW_KAFKA_HEAP:-512m} ;;
  *) echo "kafka: INCIDENTFLOW_KAFKA_NODES is 1 or 3, not $nodes" >&2; exit 2 ;;
esac

log() { echo "kafka: $*" >&2; }

client_port() { echo $((port + 2 * ($1 - 1))); }
controller_port() { echo $((port + 2 * ($1 - 1) + 1)); }
# One node keeps the layout it always had (HOME/data, HOME/logs, HOME/kafka.pid).
node_home() { if [ "$nodes" = 1 ]; then echo "$home"; else echo "$home/node-$1"; fi; }
pidfile() { echo "$(node_home "$1")/kafka.pid"; }
all_nodes() { seq 1 "$nodes"; }

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

running() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$(client_port "$1")") 2>/dev/null; }

ready() { answers "$1" && grep -q "Kafka Server started" "$(node_home "$1")/logs/server.log" 2>/dev/null; }

voters() {
  local i out=""
  for i in $(all_nodes); do out="$out${out:+,}$i@127.0.0.1:$(controller_port "$i")"; done
  echo "$out"
}

bootstrap() {
  local i out=""
  for i in $(all_nodes); do out="$out${out:+,}127.0.0.1:$(client_port "$i")"; done
  echo "$out"
}

java_opts() {
  local dir; dir=$(node_home "$1")
  # Extra JVM options, after ours so that they win (the soak pre-touches the whole heap); one that picks
  # a garbage collector replaces G1 (the JVM refuses two).
  local extra
  read -r -a extra <<<"${INCIDENTFLOW_KAFKA_JAVA_OPTS:-}"
  local gc=(-XX:+UseG1GC)
  if [[ " ${extra[*]} " =~ \ -XX:\+Use[A-Za-z]+GC\  ]]; then gc=(); fi
  opts=(-Xms256m "-Xmx$heap" "${gc[@]}" -Dkafka.logs.dir="$dir/logs"
    -Dlog4j2.configurationFile="$here/log4j2.properties" -Djava.awt.headless=true "${extra[@]}")
}

write_properties() {
  local i=$1 dir; dir=$(node_home "$1")
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(client_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$i")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$replicas
min.insync.replicas=$min_isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
log.retention.check.interval.ms=60000
PROPS
}

launch() {
  local i=$1 dir; dir=$(node_home "$1")
  local opts; java_opts "$i"
  nohup java -cp "$cache/*" "${opts[@]}" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$i")"
}

# Waits until every given node is ready (each started node has to be: a cluster's controllers elect a
# leader only once a majority of them runs, so the nodes are launched together and waited for together).
await() {
  local i waiting
  for _ in $(seq 1 480); do
    waiting=0
    for i in "$@"; do
      if ! running "$i"; then
        log "node $i exited during start; last lines of its log:"
        tail -n 30 "$(node_home "$i")/logs/stdout.log" "$(node_home "$i")/logs/server.log" >&2 2>/dev/null || true
        rm -f "$(pidfile "$i")"; return 1
      fi
      ready "$i" || waiting=1
    done
    if [ "$waiting" = 0 ]; then return 0; fi
    sleep 0.25
  done
  log "not ready in 120 s; see $home"; return 1
}

up() {
  fetch
  local i
  for i in $(all_nodes); do
    if running "$i"; then log "already running (node $i, pid $(cat "$(pidfile "$i")"))"; return 0; fi
    if answers "$i"; then log "port $(client_port "$i") is taken by another process"; exit 1; fi
  done
  mkdir -p "$home"
  local cluster_id="" opts
  for i in $(all_nodes); do
    local dir; dir=$(node_home "$i")
    if [ "${INCIDENTFLOW_KAFKA_KEEP:-0}" != 1 ]; then rm -rf "$dir/data" "$dir/logs"; fi
    mkdir -p "$dir/data" "$dir/logs"
    write_properties "$i"
    if [ ! -f "$dir/data/meta.properties" ]; then
      java_opts "$i"
      [ -n "$cluster_id" ] || cluster_id=$(java -cp "$cache/*" "${opts[@]}" kafka.tools.StorageTool random-uuid 2>&1 | tail -n 1)
      [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] || { log "the JVM did not give a cluster id: $cluster_id"; exit 1; }
      java -cp "$cache/*" "${opts[@]}" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 \
        || { log "formatting node $i's log dir failed:"; cat "$dir/logs/format.log" >&2; exit 1; }
    fi
  done
  for i in $(all_nodes); do launch "$i"; done
  # shellcheck disable=SC2046
  if ! await $(all_nodes); then down; exit 1; fi
  log "ready on $(bootstrap) ($nodes node(s), logs in $home)"
}

stop_node() {
  local i=$1 signal=${2:-TERM}
  if ! running "$i"; then rm -f "$(pidfile "$i")"; log "node $i is not running"; return 0; fi
  local pid; pid=$(cat "$(pidfile "$i")")
  kill -CONT "$pid" 2>/dev/null || true  # a paused node cannot stop
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "node $i did not stop in 30 s; killing it"; kill -9 "$pid" || true; fi
  rm -f "$(pidfile "$i")"; log "node $i stopped ($signal)"
}

down() {
  local i pids=()
  # Stop every node at once: a controller quorum that loses its majority one node at a time would
  # keep the last ones waiting for it.
  for i in $(all_nodes); do stop_node "$i" & pids+=($!); done
  wait "${pids[@]}"
}

node() {
  local i=${2:-}
  if ! [[ "$i" =~ ^[0-9]+$ ]] || [ "$i" -lt 1 ] || [ "$i" -gt "$nodes" ]; then
    log "which node? 1..$nodes"; exit 2
  fi
  case "$1" in
    start)
      if running "$i"; then log "node $i is already running"; return 0; fi
      write_properties "$i"; launch "$i"; await "$i" || exit 1; log "node $i ready on 127.0.0.1:$(client_port "$i")" ;;
    stop) stop_node "$i" TERM ;;
    kill) stop_node "$i" KILL ;;
    pause) running "$i" && kill -STOP "$(cat "$(pidfile "$i")")" ;;
    resume) running "$i" && kill -CONT "$(cat "$(pidfile "$i")")" ;;
    pid) running "$i" && cat "$(pidfile "$i")" ;;
  esac
}

status() {
  local i
  for i in $(all_nodes); do running "$i" || return 1; done
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) status ;;
  bootstrap) bootstrap ;;
  start | stop | kill | pause | resume | pid) node "$@" ;;
  *) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
