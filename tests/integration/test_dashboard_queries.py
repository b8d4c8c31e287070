"""Every dashboard query against the real InfluxDB, after a short live run (issue acceptance:
"a test runs every panel query of every dashboard against the real InfluxDB after a short live
run").

The "short live run" is a deterministic one: a minute of points (6 samples, 10 s apart) for
every measurement the dashboards read, built with :func:`monitor.influx.line` (so checked
against :mod:`monitor.schema`) with the tags, value ranges and field types the real writers use
(node agents, queue collector, stream-progress exporter, diagnoser, orchestrator, twin job).
Then every panel target, template variable and annotation of
:func:`infra.grafana.build.panel_queries` is rendered as Grafana sends it (last 15 min,
``$__interval`` = 10s, template variables once "All" and once a selection of the written values)
and sent to ``/query`` the way the provisioned data source does (GET, ``db=vpp``): the response
has no error, and every query returns at least one series holding a value, unless
``EXPECTED_EMPTY`` lists it with the reason.

The points are timestamped about 12 minutes in the past: inside the dashboards' 15-minute range,
but outside the window of every live reader (diagnoser and orchestrator 60 s, demo view 90 s,
the other integration tests' own start times), so the test can run next to a live run without
the diagnoser or the orchestrator acting on its points. It only adds points to the real database;
it deletes nothing. InfluxDB is all it needs: when it already answers, the test uses it as it is
(even while a Spark application holds the workers); otherwise the session's ``platform`` fixture
brings the platform up first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from diagnoser.labels import RcaLabel
from infra.grafana.build import PanelQuery, VariableValue, panel_queries
from infra.topology import Topology
from monitor import influx
from monitor.schema import (
    ALL,
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
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TIME_RANGE = "15m"            # the dashboards' default range ("now-15m", render's default)
INTERVAL = "10s"              # $__interval / $interval
SAMPLES, STEP_S = 6, 10       # the "short live run": one minute, one sample every 10 s
RUN_ENDS_AGO_S = 720          # its last sample, seconds before the test (range is 900 s)

# (dashboard uid, panel title, refId) -> why the query may legitimately return no series.
# Every measurement a dashboard reads gets points below, so nothing is expected to be empty.
EXPECTED_EMPTY: dict[tuple[str, str, str], str] = {}

# What the "selected" run picks for each template variable: values the live run wrote, several
# where it can (regex alternation) and with dots (regex escaping).
SELECTED: dict[str, dict[str, VariableValue]] = {
    "vpp-cluster": {"node": ["worker-0", "channel-0"]},
    "vpp-queues": {"node": "channel-0", "queue": "vpp.telemetry.stream"},
    "vpp-streaming": {"query": ["ingest", "twin"]},
    "vpp-decisions": {"pool": "processing"},
    "vpp-twin": {"der_type": ["pv", "battery"], "site": "site-0000"},
}

QUERIES = panel_queries()
_LEFTOVER = re.compile(r"\$\w|\$\{|\[\[")   # a Grafana macro or variable render() left
_FROM = re.compile(r'\bFROM\s+("[^"]+"(?:\s*,\s*"[^"]+")*)', re.IGNORECASE)
_REGEX = re.compile(r"(=~|!~)\s*/(?:\\.|[^/\\])*/")
_ALIAS = re.compile(r'\bAS\s+"[^"]+"', re.IGNORECASE)
_KEY = re.compile(r'\bWITH\s+KEY\s*=\s*"([^"]+)"', re.IGNORECASE)
_IDENT = re.compile(r'"([^"]+)"')
_SCHEMA = {m.name: m for m in ALL}


def _measurements(query: str) -> set[str]:
    return {name for group in _FROM.findall(query) for name in _IDENT.findall(group)}


# ---------------------------------------------------------------------------------------------
# the short live run


def _nodes(i: int) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """Alg. 1 samples of the node agents: one Spark worker, one core node, one channel."""
    for m, tags, cpu, mem, seq0 in (
        (PROCESSING, {"cluster": "processing", "node": "worker-0", "role": "spark-worker"},
         62.0, 48.5, 1200),
        (PROCESSING, {"cluster": "core", "node": "namenode", "role": "hdfs-namenode"},
         7.5, 31.0, 1200),
        (QUEUING, {"cluster": "queue", "node": "channel-0", "role": "rabbitmq"},
         38.0, 22.4, 1200),
    ):
        yield m.name, tags, {
            "cpu": cpu + 2.5 * i, "memory": mem + 0.3 * i, "disk": 9.95,
            "disk_read_bps": 0.0 if i % 2 else 4096.0, "disk_write_bps": 52_000.0 + 800.0 * i,
            "net_rx_bps": 310_000.0 + 1500.0 * i, "net_tx_bps": 24_000.0 + 100.0 * i,
            "processes": 4, "sample_seq": seq0 + i,
        }


def _queues(i: int) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """The queue collector: RabbitMQ management API per queue, and the stream's lag."""
    yield QUEUE.name, {"node": "channel-0", "queue": "vpp.telemetry.stream"}, {
        "messages": 150_000 + 4_800 * i, "publish_rate": 480.0 + i, "deliver_rate": 455.0,
        "consumers": 1, "bytes": 61_000_000 + 2_000_000 * i}
    yield QUEUE.name, {"node": "channel-0", "queue": "vpp.metrics.writer"}, {
        "messages": i % 2, "publish_rate": 1.2, "deliver_rate": 1.2, "consumers": 1,
        "bytes": 350 * (i % 2)}
    end, lag = 150_000 + 4_800 * i, 900 + 250 * i
    yield STREAM_LAG.name, {"node": "channel-0", "stream": "vpp.telemetry.stream"}, {
        "end_offset": end, "committed_offset": end - lag, "lag": lag}


def _spark(i: int) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """The stream-progress exporter (per trigger) and the batch writers (per commit)."""
    progress = (("ingest", 470.0, 0), ("twin", 450.0, 42), ("aggregates", 465.0, 20_869))
    for query, rate, state in progress:
        yield STREAM_PROGRESS.name, {"query": query}, {
            "input_rate": rate + 3.0 * i, "processed_rate": rate + 20.0, "batch_id": 100 + i,
            "batch_duration_ms": 1850.0 + 40.0 * i, "num_input_rows": int(rate * STEP_S),
            "state_rows": state, "late_rows_dropped": 2 if i == 3 else 0, "executors": 1}
    for query, p50 in (("ingest", 1400.0), ("twin", 2900.0)):
        yield STREAM_BATCH.name, {"query": query}, {
            "valid_rows": 4_690 + i, "quarantined_rows": 3 if query == "ingest" else 0,
            "latency_p50_ms": p50 + 10.0 * i, "latency_p95_ms": 1.6 * p50 + 10.0 * i,
            "batch_id": 100 + i}


def _decisions(i: int) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """Alg. 2 labels of the diagnoser and Alg. 3 decisions of the orchestrator."""
    label = RcaLabel.NO_ACTION if i < 2 else RcaLabel.UP_PROCESSING
    if label is RcaLabel.NO_ACTION:   # no pool, no node: empty tags are left out
        yield DIAGNOSIS.name, {"label": label.tag, "rule": "none", "mode": "improved"}, {
            "code": int(label), "window_s": 60.0}
    else:
        yield DIAGNOSIS.name, {"label": label.tag, "pool": "processing", "node": "worker-0",
                               "rule": "processing_behind", "mode": "improved"}, {
            "code": int(label), "observed": 3_400.0 + 250.0 * i, "threshold": 3_000.0,
            "window_s": 60.0}
    if i == 2:   # the orchestrator acts on the first R_up^CL: wakes a worker
        yield DECISION.name, {"action": "wake", "pool": "processing", "node": "worker-2",
                              "label": RcaLabel.UP_PROCESSING.tag, "shadow": "false",
                              "policy": "ours", "outcome": "done"}, {
            "required": 2, "active_before": 1, "active_after": 2, "latency_s": 14.2,
            "reason": "R_up^CL (processing_behind): 3900 >= 3000 over 60 s", "rule_path": ""}
    if i == 4:   # and records what it would do next in shadow (no latency: nothing happened)
        yield DECISION.name, {"action": "wake", "pool": "processing", "node": "worker-1",
                              "label": RcaLabel.UP_PROCESSING.tag, "shadow": "true",
                              "policy": "ours", "outcome": "shadow"}, {
            "required": 3, "active_before": 2, "active_after": 3,
            "reason": "R_up^CL held: cooldown", "rule_path": ""}


DERS = (  # der_id, der_type, site_id
    ("pv-base-000", "pv", "site-0000"),
    ("pv-base-001", "pv", "site-0001"),
    ("battery-base-000", "battery", "site-0000"),
    ("ev_charger-base-000", "ev_charger", "site-0001"),
    ("wind-extra-001", "wind", "site-0000"),
    ("diesel-base-000", "diesel", "site-0001"),
)


STORAGE = {  # der_type -> (e_cap_wh, p_max_chg_w, p_max_dis_w)
    "battery": (13_500.0, 5_000.0, 5_000.0),
    "ev_charger": (60_000.0, 11_000.0, 0.0),
}


def _twin(i: int) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """The twin job: latest state per DER and windowed aggregates per site and over the VPP."""
    site_sum: dict[tuple[str, str], dict[str, Any]] = {}
    for n, (der_id, der_type, site) in enumerate(DERS):
        p_w = {"pv": 780.0 + 10.0 * i, "battery": 1_500.0, "ev_charger": -7_200.0,
               "wind": 5_300.0 - 40.0 * i, "diesel": 12_000.0}[der_type]
        fields: dict[str, Any] = {
            "p_w": p_w, "q_var": -120.0, "v_v": 231.9, "f_hz": 50.01, "t_c": 14.5,
            "e_wh": 1.0 + i, "last_seq": 1_000 + i, "readings": 1_001 + i,
            "latency_ms": 2_400 + 37 * n + 11 * i}
        cap, max_chg, max_dis = STORAGE.get(der_type, (0.0, 0.0, 0.0))
        soc = 55.0 + i
        if der_type in STORAGE:
            fields |= {"soc_pct": soc, "e_cap_wh": cap, "p_max_chg_w": max_chg,
                       "p_max_dis_w": max_dis}
        if der_type == "diesel":
            fields["fuel_pct"] = 80.0 - 0.5 * i
        # one DER stops reporting at the end: the health panels see two states
        health = "stale" if der_type == "wind" and i == SAMPLES - 1 else "ok"
        yield DER_STATE.name, {"der_id": der_id, "der_type": der_type, "site_id": site,
                               "health": health}, fields
        agg = site_sum.setdefault((site, der_type), {
            "ders": 0, "p_w": 0.0, "gen_w": 0.0, "load_w": 0.0, "storage_wh": 0.0,
            "chg_avail_w": 0.0, "dis_avail_w": 0.0})
        agg["ders"] += 1
        agg["p_w"] += p_w
        agg["gen_w"] += max(p_w, 0.0)
        agg["load_w"] += max(-p_w, 0.0)
        agg["storage_wh"] += cap * soc / 100 if der_type in STORAGE else 0.0
        agg["chg_avail_w"] += max(max_chg + min(p_w, 0.0), 0.0)
        agg["dis_avail_w"] += max(max_dis - max(p_w, 0.0), 0.0)
    totals: dict[str, dict[str, Any]] = {}
    for (site, der_type), agg in site_sum.items():
        yield VPP_SITE.name, {"site_id": site, "der_type": der_type}, dict(agg)
        tot = totals.setdefault(der_type, {k: 0 if k == "ders" else 0.0 for k in agg})
        for k, v in agg.items():
            tot[k] += v
    for der_type, tot in totals.items():
        yield VPP_TOTAL.name, {"der_type": der_type}, tot


WRITERS = (_nodes, _queues, _spark, _decisions, _twin)


def _typed(fields: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """Match the field types the database already holds (a type conflict rejects the write)."""
    out = {}
    for k, v in fields.items():
        kind = types.get(k)
        if kind == "integer" and isinstance(v, float):
            v = round(v)
        elif kind == "float" and isinstance(v, int):
            v = float(v)
        out[k] = v
    return out


def live_run_lines(end_ns: int, types: Mapping[str, Mapping[str, str]] | None = None
                   ) -> list[str]:
    """Line protocol of the short live run whose last sample is at ``end_ns``."""
    types = types or {}
    lines = []
    for i in range(SAMPLES):
        t = end_ns - (SAMPLES - 1 - i) * STEP_S * 1_000_000_000
        for writer in WRITERS:
            for n, (name, tags, fields) in enumerate(writer(i)):
                # points of one sample a few µs apart, like writers that each take their own time
                lines.append(influx.line(name, tags, _typed(fields, types.get(name, {})),
                                         t + n * 1_000))
    return lines


def written() -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    """measurement -> (fields with a value, tag -> values) of the short live run."""
    out: dict[str, tuple[set[str], dict[str, set[str]]]] = {}
    for i in range(SAMPLES):
        for writer in WRITERS:
            for name, tags, fields in writer(i):
                have, values = out.setdefault(name, (set(), {}))
                have.update(k for k, v in fields.items() if v is not None)
                for k, v in tags.items():
                    values.setdefault(k, set()).add(v)
    return out


# ---------------------------------------------------------------------------------------------
# InfluxDB, as the Grafana data source talks to it


class Influx:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.url = topo.influx_url + "/query"
        self.http = requests.Session()

    def query(self, q: str) -> dict[str, Any]:
        """One InfluxQL statement with GET /query?db=vpp&epoch=ms (httpMode GET); the result."""
        r = self.http.get(self.url, params={"db": influx.DATABASE, "q": q, "epoch": "ms"},
                          timeout=20)
        assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}\n{q}"
        body = r.json()
        assert "error" not in body, f"{body['error']}\n{q}"
        [result] = body["results"]
        assert "error" not in result, f"InfluxQL error: {result['error']}\n{q}"
        return result

    def field_types(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for s in self.query("SHOW FIELD KEYS").get("series", []):
            out[s["name"]] = {k: kind for k, kind in s["values"]}
        return out


def _ping(topo: Topology) -> bool:
    try:
        return requests.get(topo.influx_url + "/ping", timeout=3).status_code == 204
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def db(request: pytest.FixtureRequest, topo: Topology) -> Influx:
    if not _ping(topo):
        request.getfixturevalue("platform")   # brings the platform up (and down again)
    influx.ensure_database(topo)             # idempotent; the metrics writer creates it too
    return Influx(topo)


@pytest.fixture(scope="module")
def live_run(db: Influx, topo: Topology) -> list[str]:
    end_ns = time.time_ns() - RUN_ENDS_AGO_S * 1_000_000_000
    lines = live_run_lines(end_ns, db.field_types())
    influx.write_lines(topo, lines, precision="n")
    return lines


# ---------------------------------------------------------------------------------------------
# the tests


def _id(q: PanelQuery) -> str:
    return f"{q.dashboard_uid}/{q.panel_title}/{q.ref_id}"


def _values(result: Mapping[str, Any]) -> Iterator[Any]:
    """Every non-time value of every series of a result."""
    for s in result.get("series", []):
        cols = s["columns"]
        for row in s.get("values") or []:
            yield from (v for c, v in zip(cols, row, strict=True) if c != "time")


def test_the_live_run_alone_feeds_every_query():
    """Whatever else the database holds, the live run has every measurement, field and tag the
    queries name, and every template-variable value the "selected" run picks."""
    run = written()
    read = {m for q in QUERIES for m in _measurements(q.render())}
    assert read - set(run) == set(), "add points for these to the live run"
    assert set(run) - read == set(), "the live run writes what no dashboard reads"
    problems = []
    for q in QUERIES:
        text = _REGEX.sub("", q.render())          # regex bodies are values, not names
        names = set(_IDENT.findall(_ALIAS.sub("", _FROM.sub("", text))))
        for name in _measurements(text):
            m, (fields, tags) = _SCHEMA[name], run[name]
            problems += [f"{_id(q)}: {name}.{n} not written" for n in sorted(names)
                         if (n in m.fields and n not in fields) or (n in m.tags and n not in tags)]
        if q.kind == "variable":
            [key] = _KEY.findall(text)
            offered = set().union(*(run[name][1].get(key, set()) for name in _measurements(text)))
            chosen = SELECTED[q.dashboard_uid][q.ref_id]
            chosen = {chosen} if isinstance(chosen, str) else set(chosen)
            problems += [f"{_id(q)}: selected {v!r} not written" for v in sorted(chosen - offered)]
    assert problems == []
    assert set(SELECTED) == {q.dashboard_uid for q in QUERIES}
    for q in QUERIES:
        assert set(SELECTED[q.dashboard_uid]) == set(q.variables), q.dashboard_uid
    stale = set(EXPECTED_EMPTY) - {(q.dashboard_uid, q.panel_title, q.ref_id) for q in QUERIES}
    assert stale == set(), "EXPECTED_EMPTY names queries the dashboards no longer have"


@pytest.mark.parametrize("selection", ["all", "selected"])
@pytest.mark.parametrize("q", QUERIES, ids=_id)
def test_dashboard_query_runs_and_returns_data(db: Influx, live_run: list[str], q: PanelQuery,
                                               selection: str):
    variables = SELECTED[q.dashboard_uid] if selection == "selected" else None
    rendered = q.render(TIME_RANGE, INTERVAL, variables)
    assert not _LEFTOVER.search(rendered), f"macro left: {rendered}"
    result = db.query(rendered)
    series = result.get("series", [])
    empty_reason = EXPECTED_EMPTY.get((q.dashboard_uid, q.panel_title, q.ref_id))
    if empty_reason is not None:
        return
    where = f"{_id(q)} ({q.kind}, {selection}): {rendered}"
    assert series, f"no series: {where}"
    assert any(v is not None for v in _values(result)), f"only nulls: {where}"
    if q.kind == "variable":
        offered = {row[1] for s in series for row in s["values"]}
        chosen = SELECTED[q.dashboard_uid][q.ref_id]
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        assert set(chosen) <= offered, f"{where}: offers {sorted(offered)}"
