"""Paper mode is Alg. 2 as published: the full truth table of lines 9-29, and its behaviour on
windows (instantaneous, CPU AND memory, ignores min_active, up and down together)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from diag_traces import T0, idle, spark_behind, window_at

from diagnoser.labels import RcaLabel
from diagnoser.paper import CC, CL, PaperThresholds, alg2_label, diagnose_paper

UP_CL, UP_CC = RcaLabel.UP_PROCESSING, RcaLabel.UP_QUEUE
DOWN_CL, DOWN_CC = RcaLabel.DOWN_PROCESSING, RcaLabel.DOWN_QUEUE
NONE = RcaLabel.NO_ACTION

# Levels against the defaults CPU 20/85, memory 30/75:
# L = at/below the minimum, M = between, H = at/above the maximum.
CPU = {"L": 20.0, "M": 50.0, "H": 85.0}
MEM = {"L": 30.0, "M": 50.0, "H": 75.0}
TRUTH_TABLE = [
    # id  cpu  mem  label      (Alg. 2: CPU AND memory, each compared inclusively)
    (CL, "H", "H", UP_CL),
    (CL, "H", "M", NONE),
    (CL, "H", "L", NONE),
    (CL, "M", "H", NONE),
    (CL, "M", "M", NONE),
    (CL, "M", "L", NONE),
    (CL, "L", "H", NONE),
    (CL, "L", "M", NONE),
    (CL, "L", "L", DOWN_CL),
    (CC, "H", "H", UP_CC),
    (CC, "H", "M", NONE),
    (CC, "H", "L", NONE),
    (CC, "M", "H", NONE),
    (CC, "M", "M", NONE),
    (CC, "M", "L", NONE),
    (CC, "L", "H", NONE),
    (CC, "L", "M", NONE),
    (CC, "L", "L", DOWN_CC),
]


@pytest.mark.parametrize(("pool_id", "cpu", "mem", "expected"), TRUTH_TABLE)
def test_alg2_truth_table(pool_id, cpu, mem, expected):
    assert alg2_label(pool_id, CPU[cpu], MEM[mem]) is expected


@pytest.mark.parametrize(("cpu", "mem", "expected"), [
    (85.0, 75.0, UP_CL),       # "equals and greater than"
    (84.99, 100.0, NONE),
    (100.0, 74.99, NONE),
    (20.0, 30.0, DOWN_CL),     # "equals and less than"
    (20.01, 0.0, NONE),
    (0.0, 30.01, NONE),
])
def test_alg2_boundaries_are_inclusive(cpu, mem, expected):
    assert alg2_label(CL, cpu, mem) is expected


def test_alg2_rejects_an_unknown_id():
    with pytest.raises(ValueError, match="id: must be CL or CC"):
        alg2_label("XX", 50, 50)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"cpu_min": 90.0}, "thresholds.cpu_min"),
    ({"mem_min": 80.0}, "thresholds.mem_min"),
    ({"cpu_max": 120.0}, "thresholds.cpu_max"),
    ({"mem_max": True}, "thresholds.mem_max"),
])
def test_thresholds_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PaperThresholds(**kwargs)


def test_window_uses_each_nodes_latest_sample_and_the_pool_mean():
    sc = replace(spark_behind(), workers={"worker-0": (95.0, 80.0), "worker-1": (90.0, 76.0)})
    (d,) = diagnose_paper(window_at(T0, sc))
    assert d.label is UP_CL and d.mode == "paper" and d.rule == "alg2_up_cl"
    assert d.nodes == ("worker-0", "worker-1")          # hottest first
    cpu, mem = d.evidence
    assert (cpu.metric, cpu.observed, cpu.threshold) == ("node.cpu", 92.5, 85.0)
    assert (mem.metric, mem.observed, mem.threshold) == ("node.memory", 78.0, 75.0)


def test_hot_cpu_with_moderate_memory_is_no_action_in_paper_mode():
    # Spark at 96 % CPU but 72 % memory: the paper's AND says nothing is wrong.
    assert [d.label for d in diagnose_paper(window_at(T0, spark_behind()))] == [NONE]


def test_paper_mode_emits_up_and_down_together_in_alg2_order():
    sc = replace(idle(), workers={"worker-0": (90.0, 80.0)})
    out = diagnose_paper(window_at(T0, sc))
    assert [d.label for d in out] == [UP_CL, DOWN_CC]


def test_paper_mode_ignores_min_active():
    sc = replace(idle(), workers={"worker-0": (5.0, 20.0)}, channels={"channel-0": (5.0, 20.0)},
                 active={"processing": 1, "queue": 1})
    out = diagnose_paper(window_at(T0, sc))
    assert [d.label for d in out] == [DOWN_CL, DOWN_CC]
    assert all(d.active == 1 for d in out)   # the orchestrator has to refuse it


def test_no_node_samples_is_no_action():
    sc = replace(idle(), workers={}, channels={})
    (d,) = diagnose_paper(window_at(T0, sc))
    assert d.label is NONE and d.evidence == ()
