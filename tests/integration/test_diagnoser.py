"""Diagnoser acceptance (Alg. 2) on the live system: real overloads give the right labels and
nodes, an idle system gives scale-down labels after the hold time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.faults import BUSY_WORKER_LOAD, FLOOD_LOAD, DiagnoserProc, cpu_burner
from bench.live import Fleet, hdfs_scratch, latest_job, wait_for
from bench.scenarios import short_rules
from infra.platform import Platform
from infra.topology import Topology
from monitor import influx

pytestmark = pytest.mark.integration


def _rules(tmp_path: Path, **for_s: float) -> Path:
    """The shipped rules with shorter hold times (rules are data: a test may tune them)."""
    return short_rules(tmp_path / "rules.yaml", for_s)


def _rca_in_influx(topo: Topology, label: str, node: str, since_ns: int) -> bool:
    rows = influx.client(topo).query(
        f"SELECT \"code\" FROM \"rca\" WHERE \"label\" = '{label}' AND \"node\" = '{node}' "
        f"AND time > {since_ns}")
    return bool(list(rows.get_points()))


@pytest.fixture()
def hdfs_root(topo: Topology):
    with hdfs_scratch(topo, "/tests/diag") as path:
        yield f"{topo.hdfs_url}{path}"


def test_an_overloaded_worker_yields_scale_up_processing_naming_it(
        platform: Platform, topo: Topology, monitoring, hdfs_root, tmp_path):
    t0 = time.time_ns()
    job = latest_job(topo, hdfs_root, "--max-rows-per-trigger", "3000")
    diag = DiagnoserProc(_rules(tmp_path, processing_behind=15))
    fleet = Fleet([*BUSY_WORKER_LOAD, "--duration", "150"], tmp_path / "f.json")
    try:
        with cpu_burner(topo, "worker-0", 150):
            found = wait_for(lambda: [lab for lab in diag.labels() if lab["label"] == "up_cl"],
                             180, "an R_up^CL label")
            assert found[0]["nodes"][0] == "worker-0", found[0]
            assert found[0]["rule"] == "processing_behind"
            assert found[0]["evidence"], "a label without evidence"
            wait_for(lambda: _rca_in_influx(topo, "up_cl", "worker-0", t0), 30, "the rca point")
    finally:
        fleet.stop()
        diag.stop()
        job.stop()


def test_flooding_a_channel_yields_scale_up_queue_naming_it(platform, topo, monitoring,
                                                          tmp_path):
    t0 = time.time_ns()
    diag = DiagnoserProc(_rules(tmp_path, channel_hot=15, queue_backlog=15))
    fleet = Fleet([*FLOOD_LOAD, "--duration", "90"], tmp_path / "f.json")
    try:
        found = wait_for(lambda: [lab for lab in diag.labels() if lab["label"] == "up_cc"],
                         150, "an R_up^CC label")
        assert found[0]["nodes"][0] == "channel-0", found[0]
        assert found[0]["rule"] in ("channel_hot", "queue_backlog")
        wait_for(lambda: _rca_in_influx(topo, "up_cc", "channel-0", t0), 30, "the rca point")
    finally:
        fleet.stop()
        diag.stop()


def test_an_idle_system_yields_scale_down_labels_after_the_hold_time(
        platform: Platform, topo: Topology, monitoring, hdfs_root, tmp_path, dormant):
    platform.wake(dormant("worker-1"))
    platform.wake(dormant("channel-1"))
    job = latest_job(topo, hdfs_root)  # idle, but reporting progress
    hold = 20
    diag = DiagnoserProc(_rules(tmp_path, processing_idle=hold, queue_idle=hold))
    t_start = time.monotonic()
    try:
        down = wait_for(lambda: {lab["label"]: lab for lab in diag.labels()
                                 if lab["label"] in ("down_cl", "down_cc")}
                        if {"down_cl", "down_cc"} <= {lab["label"] for lab in diag.labels()}
                        else None, 200, "R_down^CL and R_down^CC")
        # Not before the hold time has passed (plus the cooldown after the nodes woke).
        assert time.monotonic() - t_start >= hold
        # The label names the coolest node; which one sleeps (never the home channel) is the
        # orchestrator's policy.
        assert down["down_cc"]["pool"] == "queue" and down["down_cl"]["pool"] == "processing"
        assert down["down_cl"]["nodes"][0] in ("worker-0", "worker-1")
    finally:
        diag.stop()
        job.stop()
