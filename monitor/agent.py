"""The resource-utilisation agent of one node (Alg. 1), running inside the node's container.

Every ``interval`` seconds: read the cgroup, turn it into the Table I/II fields against the
node's own limits, and forward the point to RabbitMQ (``vpp.metrics``), buffered and confirmed.
The first point is published only after a full interval, so the first CPU value is a real
measurement and never a bogus 0. Serves ``/metrics`` (its own CPU and memory included).

    python3 -m monitor.agent            (node from $VPP_NODE, topology from $VPP_TOPOLOGY)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from prometheus_client import Counter, Gauge, start_http_server

from infra import logs
from infra.lifecycle import StopFlag
from infra.logs import event
from infra.state import passwords
from infra.topology import Topology, load_topology
from monitor.cgroup import Sampler, utilisation
from monitor.schema import NODE_MEASUREMENT_BY_POOL
from monitor.transport import PointPublisher, point

DATA_PATHS = {"rabbitmq": "/var/lib/rabbitmq", "hdfs-namenode": "/data", "hdfs-datanode": "/data",
              "influxdb": "/var/lib/influxdb", "spark-master": "/data", "spark-worker": "/data"}
log = logs.get("agent")

SAMPLES = Counter("vpp_agent_samples", "Samples taken", ["node"])
PUBLISHED = Counter("vpp_agent_points_published", "Points confirmed by the broker", ["node"])
ERRORS = Counter("vpp_agent_publish_errors", "Failed publish attempts", ["node"])
DROPPED = Counter("vpp_agent_points_dropped", "Points dropped because the buffer was full",
                  ["node"])
BUFFERED = Gauge("vpp_agent_points_buffered", "Points waiting for the broker", ["node"])


def _params(topo: Topology):
    import pika

    from ingest.topology import home_channel

    home = home_channel(topo)
    return pika.ConnectionParameters(
        host=topo.bind_host, port=home.ports["amqp"], virtual_host=topo.rabbitmq.vhost,
        credentials=pika.PlainCredentials("monitor", passwords(["monitor"])["monitor"]),
        heartbeat=30, socket_timeout=5, blocked_connection_timeout=10, connection_attempts=1)


def run(topo: Topology, node_name: str, interval: float, samples: int | None = None) -> int:
    node = topo.node(node_name)
    measurement = NODE_MEASUREMENT_BY_POOL[node.pool].name
    tags = {"cluster": node.pool, "node": node.name, "role": node.role}
    publisher = PointPublisher(_params(topo), f"node.{node.pool}.{node.name}", source=node.name)
    sampler = Sampler(DATA_PATHS.get(node.role, "/"))
    stop = StopFlag()
    event(log, "started", node=node.name, measurement=measurement, interval_s=interval)
    prev = sampler.read()
    seq = 0
    next_at = time.monotonic() + interval
    while not stop and (samples is None or seq < samples):
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        cur = sampler.read()
        fields = utilisation(prev, cur) | {"sample_seq": seq}
        prev = cur
        publisher.add(point(measurement, tags, fields, cur.wall_ns))
        SAMPLES.labels(node.name).inc()
        seq += 1
        before = publisher.stats
        errors, dropped = before.errors, before.dropped
        PUBLISHED.labels(node.name).inc(publisher.flush())
        ERRORS.labels(node.name).inc(publisher.stats.errors - errors)
        DROPPED.labels(node.name).inc(publisher.stats.dropped - dropped)
        BUFFERED.labels(node.name).set(len(publisher.buffer))
    # Last chance for what is still buffered (e.g. on docker stop).
    deadline = time.monotonic() + 5
    while publisher.buffer and time.monotonic() < deadline:
        publisher.flush()
        time.sleep(0.2)
    publisher.close()
    event(log, "stopped", node=node.name, samples=seq, unsent=len(publisher.buffer))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m monitor.agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", default=os.environ.get("VPP_NODE"))
    p.add_argument("--interval", type=float,
                   default=float(os.environ.get("VPP_AGENT_INTERVAL_S", "2")))
    p.add_argument("--samples", type=int, default=None, help="stop after this many (tests)")
    p.add_argument("--port", type=int, default=None, help="/metrics port (default: topology)")
    args = p.parse_args(argv)
    if not args.node:
        p.error("--node (or $VPP_NODE) is required")
    if not args.interval > 0:
        p.error(f"--interval must be > 0, got {args.interval}")
    logs.setup("agent")
    topo = load_topology()
    index = [n.name for n in topo.nodes].index(topo.node(args.node).name)
    port = args.port if args.port is not None else topo.services["node_agents"].at(index)
    start_http_server(port, addr=topo.bind_host)
    return run(topo, args.node, args.interval, args.samples)


if __name__ == "__main__":
    sys.exit(main())
