"""Straggler frequency of the streaming job per active worker count (Fig. 8's middle panel).

The stream bench (``make bench-stream``) runs the same sweep with 1, 2 and 3 workers; the
collector stores every finished Spark task (``spark_task``). Here those tasks are cut into
consecutive windows of ``window_s`` (the diagnoser's window) and each window is judged with the
diagnoser's own detectors (``diagnoser.stragglers``):

* ``autodiagn``: AutoDiagn's rule as published, a task whose records/s times 1.5 is below its
  stage's median; it needs no minimum of peers, so it judges one worker too (its tasks of a
  stage against each other);
* ``robust``: median + 3 MAD over at least 5 tasks of a stage (what the diagnoser flags live);
* node level (``stage_relative_node_stragglers``): a worker whose tasks are typically 1.5 x
  slower than its peers' on the same stages; it needs two workers, so with one it is 0 by
  definition (reported as None).

The frequency is flagged tasks over tasks, per worker count. Pure except :func:`task_samples`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from diagnoser.stragglers import (
    autodiagn_stragglers,
    robust_stragglers,
    stage_relative_node_stragglers,
)
from diagnoser.window import SparkTaskSample, build_window
from infra.topology import Topology

WINDOW_S = 60.0


@dataclass(frozen=True)
class StragglerRate:
    workers: int
    tasks: int
    windows: int                       # windows with at least one task
    autodiagn_tasks: int               # tasks flagged by AutoDiagn's rule
    robust_tasks: int                  # tasks flagged by median + 3 MAD
    node_windows: int | None           # windows with a straggling worker (None: one worker)

    @property
    def autodiagn_share(self) -> float | None:
        return None if not self.tasks else round(self.autodiagn_tasks / self.tasks, 4)

    @property
    def robust_share(self) -> float | None:
        return None if not self.tasks else round(self.robust_tasks / self.tasks, 4)

    def as_row(self) -> dict[str, float | int | None]:
        return {f: getattr(self, f) for f in FIELDS}


# stragglers.csv's columns: the counts and, next to each, its share (a property).
FIELDS = ("workers", "tasks", "windows", "autodiagn_tasks", "autodiagn_share", "robust_tasks",
          "robust_share", "node_windows")


def windows_of(tasks: Iterable[SparkTaskSample], window_s: float = WINDOW_S
               ) -> list[list[SparkTaskSample]]:
    """Consecutive windows of ``window_s`` from the first task on; empty ones left out."""
    if window_s <= 0:
        raise ValueError(f"window_s: must be > 0, got {window_s}")
    ordered = sorted(tasks, key=lambda t: t.time)
    out: dict[int, list[SparkTaskSample]] = {}
    for t in ordered:
        out.setdefault(int((t.time - ordered[0].time) // window_s), []).append(t)
    return [out[k] for k in sorted(out)]


def straggler_rate(workers: int, tasks: Sequence[SparkTaskSample],
                   window_s: float = WINDOW_S) -> StragglerRate:
    auto = robust = node = 0
    wins = windows_of(tasks, window_s)
    for win in wins:
        auto += len(autodiagn_stragglers(win))
        robust += len(robust_stragglers(win))
        node += 1 if stage_relative_node_stragglers(win) else 0
    return StragglerRate(workers, len(tasks), len(wins), auto, robust,
                         node if workers > 1 else None)


def task_samples(topo: Topology, start: float, end: float) -> list[SparkTaskSample]:
    """Finished Spark tasks stored by the collector in [start, end] (epoch s)."""
    from monitor import history
    from monitor.schema import SPARK_TASK

    points = history.fetch(topo, {SPARK_TASK.name: SPARK_TASK.fields}, int(start * 1e9),
                           int(end * 1e9))
    window = build_window(points, active={}, start=int(start * 1e9), end=int(end * 1e9),
                          time_unit="ns", on_error="skip")
    return list(window.tasks)
