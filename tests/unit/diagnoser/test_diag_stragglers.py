"""Stragglers (Fig. 11): AutoDiagn's perf * 1.5 < median rule and the robust MAD variant."""

from __future__ import annotations

import pytest
from diag_traces import T0

from diagnoser.stragglers import (
    autodiagn_stragglers,
    node_rates,
    node_stragglers,
    robust_stragglers,
    stage_relative_node_stragglers,
)
from diagnoser.window import SparkTaskSample, build_window
from monitor.schema import SPARK_TASK

JITTER = [1.00, 0.98, 1.02, 0.99, 1.01, 0.97, 1.03, 1.00, 0.99, 1.02]


def tasks(durations, stage="1", records=None, nodes=None):
    nodes = nodes or [f"worker-{i % 3}" for i in range(len(durations))]
    return [SparkTaskSample(T0 + i, nodes[i], d, executor=str(i % 3), stage=stage,
                            input_records=None if records is None else records[i])
            for i, d in enumerate(durations)]


def test_uniform_tasks_have_no_straggler():
    uniform = tasks([200 * j for j in JITTER])
    assert autodiagn_stragglers(uniform) == []
    assert robust_stragglers(uniform) == []


def test_mad_floor_keeps_jitter_on_identical_tasks_from_being_stragglers():
    # MAD is 0 here: without the floor, 105 ms would be "infinitely many MADs" above 100 ms.
    assert robust_stragglers(tasks([100] * 9 + [105])) == []


def test_a_slow_task_is_flagged_with_its_node_by_both():
    durations = [200 * j for j in JITTER]
    durations[4] = 700
    ts = tasks(durations)
    (a,) = autodiagn_stragglers(ts)
    (r,) = robust_stragglers(ts)
    assert a.node == r.node == "worker-1"
    assert a.method == "autodiagn" and a.metric == "per_s" and a.observed * 1.5 < a.median
    assert r.method == "robust" and r.metric == "ms" and r.observed == 700 and r.peers == 10
    assert r.threshold < 700 and r.stage == "1"


def test_more_data_is_skew_not_a_straggler():
    durations = [200 * j for j in JITTER]
    records = [1000] * 10
    durations[2], records[2] = 600, 3000      # three times the input, three times the time
    ts = tasks(durations, records=records)
    assert autodiagn_stragglers(ts) == []     # records/s is the same
    assert robust_stragglers(ts) == []        # ms per record is the same


def test_slow_per_record_is_a_straggler_when_records_are_known():
    durations = [200 * j for j in JITTER]
    records = [1000] * 10
    durations[7] = 600                          # same input, three times the time
    (r,) = robust_stragglers(tasks(durations, records=records))
    assert r.metric == "ms_per_record" and r.node == "worker-1"


def test_peers_are_tasks_of_the_same_stage():
    short = tasks([100 * j for j in JITTER], stage="1")
    long = tasks([1000 * j for j in JITTER], stage="2")
    assert autodiagn_stragglers(short + long) == []
    assert robust_stragglers(short + long) == []
    # pooled across stages, AutoDiagn's median falls between the stages and every long task
    # becomes a "straggler"
    assert len(autodiagn_stragglers(short + long, by_stage=False)) == 10
    assert robust_stragglers(short + long, by_stage=False) == []


def test_robust_variant_needs_enough_peers():
    few = tasks([100, 100, 400])
    assert robust_stragglers(few) == []                     # 2 peers < min_peers 4
    assert [s.node for s in autodiagn_stragglers(few)] == ["worker-2"]   # AutoDiagn has no minimum
    assert [s.node for s in robust_stragglers(few, min_peers=2)] == ["worker-2"]


def test_node_stragglers_from_task_rates():
    ts = (tasks([100] * 6, nodes=["worker-0"] * 6, records=[500] * 6)
          + tasks([105] * 6, nodes=["worker-1"] * 6, records=[500] * 6)
          + tasks([300] * 6, nodes=["worker-2"] * 6, records=[500] * 6))
    rates = node_rates(ts)
    assert rates["worker-0"] == pytest.approx(5000.0)
    assert [s.node for s in node_stragglers(rates)] == ["worker-2"]
    assert [s.node for s in node_stragglers(rates, method="autodiagn")] == ["worker-2"]
    assert node_stragglers({"worker-0": 100.0, "worker-1": 97.0, "worker-2": 93.0}) == []
    assert node_stragglers({"worker-0": 100.0, "worker-1": 10.0}) == []   # 1 peer: no verdict


def test_stragglers_from_a_window_of_spark_task_points():
    points = [{"measurement": SPARK_TASK.name, "time": T0 + i,
               "tags": {"node": f"worker-{i % 2}", "executor": str(i % 2)},
               "fields": {"duration_ms": 900.0 if i == 3 else 150.0 + i, "run_ms": 140.0,
                          "stage": 5}}
              for i in range(8)]
    w = build_window(points, active={"processing": 2})
    assert [(s.node, s.stage) for s in robust_stragglers(w.tasks)] == [("worker-1", "5")]


def _stage(stage, per_node, records=None):
    """One stage: {node: duration_ms}, one task per node (the live job's shape)."""
    return [SparkTaskSample(T0, node, d, stage=stage,
                            input_records=None if records is None else records)
            for node, d in per_node.items()]


# Three ingest stages of a live window (worker-2 had a busy loop in its container), plus the
# short shuffle stages around them, as recorded from the Spark REST API on this machine.
LIVE = (_stage("66", {"worker-0": 644, "worker-1": 1268, "worker-2": 1888}, records=1000)
        + _stage("71", {"worker-1": 707, "worker-0": 923, "worker-2": 1403}, records=1000)
        + _stage("76", {"worker-0": 645, "worker-1": 931, "worker-2": 1419}, records=1000)
        + _stage("67", {"worker-0": 376, "worker-1": 202, "worker-2": 104})
        + _stage("68", {"worker-0": 32, "worker-2": 90}))


def test_stage_relative_flags_the_node_slow_on_the_same_stages():
    (s,) = stage_relative_node_stragglers(LIVE)
    assert (s.node, s.method, s.peers) == ("worker-2", "stage_relative", 3)
    assert s.observed == pytest.approx(1.5, abs=0.02)      # 1.5x its stages' medians
    assert s.observed > s.threshold == pytest.approx(1.5 * s.median)
    # the task-level rule cannot judge three-task stages; this is why the node rule exists
    assert robust_stragglers(LIVE) == []


def test_stage_relative_ignores_which_stages_a_node_happened_to_run():
    # worker-2 ran only the long stage, at the same speed as the others: no straggler, though
    # its tasks per busy second are far below the others'
    mix = (_stage("1", {"worker-0": 3000, "worker-2": 3050}) + _stage("2", {"worker-0": 200,
                                                                          "worker-1": 210})
           + _stage("3", {"worker-1": 205, "worker-0": 198}) + _stage("4", {"worker-2": 2950,
                                                                          "worker-1": 3010}))
    assert stage_relative_node_stragglers(mix) == []


def test_stage_relative_needs_peers_real_stages_and_enough_tasks():
    one_node = _stage("1", {"worker-0": 900}) + _stage("2", {"worker-0": 100})
    assert stage_relative_node_stragglers(one_node) == []
    jitter = _stage("1", {"worker-0": 10, "worker-1": 40}) + _stage("2", {"worker-0": 12,
                                                                         "worker-1": 45})
    assert stage_relative_node_stragglers(jitter) == []                   # under 100 ms
    assert [s.node for s in stage_relative_node_stragglers(jitter, min_stage_ms=0)] == [
        "worker-1"]
    two = _stage("1", {"worker-0": 400, "worker-1": 1200})
    assert stage_relative_node_stragglers(two) == []                      # one task each
    assert [s.node for s in stage_relative_node_stragglers(two, min_tasks=1)] == ["worker-1"]


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="factor"):
        autodiagn_stragglers([], factor=1.0)
    with pytest.raises(ValueError, match="min_peers"):
        robust_stragglers([], min_peers=0)
    with pytest.raises(ValueError, match="method"):
        node_stragglers({}, method="zscore")
    with pytest.raises(ValueError, match="factor"):
        stage_relative_node_stragglers([], factor=1)
