#!/bin/bash
# Renders rabbitmq.conf from the container environment (set by infra/platform.py from the
# topology) and runs the broker in the foreground. Node name, ports and epmd port come in as
# RABBITMQ_* / ERL_EPMD_* env so that `docker exec ... rabbitmqctl` sees the same values.
set -euo pipefail
: "${VPP_BIND_HOST:?}" "${VPP_AMQP_PORT:?}" "${VPP_MANAGEMENT_PORT:?}" "${VPP_MEMORY_MB:?}"
: "${VPP_RABBITMQ_DEFINITIONS:?definitions JSON (users, vhost, permissions) is required}"
umask 077
printf '%s' "$VPP_RABBITMQ_DEFINITIONS" > /etc/rabbitmq/definitions.json
chown rabbitmq:rabbitmq /etc/rabbitmq/definitions.json
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.1 = ${VPP_BIND_HOST}:${VPP_AMQP_PORT}
management.tcp.ip = ${VPP_BIND_HOST}
management.tcp.port = ${VPP_MANAGEMENT_PORT}
load_definitions = /etc/rabbitmq/definitions.json
# RabbitMQ cannot see the container's memory limit; tell it, so its alarms fire before the OOM killer.
total_memory_available_override_value = $((VPP_MEMORY_MB * 1024 * 1024))
vm_memory_high_watermark.relative = 0.6
disk_free_limit.absolute = 200MB
log.console = true
log.console.level = warning
log.file = false
CONF
chmod 644 /etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
if [ -n "${VPP_AGENT_CMD:-}" ]; then bash -c "$VPP_AGENT_CMD" & fi
# Not Debian's /usr/sbin/rabbitmq-server wrapper: it runs the broker under `su`, which SIGKILLs
# it 2 s after `docker stop`, forcing index rebuilds. setpriv execs, so the VM itself gets
# SIGTERM and shuts down cleanly.
export HOME=/var/lib/rabbitmq
cd "$HOME"
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
