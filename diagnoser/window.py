"""The diagnoser's input: a *metrics window*, i.e. every sample of the last N seconds.

The dataclasses mirror ``monitor.schema`` exactly (attribute = tag or field name), so the rules
speak the same names as InfluxDB and Grafana. :func:`build_window` turns InfluxDB-style points
(``{"measurement", "tags", "fields", "time"}``, as written with ``write_points``) into a window;
:func:`points_from_rows` turns the flat rows an InfluxQL query returns into such points. The
service around the engine is then: query, ``points_from_rows``, ``build_window``, evaluate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from infra.topology import POOLS, ROLE_POOL
from monitor.schema import (
    DECISION,
    DIAGNOSIS,
    PROCESSING,
    QUEUE,
    QUEUING,
    SPARK_TASK,
    STREAM_LAG,
    STREAM_PROGRESS,
    Measurement,
)

from .labels import WindowSpan

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class WindowError(ValueError):
    """A point cannot be read into a window; the message names the point and the field."""


# ---------------------------------------------------------------------------------------------
# samples: one per InfluxDB point, attribute names are the schema's tag and field names


@dataclass(frozen=True)
class NodeSample:
    """``processing_cluster`` / ``queuing_cluster`` (Alg. 1, Table I/II). ``pool`` is not a tag:
    it is resolved from the topology (node name), else the role, else the measurement."""

    time: float
    node: str
    pool: str
    role: str = ""
    cluster: str = ""
    cpu: float = 0.0
    memory: float = 0.0
    disk: float | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None
    processes: float | None = None
    sample_seq: float | None = None


@dataclass(frozen=True)
class QueueSample:
    """``rabbitmq_queue``: one queue of one channel (``node`` is the channel)."""

    time: float
    node: str
    queue: str
    messages: float
    publish_rate: float | None = None
    deliver_rate: float | None = None
    consumers: float | None = None
    bytes: float | None = None

    @property
    def publish_excess(self) -> float | None:
        """Share of the publish rate the broker does not deliver: (publish - deliver) / publish.
        A fraction, so one threshold fits a 100 msg/s and a 20k msg/s workload."""
        if self.publish_rate is None or self.deliver_rate is None:
            return None
        if self.publish_rate <= 0:
            return 0.0
        return (self.publish_rate - self.deliver_rate) / self.publish_rate


@dataclass(frozen=True)
class StreamLagSample:
    """``stream_lag``: how far the stream consumer is behind one stream queue of a channel."""

    time: float
    node: str
    stream: str
    lag: float
    end_offset: float | None = None
    committed_offset: float | None = None


@dataclass(frozen=True)
class StreamProgressSample:
    """``spark_stream``: one trigger of a streaming query (StreamingQueryProgress)."""

    time: float
    query: str
    input_rate: float
    processed_rate: float
    batch_duration_ms: float | None = None
    num_input_rows: float | None = None
    state_rows: float | None = None
    late_rows_dropped: float | None = None
    executors: float | None = None
    batch_id: float | None = None

    @property
    def rate_deficit(self) -> float:
        """Share of the input rate the query does not process: (input - processed) / input."""
        if self.input_rate <= 0:
            return 0.0
        return (self.input_rate - self.processed_rate) / self.input_rate


@dataclass(frozen=True)
class SparkTaskSample:
    """``spark_task``: one finished task (straggler detection, Fig. 11)."""

    time: float
    node: str
    duration_ms: float
    executor: str = ""
    stage: str = ""
    run_ms: float | None = None
    gc_ms: float | None = None
    input_records: float | None = None


@dataclass(frozen=True)
class MetricsWindow:
    """Every sample in ``[start, end]`` plus the number of active nodes per pool *now* (from the
    orchestrator or ``make status``: a dormant node sends nothing, so samples cannot tell)."""

    start: float
    end: float
    nodes: tuple[NodeSample, ...] = ()
    queues: tuple[QueueSample, ...] = ()
    stream_lag: tuple[StreamLagSample, ...] = ()
    stream_progress: tuple[StreamProgressSample, ...] = ()
    tasks: tuple[SparkTaskSample, ...] = ()
    active: Mapping[str, int] = field(default_factory=dict)
    rejected: tuple[str, ...] = ()   # points skipped by build_window(on_error="skip"), why

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise WindowError(f"window.start/end: must be finite, got {self.start}, {self.end}")
        if self.end < self.start:
            raise WindowError(f"window.end: {self.end} is before start {self.start}")
        for pool, count in self.active.items():
            if pool not in POOLS:
                raise WindowError(f"window.active.{pool}: unknown pool "
                                  f"(allowed: {', '.join(POOLS)})")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise WindowError(f"window.active.{pool}: must be a count >= 0, got {count!r}")

    @property
    def span(self) -> WindowSpan:
        return WindowSpan(self.start, self.end)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def pool_nodes(self, pool: str) -> tuple[NodeSample, ...]:
        return tuple(s for s in self.nodes if s.pool == pool)

    def latest_by_node(self, pool: str) -> dict[str, NodeSample]:
        """The newest sample of every node of ``pool`` that reported in the window."""
        latest: dict[str, NodeSample] = {}
        for s in self.nodes:
            if s.pool == pool and (s.node not in latest or s.time >= latest[s.node].time):
                latest[s.node] = s
        return dict(sorted(latest.items()))


# ---------------------------------------------------------------------------------------------
# building a window from InfluxDB points

# measurement -> (sample class, tags that must be present, fields that must be present)
_INPUTS: dict[str, tuple[type, tuple[str, ...], tuple[str, ...]]] = {
    PROCESSING.name: (NodeSample, ("node",), ("cpu", "memory")),
    QUEUING.name: (NodeSample, ("node",), ("cpu", "memory")),
    QUEUE.name: (QueueSample, ("node", "queue"), ("messages",)),
    STREAM_LAG.name: (StreamLagSample, ("node", "stream"), ("lag",)),
    STREAM_PROGRESS.name: (StreamProgressSample, ("query",), ("input_rate", "processed_rate")),
    SPARK_TASK.name: (SparkTaskSample, ("node",), ("duration_ms",)),
}
# The diagnoser's and orchestrator's own outputs may come back from a broad query: not inputs.
_OUTPUTS = frozenset({DIAGNOSIS.name, DECISION.name})
_BY_NAME: dict[str, Measurement] = {
    m.name: m for m in (PROCESSING, QUEUING, QUEUE, STREAM_LAG, STREAM_PROGRESS, SPARK_TASK)
}
_MEASUREMENT_POOL = {PROCESSING.name: "processing", QUEUING.name: "queue"}


def to_epoch_s(value: Any, time_unit: str = "s") -> float:
    """Epoch seconds from an InfluxDB time: RFC 3339 string (the query default, nanosecond
    digits allowed), ``datetime`` (naive means UTC) or a number in ``time_unit`` (what the
    client returns with ``epoch=...``)."""
    if time_unit not in TIME_UNITS:
        raise WindowError(f"time_unit: must be one of {', '.join(TIME_UNITS)}, got {time_unit!r}")
    if isinstance(value, bool):
        raise WindowError(f"time: expected a timestamp, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value) * TIME_UNITS[time_unit]
    elif isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        seconds = dt.timestamp()
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise WindowError(f"time: not an RFC 3339 timestamp: {value!r}") from exc
        seconds = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    else:
        raise WindowError(f"time: expected a timestamp, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise WindowError(f"time: must be finite, got {value!r}")
    return seconds


def points_from_rows(measurement: str, rows: Iterable[Mapping[str, Any]],
                     tags: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Flat InfluxQL rows (``ResultSet.get_points()``: time, tags and fields side by side) to
    points. ``tags`` are the group's tags when the query used ``GROUP BY``. Columns are split by
    the schema, so a column that is neither tag nor field of ``measurement`` is dropped."""
    schema = _BY_NAME.get(measurement)
    if schema is None:
        raise WindowError(f"measurement: {measurement!r} is not a diagnoser input "
                          f"(inputs: {', '.join(_BY_NAME)})")
    points = []
    for row in rows:
        point_tags = {k: row[k] for k in schema.tags if row.get(k) is not None}
        point_tags.update(tags or {})
        point_fields = {k: row[k] for k in schema.fields if row.get(k) is not None}
        points.append({"measurement": measurement, "tags": point_tags, "fields": point_fields,
                       "time": row.get("time")})
    return points


def build_window(
    points: Iterable[Mapping[str, Any]],
    *,
    active: Mapping[str, int],
    start: Any = None,
    end: Any = None,
    pool_of: Mapping[str, str] | None = None,
    time_unit: str = "s",
    on_error: str = "raise",
) -> MetricsWindow:
    """A window from InfluxDB-style points.

    ``active``: active node count per pool now. ``start``/``end``: the queried interval (any
    time :func:`to_epoch_s` reads); points outside it are dropped, so the query may be generous;
    when omitted they are the first and last point time. ``pool_of``: node name -> pool (from
    ``infra.topology``: ``{n.name: n.pool for n in topo.nodes}``), else the pool comes from the
    ``role`` tag, else from the measurement. ``on_error="skip"`` keeps going past a bad point
    and records why in ``MetricsWindow.rejected`` (a live service should not go blind because
    one agent wrote a bad point); ``"raise"`` raises :class:`WindowError` at the first.
    """
    if on_error not in ("raise", "skip"):
        raise WindowError(f"on_error: must be 'raise' or 'skip', got {on_error!r}")
    parsed: list[Any] = []
    rejected: list[str] = []
    for i, point in enumerate(points):
        try:
            sample = _sample(point, pool_of or {}, time_unit)
        except WindowError as exc:
            if on_error == "raise":
                raise WindowError(f"points[{i}].{exc}") from None
            rejected.append(f"points[{i}].{exc}")
            continue
        if sample is not None:
            parsed.append(sample)

    lo = _bound(start, "start", time_unit)
    hi = _bound(end, "end", time_unit)
    if lo is None or hi is None:
        times = [s.time for s in parsed]
        if not times:
            raise WindowError("window.start/end: no points to infer them from; pass start= and "
                              "end=")
        lo = min(times) if lo is None else lo
        hi = max(times) if hi is None else hi
    inside = sorted((s for s in parsed if lo <= s.time <= hi), key=lambda s: s.time)

    def of(kind: type) -> tuple[Any, ...]:
        return tuple(s for s in inside if type(s) is kind)

    return MetricsWindow(
        start=lo, end=hi,
        nodes=of(NodeSample), queues=of(QueueSample), stream_lag=of(StreamLagSample),
        stream_progress=of(StreamProgressSample), tasks=of(SparkTaskSample),
        active=dict(active), rejected=tuple(rejected),
    )


def _bound(value: Any, name: str, time_unit: str) -> float | None:
    if value is None:
        return None
    try:
        return to_epoch_s(value, time_unit)
    except WindowError as exc:
        raise WindowError(f"window.{name}: {exc}") from None


def _sample(point: Mapping[str, Any], pool_of: Mapping[str, str], time_unit: str) -> Any:
    if not isinstance(point, Mapping):
        raise WindowError(f"point: expected a mapping, got {type(point).__name__}")
    name = point.get("measurement")
    if name in _OUTPUTS:
        return None
    if name not in _INPUTS:
        raise WindowError(f"measurement: unknown {name!r} (inputs: {', '.join(_INPUTS)})")
    kind, need_tags, need_fields = _INPUTS[name]
    schema = _BY_NAME[name]
    tags = point.get("tags") or {}
    values = point.get("fields") or {}
    if not isinstance(tags, Mapping):
        raise WindowError(f"tags: expected a mapping, got {type(tags).__name__}")
    if not isinstance(values, Mapping):
        raise WindowError(f"fields: expected a mapping, got {type(values).__name__}")
    if "time" not in point or point["time"] is None:
        raise WindowError("time: required")
    when = to_epoch_s(point["time"], time_unit)   # its messages already start with "time:"

    kwargs: dict[str, Any] = {"time": when}
    for tag in need_tags:
        if not tags.get(tag):
            raise WindowError(f"tags.{tag}: required for {name}")
    accepted = {f.name for f in fields(kind)}
    for tag in schema.tags:
        if tag in accepted and tags.get(tag) is not None:
            kwargs[tag] = str(tags[tag])
    for key in need_fields:
        if values.get(key) is None:
            raise WindowError(f"fields.{key}: required for {name}")
    for key in schema.fields:
        raw = values.get(key)
        if raw is None or key not in accepted:
            continue
        # bool is an int subclass: a `true` CPU is a writer bug, not 1 %.
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise WindowError(f"fields.{key}: expected a finite number, got {raw!r}")
        kwargs[key] = float(raw)
    if kind is SparkTaskSample and "stage" in kwargs:
        kwargs["stage"] = str(int(kwargs["stage"]))  # a numeric field (not a tag) in InfluxDB
    if kind is NodeSample:
        node, role = kwargs["node"], kwargs.get("role", "")
        kwargs["pool"] = pool_of.get(node) or ROLE_POOL.get(role) or _MEASUREMENT_POOL[name]
    return kind(**kwargs)
