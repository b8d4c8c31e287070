#!/bin/bash
# Usage: vpp-entrypoint master|worker. Runs the standalone daemon in the foreground with the
# ports and limits set by infra/platform.py from the topology.
set -euo pipefail
role=${1:?master or worker}
: "${VPP_BIND_HOST:?}" "${VPP_RPC_PORT:?}" "${VPP_WEBUI_PORT:?}"
export SPARK_LOCAL_IP="$VPP_BIND_HOST" SPARK_LOCAL_HOSTNAME="$VPP_BIND_HOST"
export SPARK_LOG_DIR=/data/spark/logs SPARK_WORKER_DIR=/data/spark/work
mkdir -p "$SPARK_LOG_DIR" "$SPARK_WORKER_DIR"
export SPARK_DAEMON_MEMORY="${VPP_DAEMON_MEMORY_MB:-256}m"
# Worker decommissioning (drain before sleep) is driven by SIGPWR, see autoscaler/.
export SPARK_MASTER_OPTS="${SPARK_MASTER_OPTS:-} -Dspark.worker.timeout=${VPP_WORKER_TIMEOUT_S:-15} -Dspark.deploy.spreadOut=true -Dspark.master.rest.enabled=false"
export SPARK_WORKER_OPTS="${SPARK_WORKER_OPTS:-} -Dspark.decommission.enabled=true -Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.appDataTtl=3600"
if [ -n "${VPP_AGENT_CMD:-}" ]; then bash -c "$VPP_AGENT_CMD" & fi
case "$role" in
  master)
    exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
      --host "$VPP_BIND_HOST" --port "$VPP_RPC_PORT" --webui-port "$VPP_WEBUI_PORT" ;;
  worker)
    : "${VPP_MASTER_URL:?}" "${VPP_WORKER_CORES:?}" "${VPP_WORKER_MEMORY_MB:?}"
    exec "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker \
      --host "$VPP_BIND_HOST" --port "$VPP_RPC_PORT" --webui-port "$VPP_WEBUI_PORT" \
      --cores "$VPP_WORKER_CORES" --memory "${VPP_WORKER_MEMORY_MB}m" "$VPP_MASTER_URL" ;;
  *) echo "unknown Spark role: $role" >&2; exit 2 ;;
esac
