"""Straggler frequency per worker count (Fig. 8) from task samples: windows and counts."""

from __future__ import annotations

import pytest

from bench.straggler_rate import StragglerRate, straggler_rate, windows_of
from diagnoser.window import SparkTaskSample

T0 = 1_700_000_000.0


def task(t: float, node: str, ms: float, stage: str = "7", records: float = 100.0
         ) -> SparkTaskSample:
    return SparkTaskSample(T0 + t, node, ms, executor=node, stage=stage, input_records=records)


def test_windows_are_consecutive_from_the_first_task_and_skip_empty_ones():
    tasks = [task(t, "w0", 100) for t in (0, 59.9, 60, 200)]
    wins = windows_of(reversed(tasks), 60)
    assert [[round(x.time - T0, 1) for x in w] for w in wins] == [[0, 59.9], [60], [200]]
    with pytest.raises(ValueError, match="window_s"):
        windows_of(tasks, 0)


def test_one_slow_task_of_a_stage_is_counted_once_per_window():
    # Six tasks of one stage, one twice as slow per record: AutoDiagn and the robust rule flag
    # it. In the next window, a stage of uniform tasks flags nothing.
    slow = [task(i, "w0", 100) for i in range(5)] + [task(5, "w0", 250)]
    calm = [task(70 + i, "w0", 100, stage="8") for i in range(6)]
    r = straggler_rate(1, slow + calm, window_s=60)
    assert r == StragglerRate(1, 12, 2, 1, 1, None)
    assert r.autodiagn_share == round(1 / 12, 4) and r.as_row()["node_windows"] is None


def test_a_slow_worker_shows_as_a_node_window_with_two_workers():
    tasks = []
    for stage in range(4):
        tasks += [task(stage, "w0", 200, stage=str(stage)), task(stage, "w1", 600,
                                                                  stage=str(stage))]
    r = straggler_rate(2, tasks, window_s=60)
    assert r.node_windows == 1 and r.tasks == 8


def test_no_tasks_no_share():
    r = straggler_rate(3, [])
    assert (r.tasks, r.windows, r.autodiagn_share, r.robust_share) == (0, 0, None, None)
