"""Drain ordering of the realise step, with the I/O replaced by a recorder: a channel sleeps
only after routing moved its DERs and Spark consumed its stream; a worker only after the
master reports it decommissioned; a drain that does not finish is undone."""

from __future__ import annotations

import pytest

from autoscaler import realise
from autoscaler.labels_feed import latest_evaluation
from autoscaler.reactive import RatioRule, desired
from diagnoser.labels import RcaLabel
from infra.topology import load_topology
from ingest.routing import RoutingTable


class FakeContainer:
    def __init__(self, log: list) -> None:
        self.log = log

    def kill(self, signal: str) -> None:
        self.log.append(("kill", signal))


class FakePlatform:
    def __init__(self, log: list) -> None:
        self.log = log

    def container(self, node):
        return FakeContainer(self.log)

    def sleep(self, node, enforce_min: bool = True):
        self.log.append(("docker_sleep", node.name))
        return type("T", (), {"action": "stop", "ready_s": 0.1})()

    def wake(self, node):
        self.log.append(("docker_wake", node.name))
        return type("T", (), {"action": "start", "ready_s": 0.1})()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture()
def rig(monkeypatch):
    topo = load_topology()
    log: list = []
    tables = [RoutingTable(5, ("channel-0", "channel-1"), 0)]
    drained_after = {"t": 10.0}
    clock = Clock()
    monkeypatch.setattr(realise, "fetch_routing_table", lambda topo, user: tables[-1])

    def publish(topo, table, user):
        log.append(("route", table.channels))
        tables.append(table)

    monkeypatch.setattr(realise, "publish_routing_table", publish)

    def drained(topo, channel, after_ns, cli):
        log.append(("drained?", channel))
        return clock.t >= drained_after["t"]

    monkeypatch.setattr(realise, "channel_drained", drained)
    monkeypatch.setattr(realise.influx, "client", lambda topo: None)
    r = realise.Realiser(topo, FakePlatform(log), clock=clock, sleep=clock.sleep)
    return r, log, drained_after, clock, monkeypatch


def test_a_channel_sleeps_only_after_routing_moved_away_and_the_stream_was_consumed(rig):
    r, log, _, _, _ = rig
    out = r.sleep("channel-1")
    assert out.outcome == "done"
    assert log[0] == ("route", ("channel-0",))
    first_check = log.index(("drained?", "channel-1"))
    stop = log.index(("docker_sleep", "channel-1"))
    assert first_check > 0 and stop == len(log) - 1
    assert out.steps["drain_s"] > 0


def test_a_drain_that_does_not_finish_routes_the_channel_back_and_does_not_sleep_it(rig):
    r, log, drained_after, _, _ = rig
    drained_after["t"] = 1e9
    out = r.sleep("channel-1")
    assert out.outcome == "drain_timeout"
    assert ("docker_sleep", "channel-1") not in log
    assert log[-1] == ("route", ("channel-0", "channel-1"))


def test_the_last_routed_channel_is_never_drained(rig, monkeypatch):
    r, log, _, _, mp = rig
    mp.setattr(realise, "fetch_routing_table",
               lambda topo, user: RoutingTable(5, ("channel-1",), 0))
    out = r.sleep("channel-1")
    assert out.outcome == "drain_timeout" and log == []


def test_a_worker_sleeps_only_after_the_master_reports_it_decommissioned(rig):
    r, log, _, _, mp = rig
    states = iter([{"state": "ALIVE", "coresused": 1, "port": 7079}]
                  + [{"state": "DECOMMISSIONED", "coresused": 1, "port": 7079}] * 5)

    def entry(topo, node):
        e = next(states)
        log.append(("master", e["state"], e["coresused"]))
        return e

    tasks = iter([2, 0, 1, 0, 0])

    def running(topo, node):
        n = next(tasks)
        log.append(("tasks", n))
        return n

    mp.setattr(realise, "worker_entry", entry)
    mp.setattr(realise, "running_tasks", running)
    out = r.sleep("worker-1")
    assert out.outcome == "done"
    assert log[0] == ("kill", "SIGPWR")
    # Stopped only after two polls in a row with no task running on it.
    assert [e for e in log if e[0] == "tasks"] == [("tasks", 2), ("tasks", 0), ("tasks", 1),
                                                    ("tasks", 0), ("tasks", 0)]
    assert log[-1] == ("docker_sleep", "worker-1")


def test_latest_evaluation_takes_the_newest_of_one_diagnoser_and_mode():
    msgs = [
        {"label": "up_cc", "mode": "improved", "time": 10.0, "source": "diagnoser"},
        {"label": "none", "mode": "improved", "time": 20.0, "source": "diagnoser"},
        {"label": "up_cl", "mode": "improved", "time": 30.0, "source": "other"},
        {"label": "down_cl", "mode": "paper", "time": 40.0, "source": "diagnoser"},
        {"label": "bogus", "mode": "improved", "time": 20.0, "source": "diagnoser"},
    ]
    got = latest_evaluation(msgs, "improved")
    assert got is not None and got.time == 20.0 and got.labels == (RcaLabel.NO_ACTION,)
    assert latest_evaluation(msgs, "paper").labels == (RcaLabel.DOWN_PROCESSING,)
    assert latest_evaluation(msgs, "improved", "nobody") is None


@pytest.mark.parametrize(("active", "cpu", "want"), [
    (1, 70.0, 1), (1, 76.0, 1), (1, 90.0, 2), (2, 20.0, 1), (3, 100.0, 5), (1, 0.0, 1),
])
def test_reactive_ratio_rule_is_the_hpa_formula(active, cpu, want):
    assert desired(active, cpu, RatioRule(target_cpu_pct=70, tolerance=0.1)) == want
