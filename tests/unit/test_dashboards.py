"""Grafana dashboards as code: stable uids, one query per panel at least, every query renders to
plain InfluxQL that only names what monitor.schema defines, the committed JSON is current, and
the provisioning points at the dashboards folder and the data source uid. Pure: no Grafana, no
InfluxDB (the live run of every query is the integration test's job)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from infra.grafana import build
from infra.topology import load_topology
from monitor import schema
from monitor.influx import DATABASE

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "infra" / "grafana"
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yml"
EXPECTED_UIDS = {"vpp-cluster", "vpp-queues", "vpp-streaming", "vpp-decisions", "vpp-twin"}

# ---------------------------------------------------------------------------------------------
# an InfluxQL reference checker, independent of the builder

_BY_NAME = {m.name: m for m in schema.ALL}
_REGEX = re.compile(r"(=~|!~)\s*/(?:\\.|[^/\\])*/")
_STRING = re.compile(r"'(?:\\.|[^'\\])*'")
_FROM = re.compile(r'\bFROM\s+("[^"]+"(?:\s*,\s*"[^"]+")*)', re.IGNORECASE)
_ALIAS = re.compile(r'\bAS\s+"[^"]+"', re.IGNORECASE)
_KEY = re.compile(r'\bWITH\s+KEY\s*=\s*"([^"]+)"', re.IGNORECASE)
_IDENT = re.compile(r'"([^"]+)"')
_LEFTOVER = re.compile(r"\$\w|\$\{|\[\[")


def schema_problems(query: str) -> list[str]:
    """Measurements, tags and fields a query names that monitor.schema does not define."""
    text = _STRING.sub("''", _REGEX.sub("=~ //", query))
    sources = [name for match in _FROM.findall(text) for name in _IDENT.findall(match)]
    if not sources:
        return ["no FROM \"measurement\""]
    problems = [f"measurement {s!r} is not in monitor.schema" for s in sources
                if s not in _BY_NAME]
    known = [_BY_NAME[s] for s in sources if s in _BY_NAME]
    for key in _KEY.findall(text):
        problems += [f"{m.name}: {key!r} is not a tag" for m in known if key not in m.tags]
    rest = _KEY.sub("", _ALIAS.sub("", _FROM.sub("", text)))
    for ident in _IDENT.findall(rest):
        problems += [f"{m.name}: {ident!r} is neither a field nor a tag" for m in known
                     if ident not in m.fields and ident not in m.tags]
    return problems


def test_the_checker_catches_what_the_system_does_not_write():
    assert schema_problems('SELECT mean("cpu") FROM "processing_cluster" WHERE time > now() - 1m'
                           ) == []
    assert schema_problems('SELECT mean("cpux") FROM "processing_cluster"')
    assert schema_problems('SELECT mean("cpu") FROM "processing_clusters"')
    assert schema_problems('SELECT mean("cpu") FROM "cpu" WHERE "host" =~ /^a$/')
    assert schema_problems('SELECT mean("cpu") FROM "processing_cluster" GROUP BY "host"')
    assert schema_problems('SHOW TAG VALUES FROM "rabbitmq_queue", "rca" WITH KEY = "queue"')
    assert schema_problems('SELECT count("p_w") FROM (SELECT last("p_x") FROM "der_state")')
    # regex bodies and string literals are values, not names
    assert schema_problems('SELECT "lag" FROM "stream_lag" WHERE "node" =~ /"x"/ '
                           "AND \"stream\" = '\"y\"'") == []


# ---------------------------------------------------------------------------------------------
# dashboards


@pytest.fixture(scope="module")
def models() -> list[dict]:
    return build.dashboards()


@pytest.fixture(scope="module")
def queries() -> list[build.PanelQuery]:
    return build.panel_queries()


def _panels(model: dict) -> list[dict]:
    return [p for p in model["panels"] if p["type"] != "row"]


def test_dashboards_have_unique_stable_uids_and_titles(models):
    uids = [m["uid"] for m in models]
    titles = [m["title"] for m in models]
    assert set(uids) == EXPECTED_UIDS and len(uids) == len(EXPECTED_UIDS)
    assert len(set(titles)) == len(titles)
    for m in models:
        assert m["schemaVersion"] == build.SCHEMA_VERSION
        assert build.DASHBOARD_TAG in m["tags"]


def test_every_panel_has_a_raw_influxql_query_on_the_vpp_datasource(models):
    for m in models:
        panels = _panels(m)
        assert panels, m["uid"]
        ids = [p["id"] for p in m["panels"]]
        assert len(set(ids)) == len(ids), m["uid"]
        titles = [p["title"] for p in panels]
        assert len(set(titles)) == len(titles), f"{m['uid']}: duplicate panel titles"
        for p in panels:
            where = f"{m['uid']} / {p['title']}"
            assert p["targets"], f"{where}: no query"
            assert p["datasource"]["uid"] == build.DATASOURCE_UID, where
            assert p["description"], f"{where}: say what the panel means"
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, where
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs), where
            for t in p["targets"]:
                assert t["rawQuery"] is True and t["query"], where
                assert t["datasource"]["uid"] == build.DATASOURCE_UID, where
        for v in m["templating"]["list"]:
            assert v["datasource"]["uid"] == build.DATASOURCE_UID
            assert v["query"].startswith("SHOW TAG VALUES FROM ")
            assert v["allValue"] == build.ALL_VALUE
        for a in m["annotations"]["list"]:
            if not a.get("builtIn"):
                assert a["datasource"]["uid"] == build.DATASOURCE_UID
                assert a["target"]["query"] == a["query"]


def test_panel_queries_cover_every_target_variable_and_annotation(models, queries):
    in_models = {(m["uid"], p["title"], t["refId"], t["query"])
                 for m in models for p in _panels(m) for t in p["targets"]}
    in_models |= {(m["uid"], f"${v['name']}", v["name"], v["query"])
                  for m in models for v in m["templating"]["list"]}
    in_models |= {(m["uid"], a["name"], "Anno", a["query"])
                  for m in models for a in m["annotations"]["list"] if not a.get("builtIn")}
    listed = [(q.dashboard_uid, q.panel_title, q.ref_id, q.query) for q in queries]
    assert len(set(listed)) == len(listed)
    assert set(listed) == in_models


def test_every_rendered_query_is_plain_influxql(queries):
    for q in queries:
        where = f"{q.dashboard_uid} / {q.panel_title} / {q.ref_id}"
        for rendered in (q.render(), q.render("1h", "1m", {v: "x" for v in q.variables})):
            assert re.match(r"^(SELECT|SHOW) ", rendered), where
            assert not _LEFTOVER.search(rendered), f"{where}: macro left in {rendered}"
            assert rendered.count("(") == rendered.count(")"), where
            assert ";" not in rendered, where
        if q.kind != "variable":
            assert "time >= now() - 15m" in q.render(), f"{where}: not limited to the range"
        if "GROUP BY time(" in q.query:
            assert "GROUP BY time(10s)" in q.render(), where


def test_every_query_names_only_what_the_schema_defines(queries):
    problems = [f"{q.dashboard_uid} / {q.panel_title} / {q.ref_id}: {p}"
                for q in queries for p in schema_problems(q.render())]
    assert problems == []


def test_the_dashboards_cover_what_the_brief_asks_for(queries):
    used: dict[str, set[str]] = {}
    for q in queries:
        text = _REGEX.sub("", q.render())
        for m in {n for f in _FROM.findall(text) for n in _IDENT.findall(f)}:
            if q.kind == "panel":
                used.setdefault(f"{q.dashboard_uid}:{m}", set()).update(_IDENT.findall(text))
    nodes = {"cpu", "memory", "disk", "disk_read_bps", "disk_write_bps", "net_rx_bps",
             "net_tx_bps", "processes"}                      # Tables I/II
    assert nodes <= used["vpp-cluster:processing_cluster"]
    assert nodes <= used["vpp-cluster:queuing_cluster"]
    assert {"messages", "publish_rate", "deliver_rate"} <= used["vpp-queues:rabbitmq_queue"]
    assert "lag" in used["vpp-queues:stream_lag"]
    assert {"input_rate", "processed_rate", "batch_duration_ms", "num_input_rows", "state_rows",
            "late_rows_dropped", "executors"} <= used["vpp-streaming:spark_stream"]
    assert {"latency_p50_ms", "latency_p95_ms", "valid_rows", "quarantined_rows"} \
        <= used["vpp-streaming:spark_batch"]
    assert {"code", "rule", "observed", "threshold"} <= used["vpp-decisions:rca"]
    assert {"action", "pool", "node", "label", "latency_s"} \
        <= used["vpp-decisions:autoscaler_decision"]
    assert {"gen_w", "load_w", "p_w", "der_type", "storage_wh", "chg_avail_w", "dis_avail_w"} \
        <= used["vpp-twin:vpp_total"]
    assert {"site_id"} <= used["vpp-twin:vpp_site"]
    assert {"health"} <= used["vpp-twin:der_state"]
    kinds = {(q.dashboard_uid, q.kind) for q in queries}
    assert ("vpp-decisions", "annotation") in kinds
    variables = {(q.dashboard_uid, q.ref_id) for q in queries if q.kind == "variable"}
    assert {("vpp-cluster", "node"), ("vpp-twin", "site")} <= variables


def test_a_renamed_schema_field_breaks_the_build(monkeypatch):
    renamed = dataclasses.replace(
        schema.PROCESSING, fields=tuple("cpu_pct" if f == "cpu" else f
                                        for f in schema.PROCESSING.fields))
    monkeypatch.setattr(build, "PROCESSING", renamed)
    with pytest.raises(build.SchemaError, match=r"processing_cluster\.cpu\b"):
        build.dashboards()
    with pytest.raises(build.SchemaError, match=r"rabbitmq_queue\.host: not a tag"):
        build.select(schema.QUEUE, ["messages"], by=("host",))


# ---------------------------------------------------------------------------------------------
# rendering


def test_render_expands_grafana_macros_and_the_all_idiom():
    q = build.PanelQuery("d", "p", "A",
                         'SELECT mean("cpu") FROM "processing_cluster" WHERE "node" =~ /^$node$/ '
                         "AND $timeFilter GROUP BY time($__interval) -- $__interval_ms",
                         variables=("node",))
    assert q.render() == ('SELECT mean("cpu") FROM "processing_cluster" WHERE "node" =~ /^.*$/ '
                          "AND time >= now() - 15m GROUP BY time(10s) -- 10000")
    assert "=~ /^worker-0$/" in q.render(variables={"node": "worker-0"})
    assert "=~ /^(a\\.b|c)$/" in q.render(variables={"node": ["a.b", "c"]})
    assert "=~ /^.*$/" in q.render(variables={"node": "All"})
    assert "time >= now() - 1h" in q.render("1h", "1m")
    assert "${node}" not in build.render("x ${node} [[node]]", variables={"node": "n"})
    assert build.render("x ${node} [[node]]", variables={"node": "n"}) == "x n n"
    assert build.render("x $other") == "x $other"          # unknown: left for the check
    with pytest.raises(ValueError, match="interval"):
        q.render(interval="ten seconds")
    with pytest.raises(ValueError, match=r"variables\.node"):
        build.render("WHERE \"node\" = '$node'", variables={"node": "All"})


# ---------------------------------------------------------------------------------------------
# committed JSON and provisioning


def test_committed_json_is_what_the_generator_makes(tmp_path):
    assert build.check() == [], "run: python -m infra.grafana.build"
    assert build.main(["--check"]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "vpp-twin.json").write_text("{}\n")
    (tmp_path / "old.json").write_text("{}\n")
    assert len(build.check(tmp_path)) == 2


def _compose_service() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    return compose["services"]["grafana"]


def _mounts(service: dict) -> dict[Path, str]:
    out = {}
    for vol in service["volumes"]:
        source, target, *_ = vol.split(":")
        if source.startswith("."):
            out[(COMPOSE.parent / source).resolve()] = target
    return out


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid():
    topo = load_topology()
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
    [source] = ds["datasources"]
    assert source["uid"] == build.DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["url"] == topo.influx_url == "http://127.0.0.1:8086"
    assert source["jsonData"]["dbName"] == DATABASE
    assert source["jsonData"]["version"] == "InfluxQL"

    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/vpp.yaml").read_text())
    [provider] = prov["providers"]
    assert provider["type"] == "file"
    mounts = _mounts(_compose_service())
    assert mounts[build.DASHBOARDS_DIR] == provider["options"]["path"]
    assert mounts[build.PROVISIONING_DIR] == "/etc/grafana/provisioning"
    for sub in ("datasources", "dashboards"):
        assert list((build.PROVISIONING_DIR / sub).glob("*.yaml"))


def test_compose_runs_grafana_on_loopback_with_host_networking():
    svc = _compose_service()
    assert svc["image"].startswith("grafana/grafana:")
    assert svc["network_mode"] == "host"
    env = svc["environment"]
    assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert str(env["GF_SERVER_HTTP_PORT"]) == "3000"
    assert "ports" not in svc                    # host networking: no published ports
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == PurePosixPath(_mounts(svc)[build.DASHBOARDS_DIR])
    assert (build.DASHBOARDS_DIR / home.name).exists()
