#!/bin/bash
# Renders influxdb.conf from the environment set by infra/platform.py and runs influxd.
set -euo pipefail
: "${VPP_BIND_HOST:?}" "${VPP_HTTP_PORT:?}" "${VPP_RPC_PORT:?}"
mkdir -p /var/lib/influxdb/meta /var/lib/influxdb/data /var/lib/influxdb/wal
cat > /etc/influxdb/influxdb.conf <<CONF
reporting-disabled = true
bind-address = "${VPP_BIND_HOST}:${VPP_RPC_PORT}"
[meta]
  dir = "/var/lib/influxdb/meta"
[data]
  dir = "/var/lib/influxdb/data"
  wal-dir = "/var/lib/influxdb/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "${VPP_BIND_HOST}:${VPP_HTTP_PORT}"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
if [ -n "${VPP_AGENT_CMD:-}" ]; then bash -c "$VPP_AGENT_CMD" & fi
exec influxd -config /etc/influxdb/influxdb.conf
