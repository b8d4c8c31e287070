"""Stragglers (Fig. 11): a task, or a node, much slower than its peers.

Two detectors over ``spark_task`` samples (``MetricsWindow.tasks``), both pure:

* :func:`autodiagn_stragglers` — AutoDiagn's rule as published: a task is a straggler when
  ``perf * 1.5 < median(perf)`` among its peers, with ``perf`` = records/s (or 1/duration when
  records are unknown).
* :func:`robust_stragglers` — duration against ``median + k * MAD``. It refuses to judge a
  group that is too small, normalises by input records so a task that was given more data
  (skew) is not called slow, and puts a floor under the MAD so that uniform tasks, whose MAD is
  ~0, do not turn millisecond jitter into stragglers.

Peers are the tasks of the same stage: tasks of different stages do different work. Node-level
variants compare per-node processing rates (records/s) the same two ways, and
:func:`stage_relative_node_stragglers` compares nodes like with like: each task against its own
stage's median, then each node's typical slowness against its peers' (AutoDiagn's 1.5 factor).
On the live job (three tasks per stage, one per worker) that is the only comparison with
enough peers, and it does not mistake a node that happened to run the long stages for a slow one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import median

from .window import SparkTaskSample

MAD_TO_SIGMA = 1.4826   # MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True)
class Straggler:
    node: str
    method: str            # "autodiagn" or "robust"
    metric: str            # what was compared: records_per_s, per_s, ms, ms_per_record
    observed: float
    median: float
    threshold: float       # the straggler side of this line is slow
    peers: int             # size of the group it was compared with, itself included
    stage: str = ""
    executor: str = ""
    time: float | None = None   # the task's sample time; None for a node-level straggler


def _groups(tasks: Iterable[SparkTaskSample], by_stage: bool
            ) -> dict[str, list[SparkTaskSample]]:
    groups: dict[str, list[SparkTaskSample]] = defaultdict(list)
    for t in tasks:
        if t.duration_ms > 0:   # a zero-length task has no speed to compare
            groups[t.stage if by_stage else ""].append(t)
    return dict(sorted(groups.items()))


def _with_records(group: list[SparkTaskSample]) -> bool:
    # Mixing records/s with 1/s in one median is meaningless: use records only if all have them.
    return all(t.input_records is not None and t.input_records > 0 for t in group)


def autodiagn_stragglers(tasks: Iterable[SparkTaskSample], *, factor: float = 1.5,
                         by_stage: bool = True) -> list[Straggler]:
    """AutoDiagn: straggler when ``perf * factor < median perf`` (no minimum group size)."""
    if factor <= 1:
        raise ValueError(f"factor: must be > 1, got {factor}")
    out: list[Straggler] = []
    for stage, group in _groups(tasks, by_stage).items():
        records = _with_records(group)
        perf = [((t.input_records or 0) if records else 1.0) / (t.duration_ms / 1000)
                for t in group]
        med = median(perf)
        for t, p in zip(group, perf, strict=True):
            if p * factor < med:
                out.append(Straggler(t.node, "autodiagn", "records_per_s" if records else "per_s",
                                     p, med, med / factor, len(group), stage, t.executor, t.time))
    return out


def robust_stragglers(tasks: Iterable[SparkTaskSample], *, k: float = 3.0, min_peers: int = 4,
                      rel_floor: float = 0.1, min_excess_ms: float = 50.0,
                      by_stage: bool = True) -> list[Straggler]:
    """Straggler when its cost (ms, or ms per record) exceeds ``median + k * spread``.

    ``spread`` is the MAD scaled to a standard deviation, but at least ``rel_floor * median``;
    a group needs ``min_peers`` other tasks; and the task must be at least ``min_excess_ms``
    slower than a median task would have been with its input (scheduler jitter is ~10 ms).
    """
    if k <= 0 or min_peers < 1 or rel_floor < 0 or min_excess_ms < 0:
        raise ValueError("k: must be > 0, min_peers >= 1, rel_floor >= 0, min_excess_ms >= 0")
    out: list[Straggler] = []
    for stage, group in _groups(tasks, by_stage).items():
        if len(group) - 1 < min_peers:
            continue
        records = _with_records(group)
        cost = [t.duration_ms / (t.input_records or 1.0) if records else t.duration_ms
                for t in group]
        med = median(cost)
        spread = max(MAD_TO_SIGMA * median(abs(c - med) for c in cost), rel_floor * med)
        line = med + k * spread
        for t, c in zip(group, cost, strict=True):
            expected_ms = med * (t.input_records or 1.0) if records else med
            if c > line and t.duration_ms - expected_ms >= min_excess_ms:
                out.append(Straggler(t.node, "robust", "ms_per_record" if records else "ms",
                                     c, med, line, len(group), stage, t.executor, t.time))
    return out


def node_rates(tasks: Iterable[SparkTaskSample]) -> dict[str, float]:
    """Per node: records per second of task time (tasks per second if any task lacks records).
    Busy time, not wall time, so a node that got fewer tasks is not mistaken for a slow one."""
    by_node: dict[str, list[SparkTaskSample]] = defaultdict(list)
    for t in tasks:
        if t.duration_ms > 0:
            by_node[t.node].append(t)
    records = all(_with_records(g) for g in by_node.values())
    rates = {}
    for node, group in sorted(by_node.items()):
        busy_s = sum(t.duration_ms for t in group) / 1000
        work = sum(t.input_records or 0 for t in group) if records else len(group)
        rates[node] = work / busy_s
    return rates


def node_stragglers(rates: Mapping[str, float], *, method: str = "robust",
                    factor: float = 1.5, k: float = 3.0, min_peers: int = 2,
                    rel_floor: float = 0.1) -> list[Straggler]:
    """Nodes whose processing rate (records/s, from :func:`node_rates` or per-node processing
    rates) is far below their peers'. ``autodiagn``: ``rate * factor < median``; ``robust``:
    ``rate < median - k * spread`` with at least ``min_peers`` other nodes."""
    if method not in ("autodiagn", "robust"):
        raise ValueError(f"method: must be autodiagn or robust, got {method!r}")
    items = sorted((n, r) for n, r in rates.items() if r >= 0)
    if not items:
        return []
    med = median(r for _, r in items)
    if method == "autodiagn":
        line = med / factor
        slow = [(n, r) for n, r in items if r * factor < med]
    else:
        if len(items) - 1 < min_peers:
            return []
        spread = max(MAD_TO_SIGMA * median(abs(r - med) for _, r in items), rel_floor * med)
        line = med - k * spread
        slow = [(n, r) for n, r in items if r < line]
    return [Straggler(n, method, "rate", r, med, line, len(items)) for n, r in slow]


def stage_relative_node_stragglers(tasks: Iterable[SparkTaskSample], *, factor: float = 1.5,
                                   min_stage_ms: float = 100.0, min_tasks: int = 2
                                   ) -> list[Straggler]:
    """Nodes whose tasks are typically ``factor`` times slower than their peers' on the same
    stages.

    Each task's cost (ms per record when every task of its stage read records, else ms) is
    divided by its stage's median; stages run on a single node, or whose median task is under
    ``min_stage_ms`` (scheduling jitter, not work), are skipped. A node's slowness is the median
    of its ratios (at least ``min_tasks``); it is a straggler when that exceeds ``factor`` times
    the median slowness of the other nodes: AutoDiagn's ``perf * 1.5 < median`` with
    ``perf = 1 / slowness``. ``observed`` and ``median`` are those slownesses.
    """
    if factor <= 1 or min_stage_ms < 0 or min_tasks < 1:
        raise ValueError("factor: must be > 1, min_stage_ms >= 0, min_tasks >= 1")
    ratios: dict[str, list[float]] = defaultdict(list)
    for group in _groups(tasks, by_stage=True).values():
        if len({t.node for t in group}) < 2:
            continue
        records = _with_records(group)
        cost = [t.duration_ms / (t.input_records or 1.0) if records else t.duration_ms
                for t in group]
        med = median(cost)
        if med <= 0 or median(t.duration_ms for t in group) < min_stage_ms:
            continue
        for t, c in zip(group, cost, strict=True):
            ratios[t.node].append(c / med)
    slowness = {n: median(r) for n, r in sorted(ratios.items()) if len(r) >= min_tasks}
    out = []
    for node, slow in slowness.items():
        peers = [v for n, v in slowness.items() if n != node]
        if not peers:
            continue
        peer = median(peers)
        if slow > factor * peer:
            out.append(Straggler(node, "stage_relative", "x_stage_median", slow, peer,
                                 factor * peer, len(slowness)))
    return out
