"""The topology file is the single source of ports, pools and limits: it must load, and any
mistake must fail naming the field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.topology import DEFAULT_PATH, TopologyError, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text())


def test_default_topology_matches_the_design(raw):
    topo = parse_topology(raw)
    by_pool = {p: [n.name for n in topo.pool_nodes(p)] for p in ("queue", "processing")}
    assert by_pool == {"queue": ["channel-0", "channel-1"],
                       "processing": ["worker-0", "worker-1", "worker-2"]}
    states = {n.name: n.initial_state for n in topo.nodes}
    assert states["channel-0"] == states["worker-0"] == "active"
    assert states["channel-1"] == states["worker-1"] == states["worker-2"] == "dormant"
    assert {n.role for n in topo.nodes} >= {"spark-master", "hdfs-namenode", "hdfs-datanode",
                                            "influxdb"}
    ports = [p for n in topo.nodes for p in n.ports.values()]
    assert len(ports) == len(set(ports))
    assert topo.spark_master_url == "spark://127.0.0.1:7077"
    assert "guest" not in topo.rabbitmq.users


def _error(raw: dict) -> str:
    with pytest.raises(TopologyError) as exc:
        parse_topology(raw)
    return str(exc.value)


def test_duplicate_port_names_both_fields(raw):
    raw["nodes"]["channel-1"]["ports"]["amqp"] = 5672
    msg = _error(raw)
    assert "nodes.channel-1.ports.amqp" in msg
    assert "duplicate port 5672" in msg and "nodes.channel-0.ports.amqp" in msg


def test_unknown_pool_names_the_field(raw):
    raw["nodes"]["worker-2"]["pool"] = "gpu"
    assert "nodes.worker-2.pool: unknown pool 'gpu'" in _error(raw)


def test_role_pool_mismatch(raw):
    raw["nodes"]["worker-1"]["pool"] = "queue"
    assert "nodes.worker-1.pool: role spark-worker belongs to pool 'processing'" in _error(raw)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r["nodes"]["worker-0"].pop("cpus"), "nodes.worker-0.cpus: required"),
        (lambda r: r["nodes"]["worker-0"].update(cpus="half"), "nodes.worker-0.cpus: expected"),
        (lambda r: r["nodes"]["worker-0"].update(cpu=1), "nodes.worker-0.cpu: unknown field"),
        (lambda r: r["nodes"]["influxdb"]["ports"].update(http=80), "nodes.influxdb.ports.http"),
        (lambda r: r["nodes"]["influxdb"]["ports"].update(http=True), "nodes.influxdb.ports.http"),
        (lambda r: r["nodes"]["channel-0"]["ports"].pop("epmd"), "nodes.channel-0.ports.epmd"),
        (lambda r: r["nodes"]["influxdb"].update(initial_state="dormant"),
         "nodes.influxdb.initial_state"),
        (lambda r: r["nodes"]["channel-0"].update(initial_state="asleep"),
         "nodes.channel-0.initial_state"),
        (lambda r: r["pools"]["queue"].update(sleep_mode="hibernate"), "pools.queue.sleep_mode"),
        (lambda r: r["pools"]["processing"].update(max_active=2), "pools.processing.max_active"),
        (lambda r: r.update(bind_host="0.0.0.0"), "topology.bind_host"),
        (lambda r: r["rabbitmq"]["users"].update(guest={}), "rabbitmq.users.guest"),
        (lambda r: r["rabbitmq"]["users"]["gateway"].update(write="(["),
         "rabbitmq.users.gateway.write"),
        (lambda r: r["nodes"].pop("namenode"), "role hdfs-namenode is required"),
        (lambda r: r["orchestrator"].update(max_step=1.5), "orchestrator.max_step: expected int"),
        (lambda r: r["orchestrator"].update(max_step=-1), "orchestrator.max_step: must be >= 0"),
        (lambda r: r["orchestrator"].update(cooldown_s=-5), "orchestrator.cooldown_s"),
    ],
)
def test_each_mistake_names_its_field(raw, mutate, fragment):
    bad = copy.deepcopy(raw)
    mutate(bad)
    assert fragment in _error(bad)


def test_all_errors_reported_at_once(raw):
    raw["nodes"]["worker-2"]["pool"] = "gpu"
    raw["nodes"]["channel-1"]["ports"]["amqp"] = 5672
    msg = _error(raw)
    assert "nodes.worker-2.pool" in msg and "nodes.channel-1.ports.amqp" in msg


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(TopologyError, match="cannot read topology"):
        load_topology(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [unclosed")
    with pytest.raises(TopologyError, match="not valid YAML"):
        load_topology(bad)


def test_cli_up_fails_fast_on_bad_topology_without_touching_docker(raw, tmp_path):
    raw["nodes"]["channel-1"]["ports"]["amqp"] = 5672
    raw["nodes"]["worker-1"]["pool"] = "gpu"
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "infra", "--topology", str(path), "up"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "nodes.channel-1.ports.amqp: duplicate port 5672" in out.stderr
    assert "nodes.worker-1.pool: unknown pool 'gpu'" in out.stderr
