#!/usr/bin/env bash
# `make demo`: a local Kafka, a gateway and a worker, fed with sample Elven webhooks; prints the
# incidents and MTTR as they come back, then keeps everything running until Ctrl-C.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bin=$repo/.venv/bin
export INCIDENTFLOW_KAFKA_PORT=${INCIDENTFLOW_KAFKA_PORT:-9092}
export INCIDENTFLOW_KAFKA_BOOTSTRAP=${INCIDENTFLOW_KAFKA_BOOTSTRAP:-127.0.0.1:$INCIDENTFLOW_KAFKA_PORT}
export INCIDENTFLOW_INTEGRATIONS_FILE=${INCIDENTFLOW_INTEGRATIONS_FILE:-$repo/deploy/demo/integrations.yaml}
export INCIDENTFLOW_DATA_DIR=${INCIDENTFLOW_DATA_DIR:-$repo/.data/demo}
export INCIDENTFLOW_GATEWAY_PORT=${INCIDENTFLOW_GATEWAY_PORT:-8080}
export INCIDENTFLOW_WEB_PORT=${INCIDENTFLOW_WEB_PORT:-6066}
logs=$repo/.data/demo-logs
mkdir -p "$logs"
pids=()

stop() {
  trap - EXIT INT TERM
  echo; echo "stopping the gateway, the worker and Kafka..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  deploy/kafka/kafka.sh down || true
}
trap stop EXIT INT TERM

wait_http() { # url name pid
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "$2 exited; its log:"; tail -n 40 "$logs/$2.log"; exit 1; fi
    sleep 0.5
  done
  echo "$2 did not answer at $1 in 60 s; see $logs/$2.log"; exit 1
}

deploy/kafka/kafka.sh up
rm -rf "$INCIDENTFLOW_DATA_DIR"
"$bin/incidentflow" topics >/dev/null
"$bin/incidentflow" worker >"$logs/worker.log" 2>&1 & pids+=($!)
"$bin/incidentflow" gateway >"$logs/gateway.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$INCIDENTFLOW_GATEWAY_PORT/readyz" gateway "${pids[1]}"
wait_http "http://127.0.0.1:$INCIDENTFLOW_WEB_PORT/metrics" worker "${pids[0]}"

"$bin/incidentflow" demo --token demo-elven-token-0123456789 --native-token demo-native-token-0123456789 \
  --github-token demo-github-token-0123456789 \
  --gateway-url "http://127.0.0.1:$INCIDENTFLOW_GATEWAY_PORT" --worker-url "http://127.0.0.1:$INCIDENTFLOW_WEB_PORT"

cat <<MSG

Running (logs in $logs):
  gateway   http://127.0.0.1:$INCIDENTFLOW_GATEWAY_PORT   (OpenAPI: /docs, /openapi.json; /metrics)
  worker    http://127.0.0.1:$INCIDENTFLOW_WEB_PORT/metrics
  Kafka     $INCIDENTFLOW_KAFKA_BOOTSTRAP   (topics incidentflow.raw, .alerts, .incidents, .metrics, ...)
Try:  curl -X POST http://127.0.0.1:$INCIDENTFLOW_GATEWAY_PORT/v1/ingest/elven/demo-elven-token-0123456789 \\
        -H 'content-type: application/json' \\
        -d '{"external_aggregate_key":"my-1","action":"alarmed","title":"Disk full","tags":[{"name":"service","value":"db"}]}'
Press Ctrl-C to stop everything.
MSG
wait "${pids[@]}"
