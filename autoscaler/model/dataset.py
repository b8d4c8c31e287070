"""(features, labels) rows from metric history, simulated or real, grouped by run.

**Labels come from capacity, not from thresholds.** For a time ``t`` the label is the paper's
R_tot^req: per pool, the smallest node count within ``min_active..max_active`` whose sustained
rate (``capacity.yaml``) covers, Flink-autoscaler style,

    required rate = backlog(t) / catch_up_s
                    + mean offered rate over [t, t + horizon_s] / utilisation_target

i.e. the forthcoming workload with head-room, plus draining what is already queued within the
catch-up time. The backlog of the queue pool is what waits in front of the channels (readings
the gateways could not publish); that of the processing pool is everything not yet processed
(stream lag plus the ingress backlog, which will reach Spark once the channels take it). Both
pools are sized for the *offered* rate: the workload does not shrink because a channel is full.

The offered rate and backlogs come from a :class:`LoadTrace`: the simulator's truth, or for real
history :func:`trace_from_window` (stream lag and the channels' publish rate). A saturated channel
hides demand (it publishes only what it can), so for real history pass ``offered=`` from the
scenario timeline or the gateways when you have it; without it the queue labels are a lower
bound during saturation.

Features of a row are computed from the window ``[t - window_s, t]`` with
:func:`autoscaler.features.extract`, exactly as the orchestrator computes them live.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import numpy as np

from autoscaler.features import (
    BUCKET_S,
    FEATURE_NAMES,
    TELEMETRY_PREFIX,
    WINDOW_S,
    FeatureVector,
    extract,
)
from autoscaler.model.capacity import Capacity, RequiredCounts
from diagnoser.window import MetricsWindow, build_window
from infra.topology import SCALABLE_POOLS, PoolPolicy

EVERY_S = 10.0        # one row per evaluation interval


@dataclass(frozen=True)
class LabelConfig:
    horizon_s: float = 60.0            # "forthcoming": the next minute of offered load
    utilisation_target: float = 0.8    # head-room, like Flink's target utilisation
    catch_up_s: float = 120.0          # drain the current backlog within this long

    def __post_init__(self) -> None:
        if not self.horizon_s > 0:
            raise ValueError(f"labels.horizon_s: must be > 0, got {self.horizon_s!r}")
        if not 0 < self.utilisation_target <= 1:
            raise ValueError(f"labels.utilisation_target: must be within (0, 1], got "
                             f"{self.utilisation_target!r}")
        if not self.catch_up_s > 0:
            raise ValueError(f"labels.catch_up_s: must be > 0, got {self.catch_up_s!r}")

    def required_rate(self, offered: float, backlog: float) -> float:
        return max(0.0, backlog) / self.catch_up_s + max(0.0, offered) / self.utilisation_target


DEFAULT_LABELS = LabelConfig()


@dataclass(frozen=True)
class LoadTrace:
    """What the labels need, sampled in time order (epoch seconds): the offered rate
    (readings/s), the readings waiting in front of the channels and those not yet processed by
    Spark (the stream lag; ``processing_backlog`` adds the ingress backlog)."""

    times: tuple[float, ...]
    offered: tuple[float, ...]
    ingress_backlog: tuple[float, ...]
    stream_backlog: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.times)
        for name in ("offered", "ingress_backlog", "stream_backlog"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"trace.{name}: {len(getattr(self, name))} values for {n} times")
        if any(b < a for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError("trace.times: must be in time order")

    @property
    def start(self) -> float:
        return self.times[0]

    @property
    def end(self) -> float:
        return self.times[-1]

    def _at(self, t: float) -> int | None:
        i = bisect.bisect_right(self.times, t) - 1
        return i if i >= 0 else None

    def backlogs_at(self, t: float) -> tuple[float, float] | None:
        """(ingress, processing) backlog at ``t``: the newest sample at or before it."""
        i = self._at(t)
        if i is None:
            return None
        return self.ingress_backlog[i], self.ingress_backlog[i] + self.stream_backlog[i]

    def offered_over(self, t: float, horizon_s: float) -> float | None:
        """Mean offered rate over ``[t, t + horizon_s)``; None unless the trace covers it."""
        if not self.times or self.end < t + horizon_s - self._step():
            return None
        lo = bisect.bisect_left(self.times, t)
        hi = bisect.bisect_left(self.times, t + horizon_s)
        values = self.offered[lo:hi]
        return fmean(values) if values else None

    def _step(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (self.end - self.start) / (len(self.times) - 1)


def label_at(trace: LoadTrace, t: float, capacity: Capacity, pools: Mapping[str, PoolPolicy],
             config: LabelConfig = DEFAULT_LABELS) -> RequiredCounts | None:
    """The required counts at ``t``, or None when the trace does not cover ``t`` plus the
    horizon (the end of a run has no forthcoming workload to size)."""
    offered = trace.offered_over(t, config.horizon_s)
    backlogs = trace.backlogs_at(t)
    if offered is None or backlogs is None:
        return None
    counts = {}
    for pool, backlog in zip(SCALABLE_POOLS, backlogs, strict=True):
        policy = pools[pool]
        counts[pool] = capacity.pool(pool).nodes_for(
            config.required_rate(offered, backlog), policy.min_active, policy.max_active)
    return RequiredCounts(**counts)


# ---------------------------------------------------------------------------------------------
# windows over a long history


@dataclass(frozen=True)
class History:
    """Every sample of a run, parsed once (``build_window`` over all points); :meth:`window`
    slices it in O(log n) so a row every 10 s over hours of history stays cheap."""

    whole: MetricsWindow
    _times: Mapping[str, tuple[float, ...]] = field(repr=False, compare=False)

    @classmethod
    def of(cls, whole: MetricsWindow) -> History:
        times = {kind: tuple(s.time for s in getattr(whole, kind))
                 for kind in ("nodes", "queues", "stream_lag", "stream_progress", "tasks")}
        return cls(whole, times)

    @classmethod
    def from_points(cls, points: Iterable[Mapping[str, Any]], *,
                    pool_of: Mapping[str, str] | None = None, time_unit: str = "s",
                    on_error: str = "raise") -> History:
        return cls.of(build_window(points, active={}, pool_of=pool_of, time_unit=time_unit,
                                   on_error=on_error))

    def window(self, start: float, end: float, active: Mapping[str, int]) -> MetricsWindow:
        def cut(kind: str) -> tuple[Any, ...]:
            ts = self._times[kind]
            return getattr(self.whole, kind)[bisect.bisect_left(ts, start):
                                             bisect.bisect_right(ts, end)]
        return MetricsWindow(start=start, end=end, nodes=cut("nodes"), queues=cut("queues"),
                             stream_lag=cut("stream_lag"), stream_progress=cut("stream_progress"),
                             tasks=cut("tasks"), active=dict(active))

    def reporting(self, t: float, within_s: float = 2 * BUCKET_S) -> dict[str, int]:
        """Nodes per pool that reported in ``[t - within_s, t]``: the active count of real
        history (a dormant node sends nothing) when no decision log says better."""
        seen: dict[str, set[str]] = defaultdict(set)
        for s in self.window(t - within_s, t, {}).nodes:
            seen[s.pool].add(s.node)
        return {pool: len(seen.get(pool, ())) for pool in SCALABLE_POOLS}


def trace_from_window(whole: MetricsWindow, *, bucket_s: float = BUCKET_S,
                      offered: Sequence[tuple[float, float]] | None = None,
                      telemetry_prefix: str = TELEMETRY_PREFIX) -> LoadTrace:
    """A :class:`LoadTrace` from real history: per ``bucket_s`` the summed stream lag of the
    telemetry streams (processing backlog), and the offered rate from ``offered`` ((time,
    readings/s) pairs, e.g. a scenario timeline; step-interpolated) or else the channels'
    summed publish rate. The ingress backlog is not observable in InfluxDB: 0."""
    if whole.end <= whole.start:
        raise ValueError("history: needs a time span to build a load trace")
    n = math.floor((whole.end - whole.start) / bucket_s) + 1
    times = tuple(whole.start + i * bucket_s for i in range(n))

    def bucketed(samples: Iterable[tuple[str, float, float]]) -> list[float | None]:
        per: list[dict[str, list[float]]] = [defaultdict(list) for _ in range(n)]
        for entity, t, v in samples:
            i = min(n - 1, max(0, math.floor((t - whole.start) / bucket_s)))
            per[i][entity].append(v)
        return [math.fsum(fmean(v) for v in b.values()) if b else None for b in per]

    lag = _fill(bucketed((f"{s.node}/{s.stream}", s.time, s.lag) for s in whole.stream_lag
                         if s.stream.startswith(telemetry_prefix)))
    if offered is not None:
        pts = sorted((float(t), float(r)) for t, r in offered)
        if not pts:
            raise ValueError("offered: empty; pass None to use the publish rate")
        ts = [t for t, _ in pts]
        rates = [pts[max(0, bisect.bisect_right(ts, t) - 1)][1] for t in times]
    else:
        rates = _fill(bucketed((f"{q.node}/{q.queue}", q.time, q.publish_rate)
                               for q in whole.queues
                               if q.queue.startswith(telemetry_prefix)
                               and q.publish_rate is not None))
    return LoadTrace(times, tuple(rates), tuple(0.0 for _ in times), tuple(lag))


def _fill(values: list[float | None]) -> list[float]:
    """Carry the last known value over buckets without a sample (0 before the first)."""
    out, last = [], 0.0
    for v in values:
        last = last if v is None else v
        out.append(last)
    return out


# ---------------------------------------------------------------------------------------------
# rows and datasets


@dataclass(frozen=True)
class Row:
    run_id: str
    time: float
    features: FeatureVector
    required: RequiredCounts


@dataclass(frozen=True)
class Dataset:
    rows: tuple[Row, ...]
    feature_names: tuple[str, ...] = FEATURE_NAMES
    rejected_points: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def X(self, names: Sequence[str] | None = None) -> np.ndarray:
        """Feature matrix, all features or the columns ``names`` (in that order)."""
        full = np.array([r.features.values for r in self.rows], dtype=float).reshape(
            len(self.rows), len(self.feature_names))
        if names is None:
            return full
        index = {n: i for i, n in enumerate(self.feature_names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise KeyError(f"dataset: unknown features {missing}")
        return full[:, [index[n] for n in names]]

    def y(self, pool: str) -> np.ndarray:
        return np.array([r.required.of(pool) for r in self.rows], dtype=int)

    def groups(self) -> np.ndarray:
        return np.array([r.run_id for r in self.rows])

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(sorted({r.run_id for r in self.rows}))

    def time_range(self) -> tuple[float, float] | None:
        if not self.rows:
            return None
        return min(r.time for r in self.rows), max(r.time for r in self.rows)

    def class_counts(self, pool: str) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        for r in self.rows:
            counts[r.required.of(pool)] += 1
        return dict(sorted(counts.items()))

    def __add__(self, other: Dataset) -> Dataset:
        if other.feature_names != self.feature_names:
            raise ValueError("dataset: feature names differ")
        return Dataset(self.rows + other.rows, self.feature_names,
                       self.rejected_points + other.rejected_points)


ActiveAt = Callable[[float], Mapping[str, int]]


def rows_from_history(history: History, trace: LoadTrace, *, run_id: str, capacity: Capacity,
                      pools: Mapping[str, PoolPolicy], active_at: ActiveAt | None = None,
                      window_s: float = WINDOW_S, every_s: float = EVERY_S,
                      labels: LabelConfig = DEFAULT_LABELS) -> list[Row]:
    """One row every ``every_s`` from ``start + window_s`` (a full first window) to the last
    time that still has a labelled horizon. ``active_at(t)`` gives the active counts (the
    simulator's schedule, or the orchestrator's decision log); default: nodes that reported."""
    if not window_s > 0 or not every_s > 0:
        raise ValueError(f"window_s/every_s: must be > 0, got {window_s!r}/{every_s!r}")
    rows = []
    t = history.whole.start + window_s
    end = min(history.whole.end, trace.end)
    while t <= end + 1e-9:
        required = label_at(trace, t, capacity, pools, labels)
        if required is not None:
            active = dict(active_at(t)) if active_at else history.reporting(t)
            window = history.window(t - window_s, t, active)
            rows.append(Row(run_id, t, extract(window, now=t, active=active), required))
        t += every_s
    return rows


def rows_from_points(points: Iterable[Mapping[str, Any]], *, run_id: str, capacity: Capacity,
                     pools: Mapping[str, PoolPolicy], trace: LoadTrace | None = None,
                     offered: Sequence[tuple[float, float]] | None = None,
                     active_at: ActiveAt | None = None, pool_of: Mapping[str, str] | None = None,
                     window_s: float = WINDOW_S, every_s: float = EVERY_S,
                     labels: LabelConfig = DEFAULT_LABELS, time_unit: str = "s",
                     on_error: str = "raise") -> tuple[list[Row], int]:
    """Rows of one run from InfluxDB-style points (what ``diagnoser.window.build_window``
    reads). Without ``trace`` the load trace comes from the points (:func:`trace_from_window`).
    Returns the rows and the number of points rejected (``on_error="skip"``)."""
    history = History.from_points(points, pool_of=pool_of, time_unit=time_unit,
                                  on_error=on_error)
    if trace is None:
        if history.whole.end - history.whole.start < window_s:
            # A run shorter than one window (a lone sample between gaps) has no row to give.
            return [], len(history.whole.rejected)
        trace = trace_from_window(history.whole, offered=offered)
    rows = rows_from_history(history, trace, run_id=run_id, capacity=capacity, pools=pools,
                             active_at=active_at, window_s=window_s, every_s=every_s,
                             labels=labels)
    return rows, len(history.whole.rejected)


def split_runs(points: Sequence[Mapping[str, Any]], *, gap_s: float = 120.0,
               group_s: float = 1800.0, time_unit: str = "s") -> dict[str, list[Mapping[str, Any]]]:
    """Real history as runs for grouped evaluation: a new run after ``gap_s`` without any
    point (platform down), and every ``group_s`` within a long stretch, so neighbouring rows,
    which share most of their window, never land on both sides of a train/test split."""
    from diagnoser.window import to_epoch_s

    timed = sorted(((to_epoch_s(p.get("time"), time_unit), i) for i, p in enumerate(points)),
                   key=lambda ti: ti)
    runs: dict[str, list[Mapping[str, Any]]] = {}
    run, run_start, last = 0, None, None
    for t, i in timed:
        if last is not None and t - last > gap_s:
            run, run_start = run + 1, None
        if run_start is None:
            run_start = t
        elif t - run_start >= group_s:
            run, run_start = run + 1, t
        runs.setdefault(f"history-{run:03d}", []).append(points[i])
        last = t
    return runs
