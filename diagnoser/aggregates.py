"""Reduce a window to the numbers the rules compare: per entity over time, then across entities.

An *entity* is what a series belongs to: a node (``node.*``), a queue of a channel
(``queue.*``, ``channel-0/vpp.telemetry.pv``), a stream of a channel (``stream.*``) or a
streaming query (``progress.*``). Ties are broken by entity name so a reading never depends on
the order points came back from InfluxDB.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from .rules import Signal
from .window import MetricsWindow

Series = list[tuple[float, float]]


@dataclass(frozen=True)
class Reading:
    value: float | None          # None: the window holds no data for the metric
    entity: str | None = None    # who produced `value` (argmax/argmin), if anyone in particular
    node: str | None = None      # the node behind `entity`, when there is one
    node_pool: str | None = None


def over_time(series: Series, how: str) -> float | None:
    """One entity's samples reduced to one number. ``slope`` is the least-squares trend in
    units per second: it says "growing" from the whole window, not from its two noisiest ends."""
    if not series:
        return None
    values = [v for _, v in series]
    if how == "last":
        return max(series, key=lambda tv: tv[0])[1]
    if how == "mean":
        return fmean(values)
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    if how == "p95":
        ranked = sorted(values)
        return ranked[max(0, math.ceil(0.95 * len(ranked)) - 1)]   # nearest rank
    if how == "slope":
        return _slope(series)
    raise ValueError(f"over_time: unknown reduction {how!r}")


def _slope(series: Series) -> float | None:
    if len(series) < 2:
        return None
    t0 = series[0][0]   # centre on the first time: epoch seconds squared lose precision
    ts = [t - t0 for t, _ in series]
    vs = [v for _, v in series]
    tm, vm = fmean(ts), fmean(vs)
    var = sum((t - tm) ** 2 for t in ts)
    if var == 0:
        return None
    return sum((t - tm) * (v - vm) for t, v in zip(ts, vs, strict=True)) / var


def across(values: dict[str, float], how: str) -> tuple[float | None, str | None]:
    """Entities combined; the entity returned is the one that stands out (largest, or smallest
    for ``min``), e.g. the hottest worker for ``across: max``."""
    if not values:
        return None, None
    ordered = sorted(values.items())
    top = max(ordered, key=lambda kv: kv[1])
    if how == "max":
        return top[1], top[0]
    if how == "min":
        low = min(ordered, key=lambda kv: kv[1])
        return low[1], low[0]
    if how == "mean":
        return fmean(values.values()), top[0]
    if how == "sum":
        return math.fsum(values.values()), top[0]
    raise ValueError(f"across: unknown combination {how!r}")


def series(window: MetricsWindow, signal: Signal, rule_pool: str
           ) -> dict[str, tuple[str | None, str | None, Series]]:
    """entity -> (node, node's pool, [(time, value)]) for the signal's metric."""
    out: dict[str, tuple[str | None, str | None, Series]] = {}
    grouped: dict[str, Series] = defaultdict(list)
    owner: dict[str, tuple[str | None, str | None]] = {}
    family, name = signal.family, signal.field
    if family == "node":
        pool = signal.pool or rule_pool
        for s in window.pool_nodes(pool):
            value = getattr(s, name)
            if value is not None:
                grouped[s.node].append((s.time, value))
                owner[s.node] = (s.node, pool)
    elif family == "queue":
        for q in window.queues:
            value = getattr(q, name)
            if value is not None:
                key = f"{q.node}/{q.queue}"
                grouped[key].append((q.time, value))
                owner[key] = (q.node, "queue")   # a queue's node tag is its channel
    elif family == "stream":
        for lag in window.stream_lag:
            value = getattr(lag, name)
            if value is not None:
                key = f"{lag.node}/{lag.stream}"
                grouped[key].append((lag.time, value))
                owner[key] = (lag.node, "queue")
    elif family == "progress":
        for p in window.stream_progress:
            value = getattr(p, name)
            if value is not None:
                grouped[p.query].append((p.time, value))
                owner[p.query] = (None, None)
    else:
        raise ValueError(f"metric: family {family!r} has no per-entity series")
    for key, points in grouped.items():
        points.sort(key=lambda tv: tv[0])
        out[key] = (*owner[key], points)
    return out


def read(window: MetricsWindow, signal: Signal, rule_pool: str) -> Reading:
    if signal.family == "pool":
        return _pool_reading(window, signal, rule_pool)
    per_entity = series(window, signal, rule_pool)
    reduced = {k: v for k, (_, _, pts) in per_entity.items()
               if (v := over_time(pts, signal.over_time)) is not None}
    value, entity = across(reduced, signal.across)
    if entity is None:
        return Reading(value)
    node, node_pool, _ = per_entity[entity]
    return Reading(value, entity, node, node_pool)


def _pool_reading(window: MetricsWindow, signal: Signal, rule_pool: str) -> Reading:
    if signal.field != "cpu_after_scale_down":
        raise ValueError(f"metric: unknown pool metric {signal.metric!r}")
    pool = signal.pool or rule_pool
    active = window.active.get(pool)
    cpu = Signal("node.cpu", signal.op, signal.enter, signal.exit, signal.over_time, "sum", pool)
    total, _ = across(
        {k: v for k, (_, _, pts) in series(window, cpu, pool).items()
         if (v := over_time(pts, signal.over_time)) is not None},
        "sum",
    )
    # Quotas are equal within a pool (infra/topology.yaml), so CPU percentages add up: the load
    # of `active` nodes spread over one fewer. Undefined when the pool cannot lose a node.
    if total is None or active is None or active <= 1:
        return Reading(None)
    return Reading(total / (active - 1), entity=pool)


def rank_nodes(window: MetricsWindow, pool: str, hottest_first: bool) -> tuple[str, ...]:
    """The pool's reporting nodes by mean CPU over the window (then memory, then name)."""
    cpu: dict[str, list[float]] = defaultdict(list)
    mem: dict[str, list[float]] = defaultdict(list)
    for s in window.pool_nodes(pool):
        cpu[s.node].append(s.cpu)
        mem[s.node].append(s.memory)
    keyed: Sequence[tuple[float, float, str]] = sorted(
        ((fmean(cpu[n]), fmean(mem[n]), n) for n in cpu), reverse=hottest_first)
    return tuple(n for _, _, n in keyed)
