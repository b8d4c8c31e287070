"""Orchestrator acceptance (Alg. 3, Figs. 12 and 13) on the live system with short timings:
the expected node is woken under load and put back to sleep (drain-safe) when the load is
gone, and every confirmed reading is stored exactly once."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from autoscaler.realise import restore_initial
from bench.faults import DiagnoserProc
from bench.live import Fleet, Job, hdfs_scratch
from bench.scenarios import FIG12
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.topology import Topology
from ingest.streams import stream_end
from ingest.topology import TELEMETRY_STREAM
from spark_jobs.audit import stored_counts
from tests.integration.helpers import ROOT

pytestmark = pytest.mark.integration


class OrchestratorProc:
    """``python -m autoscaler`` following one diagnoser, its decisions read from its log."""

    def __init__(self, diagnoser: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "--diagnoser", diagnoser, "--interval", "5",
             "--cooldown", "20", "--scale-down-delay", "10", "--drain-timeout", "150",
             "--metrics-port", "0", *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.decisions: list[dict] = []
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if '"event":"autoscaler_decision"' in line:
                self.decisions.append(json.loads(line))

    def done(self, action: str, node: str) -> dict | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the orchestrator exited ({self.proc.returncode}):\n"
                                 + "".join(self.lines[-30:]))
        for d in self.decisions:
            if d["action"] == action and d["node"] == node and (d.get("outcome") or {}).get(
                    "outcome") == "done":
                return d
        return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError("the orchestrator did not stop within 60 s of SIGTERM") from None




@pytest.fixture()
def hdfs_root(topo: Topology):
    with hdfs_scratch(topo, "/tests/orch") as path:
        yield path


@pytest.fixture()
def restore(platform: Platform, topo: Topology):
    """Start from the topology's initial state and return to it whatever the orchestrator did:
    routing on channel-0 only, dormant nodes asleep."""
    restore_initial(topo, platform)
    yield
    restore_initial(topo, platform)


def _run(topo: Topology, tmp_path: Path, hdfs_root: str, scenario: Path, rules: Path,
         wake: str, job_args: tuple[str, ...]) -> None:
    since_ms = int(time.time() * 1000) - 1000
    start = {"channel-0": stream_end(amqp_params(topo, "channel-0", "admin"), TELEMETRY_STREAM)}
    with contextlib.ExitStack() as stack:
        job = Job(f"{topo.hdfs_url}{hdfs_root}", start, *job_args)
        stack.callback(job.stop)
        name = f"diag-{uuid.uuid4().hex[:6]}"
        diag = DiagnoserProc(rules, interval=5.0, name=name)
        stack.callback(diag.stop)
        orch = OrchestratorProc(name)
        stack.callback(orch.stop)
        _scale_and_count(topo, tmp_path, hdfs_root, scenario, wake, since_ms, job, orch, stack)


def _scale_and_count(topo: Topology, tmp_path: Path, hdfs_root: str, scenario: Path, wake: str,
                     since_ms: int, job: Job, orch: OrchestratorProc,
                     stack: contextlib.ExitStack) -> None:
    try:
        job.wait_for(lambda: any(e.get("event") == "started" for e in job.events), 180, "the job")
        fleet = Fleet(["--scenario", str(scenario)], tmp_path / "fleet.json")
        stack.callback(fleet.stop)
        woken = job.wait_for(lambda: orch.done("wake", wake), 240, f"{wake} woken")
        sent = fleet.finish(timeout=400)
        assert sent["dropped_overflow"] == 0 and sent["unconfirmed_at_exit"] == 0, sent
        slept = job.wait_for(lambda: orch.done("sleep", wake), 400,
                             f"{wake} put back to sleep")
        assert slept["time"] > woken["time"]
        assert slept["evidence"].get("policy") == "ours"
        ders = set(sent["per_der"])
        # The stored copy: nothing lost, nothing twice (the job may still be committing).
        got = job.wait_for(lambda: (lambda c: c if c.raw_rows >= sent["confirmed"] else None)(
            stored_counts(topo, hdfs_root, ders, since_ms)), 300, "every reading stored",
            every=5)
        assert (got.raw_rows, got.raw_distinct) == (sent["confirmed"], sent["confirmed"])
        # The woken node carried part of the run and the one job (never restarted) took it in:
        # for a channel, the broker confirmed readings on it and the raw table holds them.
        if topo.node(wake).pool == "queue":
            gateways = json.loads(fleet.summary.read_text())["gateways"]
            on_woken = sum(g["publishers"].get(wake, {}).get("confirmed", 0) for g in gateways)
            assert on_woken > 0, (f"no reading was published on {wake}; routing tables "
                                  f"applied: {fleet.events('routing_applied')}")
            assert got.by_channel.get(wake, 0) == on_woken, (got.by_channel, on_woken)
        assert sum(1 for e in job.events if e.get("event") == "started"
                   and e.get("queries") and "ingest" in e["queries"]) == 1
    except BaseException:
        # shown by pytest with the failure
        print("orchestrator:\n" + "".join(orch.lines[-40:]) + "\njob:\n"
              + "".join(job.output[-80:]))
        raise


def test_fig12_queue_level_wakes_channel_1_then_drains_it_losing_nothing(
        platform, topo, monitoring, hdfs_root, tmp_path, restore):
    run = FIG12
    _run(topo, tmp_path, hdfs_root, run.scenario_file(tmp_path / "scenario.yaml"),
         run.rules_file(tmp_path / "rules.yaml"), run.wakes, run.job_args)


# Fig. 13 (processing level) runs end to end as the short demo: tests/integration/test_demo.py.
