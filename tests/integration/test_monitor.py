"""Monitoring acceptance (Alg. 1) against the real agents, RabbitMQ and InfluxDB."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from bench.live import wait_for
from infra.platform import Platform
from infra.topology import Topology
from monitor import influx

pytestmark = pytest.mark.integration


def _q(topo: Topology, query: str) -> list[dict]:
    res = influx.client(topo).query(query)
    return list(res.get_points())


def test_every_active_node_reports_against_its_own_limits(platform, topo, monitoring):
    def latest():
        rows = _q(topo, 'SELECT last("cpu"), last("memory") FROM "processing_cluster", '
                        '"queuing_cluster" WHERE time > now() - 20s GROUP BY "node"')
        return rows if len(rows) >= 6 else None

    wait_for(latest, 60, "a point from every active node")
    rows = influx.client(topo).query(
        'SELECT last("cpu") AS cpu, last("memory") AS mem FROM "processing_cluster", '
        '"queuing_cluster" WHERE time > now() - 20s GROUP BY "node"')
    nodes = {tags["node"] for (_m, tags) in rows.keys()}  # noqa: SIM118 - a ResultSet
    active = {n.name for n in topo.nodes if n.initial_state == "active"}
    assert active <= nodes
    for (_m, _tags), pts in rows.items():
        p = next(iter(pts))
        assert 0 <= p["cpu"] <= 100 and 0 < p["mem"] < 100


def test_a_cpu_burner_in_a_half_cpu_worker_reads_about_100_percent(platform: Platform, topo,
                                                                    monitoring):
    worker = topo.node("worker-0")
    assert worker.cpus == 0.5
    burner = subprocess.Popen(["docker", "exec", platform.topo.container_name(worker), "timeout",
                               "40", "python3", "-c", "while True: pass"])
    try:
        time.sleep(22)  # the burner saturates the quota; skip the first, partial samples
        busy = _q(topo, 'SELECT mean("cpu") AS cpu FROM "processing_cluster" '
                        "WHERE node = 'worker-0' AND time > now() - 12s")
        idle = _q(topo, 'SELECT mean("cpu") AS cpu FROM "processing_cluster" '
                        "WHERE node = 'namenode' AND time > now() - 12s")
    finally:
        burner.wait(timeout=60)
    assert busy and busy[0]["cpu"] >= 90, busy
    assert idle and idle[0]["cpu"] < 30, idle


def test_first_sample_of_a_woken_node_is_a_real_measurement(platform: Platform, topo, monitoring,
                                                           dormant):
    t0 = time.time()
    platform.wake(dormant("worker-1"))
    first = wait_for(lambda: _q(topo, 'SELECT "cpu", "sample_seq" FROM "processing_cluster" '
                                   f"WHERE node = 'worker-1' AND time > {int(t0 * 1e9)} "
                                   "ORDER BY time ASC LIMIT 1"), 60, "worker-1's first sample")
    assert first[0]["sample_seq"] == 0
    assert first[0]["cpu"] > 0  # a booting JVM: a 0 here would be the bogus first sample


def test_influxdb_down_for_30s_loses_no_sample_and_keeps_timestamps(platform: Platform, topo,
                                                                   monitoring):
    influx_node = topo.only("influxdb")
    nodes = [n.name for n in topo.nodes if n.initial_state == "active" and n is not influx_node]
    wait_for(lambda: _q(topo, 'SELECT last("cpu") FROM "processing_cluster"'), 30, "data")
    before_ns = time.time_ns() - 10_000_000_000
    c = platform.container(influx_node)
    c.stop(timeout=30)
    down_at = time.time_ns()
    time.sleep(30)
    up_at = time.time_ns()
    c.start()
    platform.wait_healthy([influx_node], progress=lambda _m: None)
    time.sleep(15)  # the writer retries with back-off, then drains what waited in RabbitMQ
    for node in nodes:
        pts = wait_for(lambda node=node: _q(topo,
                    'SELECT "sample_seq" FROM "processing_cluster", "queuing_cluster" '
                    f"WHERE node = '{node}' AND time > {before_ns} AND time < now() - 4s"),
                    60, f"{node}'s samples")
        seqs = [int(p["sample_seq"]) for p in pts]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{node}: gap in {seqs}"
        times = [p["time"] for p in pts]
        during = [t for t in times if down_at < _ns(t) < up_at]
        # ~15 samples at 2 s were taken while InfluxDB was down, and kept their own times.
        assert len(during) >= 12, f"{node}: only {len(during)} points inside the outage"


def _ns(rfc3339: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1e9)


def test_every_long_running_component_serves_metrics(platform, topo, monitoring):
    ports = {"metrics-writer": topo.services["metrics_writer"].port,
             "collector": topo.services["collector"].port}
    for i, node in enumerate(topo.nodes):
        if node.initial_state == "active":
            ports[f"agent {node.name}"] = topo.services["node_agents"].at(i)
    for name, port in ports.items():
        text = wait_for(lambda port=port: _metrics(topo, port), 30, f"{name} /metrics")
        assert "process_cpu_seconds_total" in text, name
        assert "process_resident_memory_bytes" in text, name
    assert "vpp_writer_points_written_total" in _metrics(topo, ports["metrics-writer"])
    assert "vpp_agent_points_published_total" in _metrics(topo, ports["agent worker-0"])


def _metrics(topo: Topology, port: int) -> str | None:
    try:
        return requests.get(f"http://{topo.bind_host}:{port}/metrics", timeout=3).text
    except requests.RequestException:
        return None


def test_queue_depth_and_rates_are_collected(platform, topo, monitoring):
    rows = wait_for(lambda: _q(topo, 'SELECT last("messages") FROM "rabbitmq_queue" '
                                  "WHERE queue = 'vpp.metrics.writer' AND time > now() - 30s"),
                 60, "rabbitmq_queue points")
    assert rows
