"""Evaluate step (collect -> **evaluate** -> decide -> realise): a metrics window to the flat,
named feature vector the resource model reads.

Pure: the same function runs on a window the service built from InfluxDB, on windows sliced
from exported history (``autoscaler.model.dataset``) and on simulated ones
(``autoscaler.model.simulate``), so a model trained on one is fed identically on the others.

What each feature is (``FEATURE_NAMES`` fixes the order; the tree sees them by position):

* ``{pool}_{cpu|mem}_{mean|max}_{last|mean}``: node CPU / memory (% of the node's own limit) of
  the pool; the first reduction is across nodes, the second over the window per node. So
  ``processing_cpu_max_mean`` is the hottest worker's mean CPU, ``queue_cpu_mean_last`` the mean
  over channels of each channel's latest sample (what Alg. 2 of the paper reads).
* ``{pool}_cpu_sum_mean``: sum over nodes of their mean CPU, the pool's load in "node-percent":
  it does not change when the same load is spread over one more node.
* ``queue_messages_*``, ``stream_lag_*``, ``publish_rate_*``, ``deliver_rate_*``: summed over the
  channels' telemetry queues / streams per time bucket (``bucket_s``, the agents' interval),
  then reduced over the buckets: ``last`` is the newest bucket, ``slope`` the least-squares
  trend per second (as ``diagnoser.aggregates.over_time``). Summing per bucket, not per channel
  over the window, keeps a channel woken mid-window from being counted at its full mean.
* ``input_rate_*``, ``processed_rate_*``: the streaming query that reads the channels
  (``source_query``, default ``ingest``); ``batch_duration_ms_*``: the slowest query's.
* ``active_queue``, ``active_processing``: active nodes now (argument, else
  ``window.active``, else the nodes that reported).
* ``tod_sin``, ``tod_cos``: time of day of ``now`` on the unit circle, so 23:59 is next to 00:00.

Missing data never becomes NaN: a pool with no node sample, a queue/stream/query without
points, or a trend from fewer than two buckets reads 0.0 (the conservative "nothing seen"), and
its name is listed in :attr:`FeatureVector.missing` so the caller can log that the model saw a
default. 0.0 also matches what the simulator writes for an idle system, so a default does not
push a decision tree into a region it never saw.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean

from diagnoser.aggregates import over_time
from diagnoser.window import MetricsWindow
from ingest.topology import TELEMETRY_EXCHANGE
from monitor.schema import PROCESSING, QUEUE, QUEUING, STREAM_LAG, STREAM_PROGRESS

# What the service queries for one evaluation, as measurement -> fields (the shape
# monitor.history.fetch takes), over the last WINDOW_S seconds, with every tag (GROUP BY *).
INPUTS: dict[str, tuple[str, ...]] = {
    PROCESSING.name: ("cpu", "memory"),
    QUEUING.name: ("cpu", "memory"),
    QUEUE.name: ("messages", "publish_rate", "deliver_rate"),
    STREAM_LAG.name: ("lag",),
    STREAM_PROGRESS.name: ("input_rate", "processed_rate", "batch_duration_ms"),
}
WINDOW_S = 60.0                  # = diagnoser/rules.yaml engine.window_s
POOL_FEATURES = ("queue", "processing")
SOURCE_QUERY = "ingest"          # spark_jobs.telemetry_job: the query that reads RabbitMQ
TELEMETRY_PREFIX = TELEMETRY_EXCHANGE   # vpp.telemetry.stream, ...: not the control plane
BUCKET_S = 10.0                  # the node agents' sample interval (Telegraf's 10 s)
DAY_S = 86_400.0


def _node_names(pool: str) -> tuple[str, ...]:
    out = []
    for metric in ("cpu", "mem"):
        for across in ("mean", "max"):
            for over in ("last", "mean"):
                out.append(f"{pool}_{metric}_{across}_{over}")
    out.append(f"{pool}_cpu_sum_mean")
    return tuple(out)


FEATURE_NAMES: tuple[str, ...] = (
    *_node_names("queue"),
    *_node_names("processing"),
    "queue_messages_last", "queue_messages_slope",
    "stream_lag_last", "stream_lag_mean", "stream_lag_slope",
    "publish_rate_last", "publish_rate_mean",
    "deliver_rate_last", "deliver_rate_mean",
    "input_rate_last", "input_rate_mean",
    "processed_rate_last", "processed_rate_mean",
    "batch_duration_ms_last", "batch_duration_ms_mean",
    "active_queue", "active_processing",
    "tod_sin", "tod_cos",
)
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
DEFAULT = 0.0


@dataclass(frozen=True)
class FeatureVector:
    """Values in ``FEATURE_NAMES`` order; ``missing`` names the features that took the default
    because the window had no data for them; ``time`` is the ``now`` they describe."""

    values: tuple[float, ...]
    time: float
    missing: tuple[str, ...] = ()
    names: tuple[str, ...] = FEATURE_NAMES

    def __post_init__(self) -> None:
        if len(self.values) != len(self.names):
            raise ValueError(f"values: {len(self.values)} values for {len(self.names)} names")
        for name, v in zip(self.names, self.values, strict=True):
            if not math.isfinite(v):
                raise ValueError(f"features.{name}: must be finite, got {v!r}")

    def __getitem__(self, name: str) -> float:
        try:
            return self.values[_INDEX[name] if self.names is FEATURE_NAMES
                               else self.names.index(name)]
        except (KeyError, ValueError):
            raise KeyError(f"unknown feature {name!r}") from None

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.values, strict=True))


# ---------------------------------------------------------------------------------------------
# reductions


def _bucketed_sum(samples: Iterable[tuple[str, float, float]], end: float, bucket_s: float
                  ) -> list[tuple[float, float]]:
    """(entity, time, value) -> [(bucket centre, sum over entities of their bucket mean)], oldest
    first. Buckets are aligned to the window's end so the newest one is always complete."""
    per: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for entity, t, v in samples:
        per[math.floor((end - t) / bucket_s)][entity].append(v)
    out = []
    for k in sorted(per, reverse=True):              # larger k = older
        total = math.fsum(fmean(vs) for vs in per[k].values())
        out.append((end - (k + 0.5) * bucket_s, total))
    return out


def _reduce(series: list[tuple[float, float]], how: str) -> float | None:
    return over_time(series, how) if series else None


def _node_features(window: MetricsWindow, pool: str, put) -> int:
    per_node: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for s in window.pool_nodes(pool):
        per_node[s.node].append((s.time, s.cpu, s.memory))
    for metric, col in (("cpu", 1), ("mem", 2)):
        last = [max(rows)[col] for rows in per_node.values()]     # max by time: newest
        mean = [fmean(r[col] for r in rows) for rows in per_node.values()]
        put(f"{pool}_{metric}_mean_last", fmean(last) if last else None)
        put(f"{pool}_{metric}_max_last", max(last) if last else None)
        put(f"{pool}_{metric}_mean_mean", fmean(mean) if mean else None)
        put(f"{pool}_{metric}_max_mean", max(mean) if mean else None)
        if metric == "cpu":
            put(f"{pool}_cpu_sum_mean", math.fsum(mean) if mean else None)
    return len(per_node)


def extract(window: MetricsWindow, *, now: float | None = None,
            active: Mapping[str, int] | None = None, source_query: str = SOURCE_QUERY,
            telemetry_prefix: str = TELEMETRY_PREFIX, bucket_s: float = BUCKET_S,
            tz_offset_s: float = 0.0) -> FeatureVector:
    """The feature vector of ``window`` at ``now`` (default: the window's end).

    ``active``: active node count per pool now (the orchestrator knows it; a dormant node sends
    nothing). ``telemetry_prefix`` keeps the control-plane and metrics queues, whose messages
    only grow with retention, out of the backlog features. ``tz_offset_s`` shifts UTC to the
    sites' local time for the time-of-day features.
    """
    if not bucket_s > 0:
        raise ValueError(f"bucket_s: must be > 0, got {bucket_s!r}")
    when = window.end if now is None else float(now)
    values: dict[str, float] = {}
    missing: list[str] = []

    def put(name: str, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            missing.append(name)
            value = DEFAULT
        values[name] = float(value)

    reporting = {pool: _node_features(window, pool, put) for pool in POOL_FEATURES}

    queues = [q for q in window.queues if q.queue.startswith(telemetry_prefix)]

    def queue_series(attr: str) -> list[tuple[float, float]]:
        return _bucketed_sum(((f"{q.node}/{q.queue}", q.time, v) for q in queues
                              if (v := getattr(q, attr)) is not None), window.end, bucket_s)

    messages = queue_series("messages")
    put("queue_messages_last", _reduce(messages, "last"))
    put("queue_messages_slope", _reduce(messages, "slope"))
    lag = _bucketed_sum(((f"{s.node}/{s.stream}", s.time, s.lag) for s in window.stream_lag
                         if s.stream.startswith(telemetry_prefix)), window.end, bucket_s)
    put("stream_lag_last", _reduce(lag, "last"))
    put("stream_lag_mean", _reduce(lag, "mean"))
    put("stream_lag_slope", _reduce(lag, "slope"))
    for attr in ("publish_rate", "deliver_rate"):
        series = queue_series(attr)
        put(f"{attr}_last", _reduce(series, "last"))
        put(f"{attr}_mean", _reduce(series, "mean"))

    by_query: dict[str, list] = defaultdict(list)
    for p in window.stream_progress:
        by_query[p.query].append(p)
    source = by_query.get(source_query)
    if source is None and by_query:
        # Another job name: the query with the most input is the one reading the channels.
        source = max(sorted(by_query.items()), key=lambda kv: fmean(p.input_rate for p in kv[1]))[1]
    for attr in ("input_rate", "processed_rate"):
        series = [(p.time, getattr(p, attr)) for p in source or ()]
        put(f"{attr}_last", _reduce(series, "last"))
        put(f"{attr}_mean", _reduce(series, "mean"))
    # The slowest query bounds the twin's freshness, whichever it is.
    durations = {q: [(p.time, p.batch_duration_ms) for p in ps if p.batch_duration_ms is not None]
                 for q, ps in by_query.items()}
    lasts = [v for s in durations.values() if (v := _reduce(s, "last")) is not None]
    means = [v for s in durations.values() if (v := _reduce(s, "mean")) is not None]
    put("batch_duration_ms_last", max(lasts) if lasts else None)
    put("batch_duration_ms_mean", max(means) if means else None)

    for pool in POOL_FEATURES:
        count = (active or {}).get(pool, window.active.get(pool))
        if count is None:
            count = reporting[pool]
            missing.append(f"active_{pool}")
        values[f"active_{pool}"] = float(count)

    angle = 2 * math.pi * (((when + tz_offset_s) % DAY_S) / DAY_S)
    values["tod_sin"] = math.sin(angle)
    values["tod_cos"] = math.cos(angle)
    return FeatureVector(tuple(values[n] for n in FEATURE_NAMES), when, tuple(missing))


def as_row(features: FeatureVector | Mapping[str, float] | Sequence[float],
           names: Sequence[str] = FEATURE_NAMES) -> list[float]:
    """Values in ``names`` order from a vector, a mapping by name or a sequence already in
    order; raises KeyError naming the first feature that is absent."""
    if isinstance(features, FeatureVector):
        if tuple(names) == features.names:
            return list(features.values)
        features = features.as_dict()
    if isinstance(features, Mapping):
        row = []
        for name in names:
            if name not in features:
                raise KeyError(f"features.{name}: missing")
            row.append(float(features[name]))
        return row
    row = [float(v) for v in features]
    if len(row) != len(names):
        raise ValueError(f"features: {len(row)} values, the model expects {len(names)}")
    return row
