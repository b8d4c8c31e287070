"""Realise step (collect -> evaluate -> decide -> **realise**): turn a decided action into Docker
calls, drain-safe. The only module of the project that changes containers on its own.

* **wake a channel**: start it, wait until its broker answers, declare its streams (the
  readiness gate), then publish the next routing table with it, so new readings use it;
* **sleep a channel**: publish a routing table without it, let the gateways apply it, wait
  until Spark's committed offset on its stream reached the stream's end (``stream_lag`` of
  that channel 0 in a trigger after the switch), and only then stop it. A drain that does not
  finish in ``drain_timeout_s`` is undone (the channel goes back into the table): it stays
  awake rather than taking unread readings to sleep;
* **wake a worker**: start it; the master hands the running application an executor;
* **sleep a worker**: SIGPWR makes the standalone worker decommission (its executors finish
  their tasks and migrate their blocks, Spark >= 3.1); once the master lists it as
  DECOMMISSIONED with no cores in use it is stopped. No task is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from infra.platform import Platform, PlatformError
from infra.topology import Node, Topology
from ingest.routing import RoutingTable, initial_table
from ingest.streams import fetch_routing_table, publish_routing_table
from ingest.topology import declare_channel
from monitor import influx

Clock = Callable[[], float]


class DrainError(RuntimeError):
    """A node could not be drained in time; it was put back in service instead of to sleep."""


@dataclass
class Outcome:
    """What realising one action did: ``outcome`` is done | drain_timeout | failed."""

    outcome: str
    latency_s: float
    steps: dict[str, float] = field(default_factory=dict)   # phase -> seconds
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "latency_s": round(self.latency_s, 3),
                "steps": {k: round(v, 3) for k, v in self.steps.items()}, "detail": self.detail}


def channel_drained(topo: Topology, channel: str, after_ns: int,
                    cli: influx.InfluxDBClient | None = None) -> bool:
    """Spark consumed ``channel`` to the end: a trigger after ``after_ns`` saw lag 0 on it."""
    cli = cli or influx.client(topo)
    rows = list(cli.query(
        f"SELECT last(\"lag\") AS lag FROM \"stream_lag\" WHERE \"node\" = '{channel}' "
        f"AND time > {int(after_ns)}").get_points())
    return bool(rows) and rows[0]["lag"] is not None and int(rows[0]["lag"]) == 0


def master_workers(topo: Topology) -> list[dict[str, Any]]:
    base = topo.url("spark-master", "webui")
    return list(requests.get(f"{base}/json/", timeout=5).json().get("workers", []))


def worker_entry(topo: Topology, node: Node) -> dict[str, Any] | None:
    """The master's newest entry for ``node`` (matched by RPC port: every worker is 127.0.0.1)."""
    port = node.ports["rpc"]
    mine = [w for w in master_workers(topo) if int(w.get("port", -1)) == port]
    alive = [w for w in mine if w.get("state") != "DEAD"]
    return (alive or mine or [None])[-1]


def executors_on(topo: Topology, node: Node) -> list[dict]:
    """The driver REST API's entries for the executors running on ``node`` (its own web UI names
    them: every worker is 127.0.0.1, so the driver alone cannot tell them apart); [] when no
    application runs there or its driver is gone."""
    executors = requests.get(topo.url(node, "webui") + "/json/", timeout=5).json().get(
        "executors", [])
    api = f"http://{topo.bind_host}:{topo.spark.driver_ui_port}/api/v1/applications"
    found: list[dict] = []
    for app in {e["appid"] for e in executors}:
        ids = {str(e["id"]) for e in executors if e["appid"] == app}
        try:
            listed = requests.get(f"{api}/{app}/executors", timeout=5).json()
        except (requests.RequestException, ValueError):
            continue   # the driver is gone: nothing runs for it any more
        found.extend(x for x in listed if x.get("id") in ids)
    return found


def running_tasks(topo: Topology, node: Node) -> int:
    """Tasks running now on the executors of ``node``; 0 when no application runs there."""
    return sum(int(x.get("activeTasks", 0)) for x in executors_on(topo, node))


class Realiser:
    def __init__(self, topo: Topology, platform: Platform | None = None,
                 clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.topo = topo
        self.platform = platform or Platform(topo)
        self.settings = topo.orchestrator
        self.clock = clock
        self.pause = sleep
        self.stopping = stopping   # a shutdown aborts a drain (and undoes it) instead of waiting
        self.influx = influx.client(topo)

    # -- routing ------------------------------------------------------------------------------
    def routing(self) -> RoutingTable:
        current = fetch_routing_table(self.topo, user="autoscaler")
        return current or initial_table([self.topo.pool_nodes("queue")[0].name])

    def _route(self, channels: list[str], reason: str) -> RoutingTable:
        table = self.routing().successor(channels, reason=reason)
        publish_routing_table(self.topo, table, user="autoscaler")
        return table

    # -- actions ------------------------------------------------------------------------------
    def wake(self, node_name: str) -> Outcome:
        node = self.topo.node(node_name)
        t0 = self.clock()
        steps: dict[str, float] = {}
        try:
            tr = self.platform.wake(node)
            steps["docker_s"] = tr.ready_s
            if node.pool == "queue":
                t1 = self.clock()
                declare_channel(self.topo, node)
                steps["declare_s"] = self.clock() - t1
                table = self.routing()
                if node.name not in table.channels:
                    self._route([*table.channels, node.name], f"autoscaler: wake {node.name}")
                steps["routing_s"] = self.clock() - t1 - steps["declare_s"]
        except Exception as exc:
            return Outcome("failed", self.clock() - t0, steps, repr(exc)[:300])
        return Outcome("done", self.clock() - t0, steps, tr.action)

    def sleep(self, node_name: str) -> Outcome:
        node = self.topo.node(node_name)
        t0 = self.clock()
        steps: dict[str, float] = {}
        try:
            if node.pool == "queue":
                self._drain_channel(node, steps)
            else:
                self._decommission_worker(node, steps)
            t1 = self.clock()
            tr = self.platform.sleep(node)
            steps["docker_s"] = self.clock() - t1
        except DrainError as exc:
            return Outcome("drain_timeout", self.clock() - t0, steps, str(exc))
        except Exception as exc:   # PlatformError, Docker or HTTP errors alike
            return Outcome("failed", self.clock() - t0, steps, repr(exc)[:300])
        return Outcome("done", self.clock() - t0, steps, tr.action)

    # -- drains -------------------------------------------------------------------------------
    def _drain_channel(self, node: Node, steps: dict[str, float]) -> None:
        t0 = self.clock()
        table = self.routing()
        others = [c for c in table.channels if c != node.name]
        if not others:
            raise DrainError(f"{node.name} is the only routed channel; nothing to move its "
                             "DERs to")
        if node.name in table.channels:
            self._route(others, f"autoscaler: drain {node.name}")
        # Gateways apply a table within 1 s; readings they had confirmed before still land in
        # this stream, so the end is taken only after the switch settled.
        self.pause(self.settings.routing_settle_s)
        settled_ns = time.time_ns()
        steps["routing_s"] = self.clock() - t0
        deadline = self.clock() + self.settings.drain_timeout_s
        while not channel_drained(self.topo, node.name, settled_ns, self.influx):
            if self.clock() > deadline or self.stopping():
                # Undo: the channel keeps serving its DERs; nothing unread goes to sleep.
                why = "shutdown" if self.stopping() else "timeout"
                self._route([*others, node.name], f"autoscaler: drain of {node.name}: {why}")
                raise DrainError(f"{node.name}: Spark did not consume its stream to the end "
                                 f"({why} after {self.clock() - t0:.0f} s); routed back")
            self.pause(1.0)
        steps["drain_s"] = self.clock() - t0 - steps["routing_s"]

    def _decommission_worker(self, node: Node, steps: dict[str, float]) -> None:
        t0 = self.clock()
        container = self.platform.container(node)
        if container is None:
            raise PlatformError(f"{node.name} has no container")
        # The standalone worker decommissions itself on SIGPWR (spark.decommission.enabled):
        # docker-init forwards it to the worker JVM; the master stops giving it work and the
        # driver stops scheduling tasks on its executors. Those executors of a streaming query
        # do not exit by themselves (seen here), so the node is stopped once the master says
        # DECOMMISSIONED and its executors ran no task for two polls in a row.
        container.kill(signal="SIGPWR")
        deadline = t0 + self.settings.drain_timeout_s
        idle_polls = 0
        while idle_polls < 2:
            entry = worker_entry(self.topo, node)
            state = None if entry is None else entry.get("state")
            busy = running_tasks(self.topo, node) if state == "DECOMMISSIONED" else None
            idle_polls = idle_polls + 1 if (entry is None or state == "DEAD" or busy == 0) else 0
            if idle_polls >= 2:
                break
            if self.clock() > deadline:
                # A decommissioned worker takes no new executors: restart it so the pool
                # keeps its capacity; Spark retries whatever task was still running there.
                self.platform.sleep(node, enforce_min=False)
                self.platform.wake(node)
                raise DrainError(f"{node.name}: not decommissioned within "
                                 f"{self.settings.drain_timeout_s:.0f} s (master says {state}, "
                                 f"{busy} running tasks)")
            self.pause(1.0)
        steps["decommission_s"] = self.clock() - t0


def restore_initial(topo: Topology, platform: Platform) -> None:
    """Back to the topology's initial scalable state: routing on the initially active channels
    only, every initially dormant node asleep (tests and the demo start and end here)."""
    channels = [n.name for n in topo.pool_nodes("queue") if n.initial_state == "active"]
    current = fetch_routing_table(topo) or initial_table(channels)
    if sorted(current.channels) != sorted(channels):
        publish_routing_table(topo, current.successor(channels, reason="restore initial state"))
    for pool in ("queue", "processing"):
        for node in topo.pool_nodes(pool):
            if node.initial_state == "dormant":
                platform.sleep(node, enforce_min=False)
