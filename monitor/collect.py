"""Host-side collector: the evidence that no node agent can see, over the same metrics path.

Telegraf-style inputs, each one small class with ``gather() -> list[point]``:

* :class:`RabbitQueues`: per queue of every running channel, depth and publish/deliver rates
  from the RabbitMQ management API (``rabbitmq_queue``);
* :class:`SparkTasks`: every finished task of the running Spark applications with the node its
  executor ran on (``spark_task``), for straggler detection.

Streaming-query progress and stream lag are exported by the streaming job itself.

    python -m monitor.collect
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

import requests
from prometheus_client import Counter, start_http_server

from infra import logs
from infra.amqp import amqp_params
from infra.lifecycle import StopFlag
from infra.logs import event
from infra.state import passwords
from infra.topology import Topology, load_topology
from ingest.topology import home_channel
from monitor.schema import QUEUE, SPARK_TASK
from monitor.transport import PointPublisher, point

log = logs.get("collector")
GATHERED = Counter("vpp_collector_points", "Points gathered", ["input"])
GATHER_ERRORS = Counter("vpp_collector_errors", "Failed gathers", ["input"])


class Input(Protocol):
    name: str

    def gather(self) -> list[dict[str, object]]: ...


def _rate(stats: dict, key: str) -> float:
    return float((stats.get(f"{key}_details") or {}).get("rate", 0.0))


def queue_points(node: str, queues: Iterable[dict], now_ns: int) -> list[dict[str, object]]:
    """Management API queue objects -> rabbitmq_queue points (pure)."""
    out = []
    for q in queues:
        stats = q.get("message_stats") or {}
        out.append(point(QUEUE.name, {"node": node, "queue": q["name"]}, {
            "messages": int(q.get("messages") or 0),
            "publish_rate": _rate(stats, "publish"),
            "deliver_rate": _rate(stats, "deliver_get"),
            "consumers": int(q.get("consumers") or 0),
            "bytes": int(q.get("message_bytes") or 0),
        }, now_ns))
    return out


class RabbitQueues:
    name = "rabbitmq_queues"

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.auth = ("monitor", passwords(["monitor"])["monitor"])

    def gather(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for node in self.topo.pool_nodes("queue"):
            url = f"{self.topo.url(node, 'management')}/api/queues/{self.topo.rabbitmq.vhost}"
            try:
                resp = requests.get(url, auth=self.auth, timeout=3)
                resp.raise_for_status()
            except requests.RequestException:
                continue  # asleep: a dormant channel reports nothing
            out += queue_points(node.name, resp.json(), time.time_ns())
        return out


def task_points(tasks: Iterable[dict], stage: int, executor_node: dict[str, str]
                ) -> list[dict[str, object]]:
    """Spark REST taskList entries -> spark_task points (pure)."""
    out = []
    for t in tasks:
        if t.get("status") != "SUCCESS":
            continue
        m = t.get("taskMetrics") or {}
        try:  # Spark writes e.g. 2026-12-01T09:55:52.123GMT
            start_s = datetime.strptime(str(t.get("launchTime", "")).replace("GMT", "+0000"),
                                        "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        except ValueError:
            continue
        end_ns = int((start_s + (t.get("duration") or 0) / 1000) * 1e9)
        executor = str(t.get("executorId", ""))
        out.append(point(SPARK_TASK.name,
                         {"node": executor_node.get(executor, "unknown"), "executor": executor},
                         {"duration_ms": float(t.get("duration") or 0),
                          "run_ms": float(m.get("executorRunTime") or 0),
                          "gc_ms": float(m.get("jvmGcTime") or 0),
                          "input_records": int((m.get("inputMetrics") or {}).get("recordsRead")
                                               or 0),
                          "stage": stage}, end_ns))
    return out


class SparkTasks:
    """Finished tasks of every application whose driver UI answers on the topology's port."""

    name = "spark_tasks"

    def __init__(self, topo: Topology, max_stages: int = 200) -> None:
        self.topo = topo
        self.max_stages = max_stages
        self.seen: set[tuple[str, int, int]] = set()

    def _executor_nodes(self, app_id: str) -> dict[str, str]:
        nodes = {}
        for w in self.topo.pool_nodes("processing"):
            try:
                info = requests.get(f"{self.topo.url(w, 'webui')}/json/", timeout=2).json()
            except (requests.RequestException, ValueError):
                continue
            for e in info.get("executors", []):
                if e.get("appid") == app_id:
                    nodes[str(e.get("id"))] = w.name
        return nodes

    def gather(self) -> list[dict[str, object]]:
        base = f"http://{self.topo.bind_host}:{self.topo.spark.driver_ui_port}/api/v1"
        try:
            apps = requests.get(f"{base}/applications", timeout=2).json()
        except (requests.RequestException, ValueError):
            return []  # no running application
        out: list[dict[str, object]] = []
        for app in apps:
            app_id = app["id"]
            stages = requests.get(f"{base}/applications/{app_id}/stages",
                                  params={"status": "complete"}, timeout=5).json()
            fresh = [s for s in stages if (app_id, s["stageId"], s["attemptId"]) not in self.seen]
            if not fresh:
                continue
            nodes = self._executor_nodes(app_id)
            for s in fresh[: self.max_stages]:
                key = (app_id, s["stageId"], s["attemptId"])
                tasks = requests.get(f"{base}/applications/{app_id}/stages/{s['stageId']}/"
                                     f"{s['attemptId']}/taskList", params={"length": 10000},
                                     timeout=5).json()
                out += task_points(tasks, int(s["stageId"]), nodes)
                self.seen.add(key)
        return out


def run(topo: Topology, inputs: list[Input], interval: float) -> int:
    params = amqp_params(topo, home_channel(topo), "monitor", heartbeat=30, socket_timeout=5)
    publisher = PointPublisher(params, "collector", source="collector")
    stop = StopFlag()
    event(log, "started", inputs=[i.name for i in inputs], interval_s=interval)
    next_at = time.monotonic()
    while not stop:
        for inp in inputs:
            try:
                points = inp.gather()
            except Exception as exc:  # one broken input must not stop the others
                GATHER_ERRORS.labels(inp.name).inc()
                event(log, "gather_failed", input=inp.name, error=repr(exc)[:300])
                continue
            GATHERED.labels(inp.name).inc(len(points))
            for p in points:
                publisher.add(p)
        publisher.flush()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    publisher.flush()
    publisher.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitor.collect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=2.0)
    args = p.parse_args(argv)
    if not args.interval > 0:
        p.error(f"--interval must be > 0, got {args.interval}")
    logs.setup("collector")
    topo = load_topology()
    start_http_server(topo.services["collector"].port, addr=topo.bind_host)
    return run(topo, [RabbitQueues(topo), SparkTasks(topo)], args.interval)


if __name__ == "__main__":
    sys.exit(main())
