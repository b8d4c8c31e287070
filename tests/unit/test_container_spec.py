"""What the platform asks Docker to create follows the topology (pure, no engine needed)."""

from __future__ import annotations

import json

from infra.platform import container_spec, ordered, rabbitmq_definitions, spec_hash, state_word
from infra.topology import load_topology

PW = {"admin": "a", "gateway": "g", "stream": "s", "monitor": "m", "diagnoser": "d",
      "autoscaler": "x"}


def test_every_node_gets_host_network_and_its_limits():
    topo = load_topology()
    for node in topo.nodes:
        spec = container_spec(topo, node, PW)
        assert spec["network_mode"] == "host"
        assert spec["nano_cpus"] == int(node.cpus * 1e9)
        assert spec["mem_limit"] == spec["memswap_limit"] == f"{node.memory_mb}m"
        assert spec["environment"]["VPP_BIND_HOST"] == "127.0.0.1"
        assert spec["name"] == f"vpp-twin-{node.name}"
        assert spec["labels"]["vpp-twin.node"] == node.name


def test_each_broker_gets_its_own_ports_and_epmd():
    topo = load_topology()
    envs = [container_spec(topo, n, PW)["environment"] for n in topo.pool_nodes("queue")]
    assert len({e["ERL_EPMD_PORT"] for e in envs}) == len(envs)
    assert len({e["RABBITMQ_NODENAME"] for e in envs}) == len(envs)
    assert all(e["VPP_AMQP_PORT"] != e["VPP_MANAGEMENT_PORT"] for e in envs)


def test_definitions_have_least_privilege_users_and_no_guest():
    topo = load_topology()
    defs = rabbitmq_definitions(topo, PW)
    names = {u["name"] for u in defs["users"]}
    assert "guest" not in names and {"admin", "gateway"} <= names
    perms = {p["user"]: p for p in defs["permissions"]}
    assert perms["gateway"]["configure"] == "^$"
    assert perms["gateway"]["write"] == r"^vpp\.telemetry$"


def test_spec_hash_changes_with_config_or_image():
    topo = load_topology()
    node = topo.node("worker-0")
    spec = container_spec(topo, node, PW)
    h = spec_hash(spec, "sha256:1")
    assert h == spec_hash(json.loads(json.dumps(spec)), "sha256:1")
    assert h != spec_hash(spec, "sha256:2")
    other = container_spec(topo, topo.node("worker-1"), PW)
    assert h != spec_hash(other, "sha256:1")


def test_start_order_puts_storage_before_dependants():
    names = [n.name for n in ordered(load_topology().nodes)]
    assert names.index("namenode") < names.index("datanode")
    assert names.index("spark-master") < names.index("worker-0")


def test_state_words():
    assert state_word("running") == "active"
    assert state_word("paused") == "asleep"
    assert state_word("exited") == state_word("created") == "stopped"
    assert state_word("absent") == "absent"
