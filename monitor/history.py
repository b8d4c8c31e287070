"""Read metric history back from InfluxDB as points of the one schema.

Points are plain dicts ``{measurement, tags, fields, time}`` with ``time`` in epoch
nanoseconds: the shape the diagnoser's window builder, the autoscaler's features and the model's
dataset builder all take, live or from a time range (``make retrain``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infra.topology import Topology
from monitor import influx
from monitor.schema import ALL

_BY_NAME = {m.name: m for m in ALL}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def fetch(topo: Topology, wanted: Mapping[str, Sequence[str]], start_ns: int, end_ns: int,
          cli: influx.InfluxDBClient | None = None) -> list[dict[str, object]]:
    """Every point of ``wanted`` (measurement -> fields) in [start_ns, end_ns], all tags kept."""
    cli = cli or influx.client(topo)
    points: list[dict[str, object]] = []
    for name, fields in wanted.items():
        m = _BY_NAME.get(name)
        if m is None:
            raise KeyError(f"{name!r} is not a measurement of monitor.schema")
        cols = [f for f in fields if f in m.fields] or list(m.fields)
        q = (f"SELECT {', '.join(_quote(c) for c in cols)} FROM {_quote(name)} "
             f"WHERE time >= {int(start_ns)} AND time <= {int(end_ns)} GROUP BY *")
        result = cli.query(q, epoch="ns")
        for (_m, tags), rows in result.items():
            for row in rows:
                values = {c: row[c] for c in cols if row.get(c) is not None}
                if values:
                    points.append({"measurement": name, "tags": dict(tags or {}),
                                   "fields": values, "time": int(row["time"])})
    return points


def node_last_seen(points: Sequence[Mapping[str, object]]) -> dict[str, float]:
    """Latest agent sample per node, epoch seconds (a dormant node sends nothing)."""
    seen: dict[str, float] = {}
    for p in points:
        if p["measurement"] in ("processing_cluster", "queuing_cluster"):
            node = str(p["tags"].get("node", ""))  # type: ignore[union-attr]
            seen[node] = max(seen.get(node, 0.0), int(p["time"]) / 1e9)  # type: ignore[arg-type]
    return seen


def active_counts(topo: Topology, points: Sequence[Mapping[str, object]], now_s: float,
                  fresh_s: float = 8.0) -> dict[str, int]:
    """Active nodes per scalable pool: those whose agent reported in the last ``fresh_s``."""
    seen = node_last_seen(points)
    return {pool: sum(1 for n in topo.pool_nodes(pool) if now_s - seen.get(n.name, 0) <= fresh_s)
            for pool in ("queue", "processing")}
