"""The demo's live status view: a :class:`Snapshot` of the running system (collected from
InfluxDB and Docker) and a pure renderer, so what the terminal shows is unit-tested."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from diagnoser.labels import RcaLabel
from infra.topology import SCALABLE_POOLS, Topology
from ingest.topology import TELEMETRY_STREAM
from monitor import influx


@dataclass(frozen=True)
class Snapshot:
    elapsed_s: float
    phase: str
    states: Mapping[str, str]                  # node -> active | paused | stopped
    publish_rate: Mapping[str, float]          # channel -> readings/s into its stream
    lag: Mapping[str, float]                   # channel -> readings not yet read by Spark
    input_rate: float | None = None            # Spark ingest query, rows/s
    processed_rate: float | None = None
    batch_ms: float | None = None
    label: str | None = None                   # newest RCA label (tag) and its rule
    label_rule: str | None = None
    action: str | None = None                  # newest orchestrator decision
    twin_gen_w: Mapping[str, float] = field(default_factory=dict)   # der_type -> W
    twin_storage_wh: float | None = None


def _num(v: float | None, unit: str = "", width: int = 7) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width},.0f}{unit}"


def render(s: Snapshot, topo: Topology) -> list[str]:
    """The status block, one string per line (no colour: it also goes to CI logs)."""
    lines = [f"VPP digital twin demo  t={s.elapsed_s:5.0f} s  phase: {s.phase}"]
    lines.append(f"  Spark ingest  in {_num(s.input_rate)} /s  processed "
                 f"{_num(s.processed_rate)} /s  batch {_num(s.batch_ms)} ms")
    for node in topo.pool_nodes("queue"):
        st = s.states.get(node.name, "?")
        lines.append(f"  {node.name:<10} {st:<8} publish {_num(s.publish_rate.get(node.name))} /s"
                     f"  queue depth (stream lag) {_num(s.lag.get(node.name))}")
    for pool in SCALABLE_POOLS:
        nodes = topo.pool_nodes(pool)
        active = [n.name for n in nodes if s.states.get(n.name) == "active"]
        dormant = [n.name for n in nodes if s.states.get(n.name) != "active"]
        lines.append(f"  {pool:<10} active {len(active)}/{len(nodes)}: "
                     f"{', '.join(active) or '-'}   dormant: {', '.join(dormant) or '-'}")
    label = s.label or "-"
    if s.label:
        with contextlib.suppress(ValueError):   # a tag this version does not know
            label = f"{RcaLabel.from_tag(s.label).paper_name} ({s.label})"
    lines.append(f"  RCA label: {label}" + (f" by rule {s.label_rule}" if s.label_rule else ""))
    lines.append(f"  orchestrator: {s.action or 'no action yet'}")
    gen = ", ".join(f"{t} {w / 1000:,.1f} kW" for t, w in sorted(s.twin_gen_w.items()) if w)
    lines.append(f"  twin: generation {gen or '-'}; storage "
                 f"{'-' if s.twin_storage_wh is None else f'{s.twin_storage_wh / 1000:,.1f} kWh'}")
    return lines


def one_line(s: Snapshot) -> str:
    """Compact form for a non-terminal (CI log): one line per refresh."""
    active = {p: sum(1 for v in s.states.items() if v[1] == "active" and v[0].startswith(
        "channel" if p == "queue" else "worker")) for p in SCALABLE_POOLS}
    return (f"t={s.elapsed_s:4.0f}s {s.phase:<8} pub={sum(s.publish_rate.values()):6.0f}/s "
            f"in={s.input_rate or 0:6.0f}/s done={s.processed_rate or 0:6.0f}/s "
            f"lag={sum(s.lag.values()):7.0f} channels={active['queue']} "
            f"workers={active['processing']} label={s.label or '-'} "
            f"action={s.action or '-'}")


# ---------------------------------------------------------------------------------------------
# collection (I/O)


def _by_tag(cli: influx.InfluxDBClient, query: str, tag: str, column: str) -> dict[str, float]:
    out = {}
    for (_m, tags), rows in cli.query(query).items():
        for row in rows:
            if row.get(column) is not None:
                out[(tags or {}).get(tag, "")] = float(row[column])
    return out


def collect(topo: Topology, cli: influx.InfluxDBClient, states: Mapping[str, str],
            elapsed_s: float, phase: str) -> Snapshot:
    recent = "time > now() - 30s"
    publish = _by_tag(cli, f"SELECT last(\"publish_rate\") AS v FROM \"rabbitmq_queue\" WHERE "
                           f"\"queue\" = '{TELEMETRY_STREAM}' AND {recent} GROUP BY \"node\"",
                      "node", "v")
    lag = _by_tag(cli, f"SELECT last(\"lag\") AS v FROM \"stream_lag\" WHERE {recent} "
                       "GROUP BY \"node\"", "node", "v")
    spark = list(cli.query("SELECT last(\"input_rate\") AS i, last(\"processed_rate\") AS p, "
                           "last(\"batch_duration_ms\") AS b FROM \"spark_stream\" WHERE "
                           f"\"query\" = 'ingest' AND {recent}").get_points())
    rca = list(cli.query("SELECT \"code\", \"label\", \"rule\" FROM \"rca\" WHERE "
                         "time > now() - 60s ORDER BY time DESC LIMIT 1").get_points())
    dec = list(cli.query("SELECT \"reason\", \"action\", \"node\", \"outcome\", \"latency_s\" "
                         "FROM \"autoscaler_decision\" ORDER BY time DESC LIMIT 1").get_points())
    gen = _by_tag(cli, "SELECT last(\"gen_w\") AS v FROM \"vpp_total\" WHERE time > now() - 90s "
                       "GROUP BY \"der_type\"", "der_type", "v")
    storage = _by_tag(cli, "SELECT last(\"storage_wh\") AS v FROM \"vpp_total\" WHERE "
                           "time > now() - 90s GROUP BY \"der_type\"", "der_type", "v")
    action = None
    if dec:
        d = dec[0]
        action = (f"{d['action']} {d['node']} ({d['outcome']}"
                  + (f", {d['latency_s']:.1f} s" if d.get("latency_s") is not None else "") + ")")
    sp = spark[0] if spark else {}
    return Snapshot(elapsed_s, phase, dict(states), publish, lag, sp.get("i"), sp.get("p"),
                    sp.get("b"), rca[0]["label"] if rca else None, rca[0]["rule"] if rca else None,
                    action, gen, sum(storage.values()) if storage else None)
