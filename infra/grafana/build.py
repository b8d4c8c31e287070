"""Grafana dashboards as code: plain dataclasses → Grafana JSON model (schemaVersion 39).

Every query is InfluxQL (raw mode) against the data source uid ``vpp-influxdb`` and is built
from the :mod:`monitor.schema` measurements: field and tag names are checked against the schema
when the dashboards are built, so a renamed or removed field fails the build (and the unit
tests) with a :class:`SchemaError` naming ``measurement.field``.

Pure API (no Grafana, no InfluxDB):

- :func:`dashboards` - the JSON models, one dict per dashboard;
- :func:`panel_queries` - every query of every dashboard (panels, template variables and
  annotations) as :class:`PanelQuery`, whose :meth:`PanelQuery.render` substitutes Grafana's
  macros and template variables so the exact query can be run against InfluxDB 1.x.

``python -m infra.grafana.build`` rewrites ``infra/grafana/dashboards/*.json``;
``--check`` exits 1 if the committed JSON differs from what this module generates.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from diagnoser.labels import RcaLabel
from monitor.schema import (
    DECISION,
    DER_STATE,
    DIAGNOSIS,
    PROCESSING,
    QUEUE,
    QUEUING,
    STREAM_BATCH,
    STREAM_LAG,
    STREAM_PROGRESS,
    VPP_SITE,
    VPP_TOTAL,
    Measurement,
)

DATASOURCE_UID = "vpp-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
DASHBOARD_TAG = "vpp"
ALL_VALUE = ".*"            # what "All" of a template variable means inside =~ /^$var$/
HERE = Path(__file__).resolve().parent
DASHBOARDS_DIR = HERE / "dashboards"
PROVISIONING_DIR = HERE / "provisioning"

ResultFormat = Literal["time_series", "table"]
QueryKind = Literal["panel", "variable", "annotation"]


class SchemaError(ValueError):
    """A dashboard refers to a measurement, tag or field that monitor.schema does not define."""


# ---------------------------------------------------------------------------------------------
# InfluxQL, checked against monitor.schema


def _ident(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _field(m: Measurement, name: str) -> str:
    if name not in m.fields:
        raise SchemaError(f"{m.name}.{name}: not a field of {m.name} in monitor.schema "
                          f"(fields: {', '.join(m.fields)})")
    return name


def _tag(m: Measurement, name: str) -> str:
    if name not in m.tags:
        raise SchemaError(f"{m.name}.{name}: not a tag of {m.name} in monitor.schema "
                          f"(tags: {', '.join(m.tags)})")
    return name


def _where(m: Measurement, match: Mapping[str, str]) -> str:
    """``"tag" =~ /^$var$/ AND ... AND $timeFilter`` (the idiom Grafana expands for multi/All)."""
    conds = [f"{_ident(_tag(m, tag))} =~ /^${var}$/" for tag, var in match.items()]
    return " AND ".join([*conds, "$timeFilter"])


def select(m: Measurement, fields: Sequence[str], *, fn: str = "mean",
           match: Mapping[str, str] | None = None, by: Sequence[str] = (), every: bool = True,
           fill: str | None = "null") -> str:
    """An aggregate query: ``SELECT fn("f") AS "f", ... FROM "m" WHERE ... GROUP BY ...``.

    ``fn`` may carry arguments after the field, e.g. ``"percentile:95"``. ``match`` maps a tag to
    the template variable that filters it; ``by`` are tags to group by; ``every`` groups by
    ``time($__interval)``.
    """
    name, _, arg = fn.partition(":")
    extra = f", {arg}" if arg else ""
    cols = ", ".join(f"{name}({_ident(_field(m, f))}{extra}) AS {_ident(f)}" for f in fields)
    group = (["time($__interval)"] if every else []) + [_ident(_tag(m, t)) for t in by]
    q = f"SELECT {cols} FROM {_ident(m.name)} WHERE {_where(m, match or {})}"
    if group:
        q += " GROUP BY " + ", ".join(group)
    if every and fill is not None:
        q += f" fill({fill})"
    return q


def raw_select(m: Measurement, fields: Sequence[str], tags: Sequence[str] = (), *,
               match: Mapping[str, str] | None = None, limit: int | None = 100) -> str:
    """Raw points with the given tags as columns; with a ``limit``, the newest first."""
    cols = [_ident(_field(m, f)) for f in fields] + [_ident(_tag(m, t)) for t in tags]
    q = f"SELECT {', '.join(cols)} FROM {_ident(m.name)} WHERE {_where(m, match or {})}"
    return q if limit is None else f"{q} ORDER BY time DESC LIMIT {limit}"


def tag_values(measurements: Sequence[Measurement], key: str,
               match: Mapping[str, str] | None = None) -> str:
    """``SHOW TAG VALUES FROM "a", "b" WITH KEY = "key"``: a template variable's query."""
    for m in measurements:
        _tag(m, key)
        for tag in match or {}:
            _tag(m, tag)
    q = (f"SHOW TAG VALUES FROM {', '.join(_ident(m.name) for m in measurements)} "
         f"WITH KEY = {_ident(key)}")
    if match:
        q += " WHERE " + " AND ".join(f"{_ident(t)} =~ /^${v}$/" for t, v in match.items())
    return q


# ---------------------------------------------------------------------------------------------
# rendering Grafana macros (what Grafana's InfluxDB data source does before sending a query)

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_REGEX_LITERAL = re.compile(r"(=~|!~)(\s*)/((?:\\.|[^/\\])*)/")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}/])")
_ALL = ("All", "$__all")

VariableValue = str | Sequence[str]


def _duration_ms(value: str, what: str) -> int:
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"{what}: {value!r} is not an InfluxQL duration such as 10s or 15m")
    return int(m.group(1)) * _MS[m.group(2)]


def _format_value(name: str, value: VariableValue, in_regex: bool) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise ValueError(f"variables.{name}: no value")
    if len(values) == 1 and values[0] in _ALL:
        if not in_regex:
            raise ValueError(f"variables.{name}: 'All' only has a meaning inside =~ /^${name}$/")
        return ALL_VALUE
    if in_regex:
        escaped = [_REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if len(values) != 1:
        raise ValueError(f"variables.{name}: several values only work inside a regex")
    return values[0]


def render(query: str, time_range: str = "15m", interval: str = "10s",
           variables: Mapping[str, VariableValue] | None = None,
           defaults: Sequence[str] = ()) -> str:
    """Substitute Grafana macros in an InfluxQL query.

    ``$timeFilter`` → ``time >= now() - <time_range>`` (Grafana's form for "last <range>");
    ``$__interval``/``$interval`` → ``interval``; ``$__interval_ms`` → its milliseconds.
    Template variables (``$v``, ``${v}``, ``[[v]]``) take their value from ``variables``;
    names in ``defaults`` that are not given mean "All". Inside a regex literal values are
    regex-escaped, several values become ``(a|b)`` and "All" becomes ``.*``. Unknown ``$names``
    are left as they are, so a caller can detect them.
    """
    _duration_ms(time_range, "time_range")
    builtins = {
        "timeFilter": f"time >= now() - {time_range}",
        "__timeFilter": f"time >= now() - {time_range}",
        "__interval": interval,
        "interval": interval,
        "__interval_ms": str(_duration_ms(interval, "interval")),
    }
    values: dict[str, VariableValue] = {name: "All" for name in defaults}
    values.update(variables or {})

    def substitute(text: str, in_regex: bool) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2) or m.group(3)
            if name in builtins:
                return builtins[name]
            if name in values:
                return _format_value(name, values[name], in_regex)
            return m.group(0)
        return _VARIABLE.sub(one, text)

    out, pos = [], 0
    for m in _REGEX_LITERAL.finditer(query):
        out.append(substitute(query[pos:m.start()], False))
        out.append(f"{m.group(1)}{m.group(2)}/{substitute(m.group(3), True)}/")
        pos = m.end()
    out.append(substitute(query[pos:], False))
    return "".join(out)


@dataclass(frozen=True)
class PanelQuery:
    """One query of one dashboard, as Grafana sends it before macro expansion."""

    dashboard_uid: str
    panel_title: str          # panel title; "$name" for a template variable; annotation name
    ref_id: str               # target refId ("A", "B", ...); variable name; "Anno"
    query: str                # the raw InfluxQL, with Grafana macros
    kind: QueryKind = "panel"
    row: str = ""
    result_format: ResultFormat = "time_series"
    variables: tuple[str, ...] = ()   # the dashboard's template variables ("All" by default)

    def render(self, time_range: str = "15m", interval: str = "10s",
               variables: Mapping[str, VariableValue] | None = None) -> str:
        """The query as Grafana would send it for "last ``time_range``" at ``interval``."""
        return render(self.query, time_range, interval, variables, self.variables)


# ---------------------------------------------------------------------------------------------
# dashboard model


@dataclass(frozen=True)
class Target:
    query: str
    alias: str = ""           # Grafana display alias ($tag_node, $col); not part of the query
    fmt: ResultFormat = "time_series"


PanelKind = Literal["timeseries", "table", "stat", "bargauge"]


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    description: str
    kind: PanelKind = "timeseries"
    unit: str = "short"
    w: int = 12
    h: int = 8
    min: float | None = None
    max: float | None = None
    stack: bool = False
    draw: Literal["line", "points", "bars"] = "line"
    step: bool = False
    mappings: tuple[dict[str, Any], ...] = ()
    mapping_field: str | None = None   # apply `mappings` to this column only (tables)
    hide_time: bool = False            # tables of last() values: their time is meaningless

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        overrides: list[dict[str, Any]] = []
        defaults: dict[str, Any] = {"unit": self.unit, "mappings": []}
        if self.mapping_field is None:
            defaults["mappings"] = list(self.mappings)
        elif self.mappings:
            overrides.append({"matcher": {"id": "byName", "options": self.mapping_field},
                              "properties": [{"id": "mappings", "value": list(self.mappings)}]})
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": self.draw,
                "lineInterpolation": "stepAfter" if self.step else "linear",
                "lineWidth": 1,
                "fillOpacity": 20 if self.stack else 0,
                "pointSize": 5,
                "showPoints": "always" if self.draw == "points" else "never",
                "spanNulls": self.step,
                "stacking": {"mode": "normal" if self.stack else "none", "group": "A"},
            }
            options: dict[str, Any] = {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif self.kind == "table":
            options = {"showHeader": True, "cellHeight": "sm"}
        else:
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "orientation": "horizontal"}
        panel: dict[str, Any] = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"h": self.h, "w": self.w, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
            "options": options,
            "targets": [
                {
                    "refId": ref_id(i),
                    "datasource": dict(DATASOURCE),
                    "query": t.query,
                    "rawQuery": True,
                    "resultFormat": t.fmt,
                    "alias": t.alias,
                }
                for i, t in enumerate(self.targets)
            ],
        }
        if self.kind == "table":
            # One frame per tag set -> one table.
            panel["transformations"] = [{"id": "merge", "options": {}}]
            if self.hide_time:
                panel["transformations"].append(
                    {"id": "organize", "options": {"excludeByName": {"Time": True}}})
        return panel


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str
    multi: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": dict(DATASOURCE),
            "query": self.query,
            "definition": self.query,
            "refresh": 2,          # on time-range change: a woken node appears by itself
            "multi": self.multi,
            "includeAll": True,
            "allValue": ALL_VALUE,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
        }


@dataclass(frozen=True)
class Annotation:
    name: str
    query: str
    text_column: str
    tag_columns: tuple[str, ...]
    color: str = "orange"

    def to_json(self) -> dict[str, Any]:
        tags = ",".join(self.tag_columns)
        return {
            "name": self.name,
            "datasource": dict(DATASOURCE),
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            # legacy top-level fields and the target the current InfluxDB plugin reads
            "query": self.query,
            "textColumn": self.text_column,
            "tagsColumn": tags,
            "target": {"refId": "Anno", "query": self.query, "rawQuery": True,
                       "textColumn": self.text_column, "tagsColumn": tags},
        }


GRAFANA_BUILTIN_ANNOTATION: dict[str, Any] = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def ref_id(index: int) -> str:
    return chr(ord("A") + index)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    refresh: str = "10s"
    time_from: str = "now-15m"
    tags: tuple[str, ...] = field(default=(DASHBOARD_TAG,))

    def layout(self) -> Iterator[tuple[Row, Panel | None, int, int]]:
        """(row, panel or None for the row header, x, y): rows stacked, panels wrapping at 24."""
        y = 0
        for row in self.rows:
            yield row, None, 0, y
            y += 1
            x, line_h = 0, 0
            for panel in row.panels:
                if x + panel.w > 24:
                    x, y, line_h = 0, y + line_h, 0
                yield row, panel, x, y
                x += panel.w
                line_h = max(line_h, panel.h)
            y += line_h

    def to_json(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        for n, (row, panel, x, y) in enumerate(self.layout(), start=1):
            if panel is None:
                panels.append({"id": n, "type": "row", "title": row.title, "collapsed": False,
                               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            else:
                panels.append(panel.to_json(n, x, y))
        return {
            "id": None,
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "utc",
            "editable": False,
            "graphTooltip": 1,
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "links": [{"type": "dashboards", "tags": [DASHBOARD_TAG], "asDropdown": True,
                       "title": "VPP dashboards", "includeVars": False, "keepTime": True,
                       "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""}],
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": [GRAFANA_BUILTIN_ANNOTATION,
                                     *(a.to_json() for a in self.annotations)]},
            "panels": panels,
        }

    def queries(self) -> Iterator[PanelQuery]:
        names = tuple(v.name for v in self.variables)
        for v in self.variables:
            yield PanelQuery(self.uid, f"${v.name}", v.name, v.query, "variable", "", "table",
                             names)
        for a in self.annotations:
            yield PanelQuery(self.uid, a.name, "Anno", a.query, "annotation", "", "table", names)
        for row, panel, _, _ in self.layout():
            if panel is None:
                continue
            for i, t in enumerate(panel.targets):
                yield PanelQuery(self.uid, panel.title, ref_id(i), t.query, "panel", row.title,
                                 t.fmt, names)


# ---------------------------------------------------------------------------------------------
# the dashboards

BPS = "Bps"
PERCENT = "percent"
WATT = "watt"
WATT_HOUR = "watth"
MS = "ms"


def _node_row(m: Measurement, label: str, table: str) -> Row:
    """Alg. 1 Table I / II for one pool: every node metric per node."""
    node = {_tag(m, "node"): "node"}
    by = ("node",)

    def one(metric: str, fn: str = "mean") -> Target:
        return Target(select(m, [metric], fn=fn, match=node, by=by), "$tag_node")

    def pair(a: str, b: str, a_alias: str, b_alias: str) -> tuple[Target, ...]:
        return (Target(select(m, [a], match=node, by=by), f"$tag_node {a_alias}"),
                Target(select(m, [b], match=node, by=by), f"$tag_node {b_alias}"))

    src = f"{m.name} ({table})"
    return Row(f"{label} ({table}: {m.name})", (
        Panel(f"{label}: CPU %", (one("cpu"),),
              f"CPU time of the node's processes over its own CPU quota, {src}. "
              "100 = the node uses its whole limit.", unit=PERCENT, min=0, max=100, w=8),
        Panel(f"{label}: memory %", (one("memory"),),
              f"Memory in use over the node's own memory limit, {src}.",
              unit=PERCENT, min=0, max=100, w=8),
        Panel(f"{label}: disk %", (one("disk"),),
              f"Used share of the node's data filesystem, {src}.",
              unit=PERCENT, min=0, max=100, w=8),
        Panel(f"{label}: disk read/write", pair("disk_read_bps", "disk_write_bps", "read", "write"),
              f"Disk bytes read and written per second, {src}.", unit=BPS, min=0, w=8),
        Panel(f"{label}: network rx/tx", pair("net_rx_bps", "net_tx_bps", "rx", "tx"),
              f"Network bytes received and sent per second, {src}.", unit=BPS, min=0, w=8),
        Panel(f"{label}: processes", (one("processes", "max"),),
              f"Number of processes on the node, {src}.", min=0, w=8),
    ))


def cluster_dashboard() -> Dashboard:
    var = Variable("node", "Node", tag_values((PROCESSING, QUEUING), "node"))
    return Dashboard(
        "vpp-cluster", "VPP · Cluster utilisation",
        "SmartMonit-style resource utilisation per node (paper Alg. 1, Tables I and II): "
        "Spark workers and core nodes in processing_cluster, RabbitMQ channels in "
        "queuing_cluster. Percentages are of each node's own limits.",
        (_node_row(PROCESSING, "Processing", "Table I"), _node_row(QUEUING, "Queuing", "Table II")),
        variables=(var,),
    )


def queues_dashboard() -> Dashboard:
    q = QUEUE
    match = {_tag(q, "node"): "node", _tag(q, "queue"): "queue"}
    by = ("node", "queue")
    alias = "$tag_node $tag_queue"
    lag_match = {_tag(STREAM_LAG, "node"): "node"}
    lag_by = ("node", "stream")
    return Dashboard(
        "vpp-queues", "VPP · Queues",
        "RabbitMQ channels (queue clusters): depth and rates per queue from the management API, "
        "and how far the stream consumer (Spark) is behind each telemetry stream.",
        (
            Row("RabbitMQ queues (rabbitmq_queue)", (
                Panel("Queue depth", (Target(select(q, ["messages"], fn="last", match=match,
                                                    by=by), alias),),
                      "Messages in each queue (ready + unacked; for a stream queue, retained "
                      "messages).", min=0),
                Panel("Publish vs deliver rate", (
                    Target(select(q, ["publish_rate"], match=match, by=by), f"{alias} publish"),
                    Target(select(q, ["deliver_rate"], match=match, by=by), f"{alias} deliver")),
                      "Messages per second published into and delivered out of each queue. "
                      "Publish above deliver for long means the consumers fall behind.",
                      unit="suffix: msg/s", min=0),
                Panel("Queue bytes", (Target(select(q, ["bytes"], fn="last", match=match, by=by),
                                             alias),),
                      "Bytes held by each queue.", unit="bytes", min=0),
                Panel("Consumers", (Target(select(q, ["consumers"], fn="last", match=match,
                                                  by=by), alias),),
                      "Consumers attached to each queue.", min=0),
            )),
            Row("Stream consumer lag (stream_lag)", (
                Panel("Stream lag", (Target(select(STREAM_LAG, ["lag"], fn="max",
                                                   match=lag_match, by=lag_by),
                                            "$tag_node $tag_stream"),),
                      "Messages between a stream's end and the offset Spark has committed, per "
                      "channel. Growing lag = processing is the bottleneck.", min=0),
                Panel("Stream offsets", (
                    Target(select(STREAM_LAG, ["end_offset"], fn="last", match=lag_match,
                                  by=lag_by), "$tag_node end"),
                    Target(select(STREAM_LAG, ["committed_offset"], fn="last", match=lag_match,
                                  by=lag_by), "$tag_node committed")),
                      "End offset of each stream and the offset the streaming query committed.",
                      min=0),
            )),
        ),
        variables=(
            Variable("node", "Channel", tag_values((QUEUE, STREAM_LAG), "node")),
            Variable("queue", "Queue", tag_values((QUEUE,), "queue", {"node": "node"})),
        ),
    )


def streaming_dashboard() -> Dashboard:
    p, b = STREAM_PROGRESS, STREAM_BATCH
    pm, bm = {_tag(p, "query"): "query"}, {_tag(b, "query"): "query"}
    by = ("query",)

    def prog(metric: str, fn: str = "mean") -> Target:
        return Target(select(p, [metric], fn=fn, match=pm, by=by), "$tag_query")

    return Dashboard(
        "vpp-streaming", "VPP · Streaming",
        "Spark Structured Streaming: per-trigger progress of each query (spark_stream) and what "
        "each committed micro-batch stored and how late it was (spark_batch).",
        (
            Row("Query progress (spark_stream)", (
                Panel("Input vs processed rate", (
                    Target(select(p, ["input_rate"], match=pm, by=by), "$tag_query input"),
                    Target(select(p, ["processed_rate"], match=pm, by=by),
                           "$tag_query processed")),
                      "Rows per second arriving vs processed per trigger. Processed below input "
                      "for long means the query cannot keep up.", unit="suffix: rows/s", min=0),
                Panel("Batch duration", (prog("batch_duration_ms", "max"),),
                      "Longest trigger execution time in each interval.", unit=MS, min=0),
                Panel("Input rows per trigger", (prog("num_input_rows"),),
                      "Mean rows read per trigger.", min=0, w=8),
                Panel("State rows", (prog("state_rows", "last"),),
                      "Rows held in the query's state store (the twin: one row per bucket "
                      "of DERs, 32 at most).",
                      min=0, w=8),
                Panel("Late rows dropped", (prog("late_rows_dropped", "sum"),),
                      "Rows dropped by the watermark in each interval.", min=0, w=8, draw="bars"),
                Panel("Executors", (prog("executors", "last"),),
                      "Executors the application has (driver excluded): grows when a dormant "
                      "worker is woken.", min=0, step=True, w=24, h=6),
            )),
            Row("Committed micro-batches (spark_batch)", (
                Panel("Latency p50 / p95", (
                    Target(select(b, ["latency_p50_ms"], match=bm, by=by), "$tag_query p50"),
                    Target(select(b, ["latency_p95_ms"], fn="max", match=bm, by=by),
                           "$tag_query p95")),
                      "Commit time minus event time of the rows of each batch; for `twin`, "
                      "sensor event to twin state visible.", unit=MS, min=0),
                Panel("Valid vs quarantined rows", (
                    Target(select(b, ["valid_rows"], fn="sum", match=bm, by=by),
                           "$tag_query valid"),
                    Target(select(b, ["quarantined_rows"], fn="sum", match=bm, by=by),
                           "$tag_query quarantined")),
                      "Rows stored and rows sent to quarantine per interval.", min=0,
                      draw="bars"),
            )),
        ),
        variables=(Variable("query", "Query", tag_values((p, b), "query")),),
    )


def _rca_mappings() -> tuple[dict[str, Any], ...]:
    return ({"type": "value", "options": {
        str(int(label)): {"text": f"{label.paper_name} ({label.tag})", "index": int(label)}
        for label in RcaLabel}},)


def decisions_dashboard() -> Dashboard:
    r, d = DIAGNOSIS, DECISION
    rm, dm = {_tag(r, "pool"): "pool"}, {_tag(d, "pool"): "pool"}
    decision_cols = ("action", "pool", "node", "label")
    return Dashboard(
        "vpp-decisions", "VPP · Autoscaler decisions",
        "RCA labels of the diagnoser (Alg. 2, measurement rca) and the orchestrator's decisions "
        "(Alg. 3, measurement autoscaler_decision), also shown as annotations.",
        (
            Row("RCA labels (rca)", (
                Panel("RCA label code by pool", (
                    Target(select(r, ["code"], fn="last", match=rm, by=("pool", "mode"),
                                  fill=None), "$tag_pool ($tag_mode)"),),
                      "Label code over time: 0 no action, 1 R_up^CL, 2 R_up^CC, 3 R_down^CL, "
                      "4 R_down^CC. A no-action label has no pool.",
                      min=0, max=4, draw="points", mappings=_rca_mappings(), w=24),
                Panel("Latest RCA labels", (
                    Target(raw_select(r, ["code", "observed", "threshold", "window_s"],
                                      ("label", "pool", "node", "rule", "mode"), match=rm),
                           fmt="table"),),
                      "Newest labels first, with the rule that fired and its evidence "
                      "(observed value against threshold over window_s).",
                      kind="table", mappings=_rca_mappings(), mapping_field="code", w=24,
                      h=9),
            )),
            Row("Orchestrator decisions (autoscaler_decision)", (
                Panel("Active nodes by pool", (
                    Target(select(d, ["active_after"], fn="last", match=dm, by=("pool",),
                                  fill=None), "$tag_pool active"),
                    Target(select(d, ["required"], fn="last", match=dm, by=("pool",),
                                  fill=None), "$tag_pool required")),
                      "Nodes active after each decision and the number the model required.",
                      min=0, step=True),
                Panel("Decision latency", (
                    Target(select(d, ["latency_s"], fn="max", match=dm, by=("action",),
                                  fill=None), "$tag_action"),),
                      "Seconds from decision to the woken/slept node being usable, by action.",
                      unit="s", min=0, draw="points"),
                Panel("Decisions", (
                    Target(raw_select(d, ["latency_s", "required", "active_before",
                                          "active_after"],
                                      (*decision_cols, "shadow"), match=dm), fmt="table"),),
                      "Newest decisions first: action, pool, node, the RCA label acted on, "
                      "whether it ran in shadow mode, and how long it took.",
                      kind="table", w=24, h=9),
            )),
        ),
        variables=(Variable("pool", "Pool", tag_values((r, d), "pool")),),
        annotations=(Annotation("Autoscaler decisions",
                                raw_select(d, ["latency_s"], decision_cols, match=dm,
                                           limit=None),
                                text_column="action", tag_columns=decision_cols[1:]),),
        time_from="now-1h",
    )


def twin_dashboard() -> Dashboard:
    t, s, st = VPP_TOTAL, VPP_SITE, DER_STATE
    tm = {_tag(t, "der_type"): "der_type"}
    sm = {_tag(s, "site_id"): "site", _tag(s, "der_type"): "der_type"}
    dm = {_tag(st, "site_id"): "site", _tag(st, "der_type"): "der_type"}

    def total(metric: str) -> Target:
        return Target(select(t, [metric], match=tm, by=("der_type",), fill="none"),
                      "$tag_der_type")

    def site(metric: str, suffix: str = "") -> Target:
        return Target(select(s, [metric], match=sm, by=("site_id",), fill="none"),
                      f"$tag_site_id{suffix}")

    per_der = select(st, ["p_w"], fn="last", match=dm, by=("der_id", "health"), every=False)
    ders_by_health = (f"SELECT count({_ident(_field(st, 'p_w'))}) FROM ({per_der}) "
                      f"GROUP BY {_ident(_tag(st, 'health'))}")
    latest_fields = ["p_w", "q_var", "v_v", "f_hz", "soc_pct", "fuel_pct", "t_c", "latency_ms"]
    return Dashboard(
        "vpp-twin", "VPP · Digital twin",
        "The VPP digital twin: windowed aggregates over all sites by DER type (vpp_total), per "
        "site (vpp_site) and the latest state per DER (der_state). Power is positive for "
        "export/discharge.",
        (
            Row("VPP total by DER type (vpp_total)", (
                Panel("Generation by DER type", (total("gen_w"),),
                      "Power generated, stacked by DER type.", unit=WATT, stack=True, w=8),
                Panel("Load by DER type", (total("load_w"),),
                      "Power consumed (EV charging, battery charging, ...), by DER type.",
                      unit=WATT, w=8),
                Panel("Net power by DER type", (total("p_w"),),
                      "Net active power (export positive), by DER type.", unit=WATT, w=8),
                Panel("Storage energy", (total("storage_wh"),),
                      "Energy stored in batteries, by DER type.", unit=WATT_HOUR, min=0, w=8),
                Panel("Flexibility: charge / discharge available", (
                    Target(select(t, ["chg_avail_w"], match=tm, by=("der_type",), fill="none"),
                           "$tag_der_type charge"),
                    Target(select(t, ["dis_avail_w"], match=tm, by=("der_type",), fill="none"),
                           "$tag_der_type discharge")),
                      "Power the storage could still absorb (charge) or deliver (discharge).",
                      unit=WATT, min=0, w=8),
                Panel("DERs reporting", (total("ders"),),
                      "DERs contributing to each aggregation window, by DER type.", min=0, w=8),
            )),
            Row("Sites (vpp_site)", (
                Panel("Site generation", (site("gen_w"),), "Power generated per site.",
                      unit=WATT, w=8),
                Panel("Site load", (site("load_w"),), "Power consumed per site.", unit=WATT, w=8),
                Panel("Site net power", (site("p_w"),), "Net active power per site.",
                      unit=WATT, w=8),
                Panel("Site storage energy", (site("storage_wh"),),
                      "Energy stored per site.", unit=WATT_HOUR, min=0),
                Panel("Site flexibility", (site("chg_avail_w", " charge"),
                                           site("dis_avail_w", " discharge")),
                      "Charge / discharge power available per site.", unit=WATT, min=0),
            )),
            Row("DER state (der_state)", (
                Panel("DERs by health", (Target(ders_by_health, "$tag_health"),),
                      "Distinct DERs seen in each health state over the time range (a DER "
                      "that changed state is counted in each).", kind="bargauge", min=0, w=8),
                Panel("DER updates by health", (
                    Target(select(st, ["p_w"], fn="count", match=dm, by=("health",), fill="0"),
                           "$tag_health"),),
                      "Twin state updates written per interval, by health.", min=0,
                      stack=True, w=8),
                Panel("Twin latency p95", (
                    Target(select(st, ["latency_ms"], fn="percentile:95", match=dm,
                                  by=("der_type",), fill="none"), "$tag_der_type"),),
                      "95th percentile of sensor event to twin state, by DER type.",
                      unit=MS, min=0, w=8),
                Panel("Latest DER state", (
                    Target(select(st, latest_fields, fn="last", match=dm,
                                  by=("der_id", "der_type", "site_id", "health"), every=False),
                           fmt="table"),),
                      "Latest twin state of each DER in the time range (one row per DER and "
                      "health state).", kind="table", hide_time=True, w=24, h=10),
            )),
        ),
        variables=(
            Variable("der_type", "DER type", tag_values((t,), "der_type")),
            Variable("site", "Site", tag_values((s,), "site_id")),
        ),
    )


def definitions() -> tuple[Dashboard, ...]:
    """Every dashboard; raises :class:`SchemaError` if one refers to a name not in the schema."""
    return (cluster_dashboard(), queues_dashboard(), streaming_dashboard(),
            decisions_dashboard(), twin_dashboard())


def dashboards() -> list[dict[str, Any]]:
    """The Grafana JSON models, one per dashboard."""
    return [d.to_json() for d in definitions()]


def panel_queries() -> list[PanelQuery]:
    """Every query of every dashboard: panel targets, template variables and annotations."""
    return [q for d in definitions() for q in d.queries()]


# ---------------------------------------------------------------------------------------------
# files


def dump(model: Mapping[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def rendered_files() -> dict[str, str]:
    """File name → content of every generated dashboard JSON."""
    return {f"{m['uid']}.json": dump(m) for m in dashboards()}


def check(out: Path = DASHBOARDS_DIR) -> list[str]:
    """What differs between ``out`` and the generated JSON (empty = up to date)."""
    want = rendered_files()
    problems = []
    for name, text in want.items():
        path = out / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: stale")
    problems += [f"{p}: not generated by infra.grafana.build" for p in sorted(out.glob("*.json"))
                 if p.name not in want]
    return problems


def write(out: Path = DASHBOARDS_DIR) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    want = rendered_files()
    for stale in out.glob("*.json"):
        if stale.name not in want:
            stale.unlink()
    written = []
    for name, text in want.items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.grafana.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed JSON is not what this module generates")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR,
                        help="dashboards folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run: python -m infra.grafana.build", file=sys.stderr)
            return 1
        print(f"{len(rendered_files())} dashboards up to date in {args.out}")
        return 0
    written = write(args.out)
    print(f"{len(rendered_files())} dashboards in {args.out} ({len(written)} rewritten)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
