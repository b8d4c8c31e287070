"""Health probes, one per role: does the service answer its real protocol on its port?

Each probe returns ``(healthy, detail)`` and never raises; they are thin adapters over AMQP and
the services' HTTP APIs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pika
import requests

from infra.amqp import amqp_params
from infra.topology import Node, Topology

Probe = Callable[[Topology, Node, dict[str, str]], tuple[bool, str]]
TIMEOUT_S = 3.0


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _rabbitmq(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    params = amqp_params(topo, node, "admin", pw["admin"], socket_timeout=TIMEOUT_S,
                         blocked_connection_timeout=TIMEOUT_S, connection_attempts=1)
    try:
        conn = pika.BlockingConnection(params)
    except Exception as exc:  # pika raises many unrelated types while a broker boots
        return False, f"AMQP: {type(exc).__name__}"
    try:
        version = conn._impl.server_properties.get("version", b"?")
        version = version.decode() if isinstance(version, bytes) else str(version)
    finally:
        conn.close()
    return True, f"AMQP ok (RabbitMQ {version})"


def _get_json(url: str) -> object:
    resp = requests.get(url, timeout=TIMEOUT_S)
    resp.raise_for_status()
    return resp.json()


def _namenode_bean(topo: Topology, bean: str) -> dict[str, object]:
    data = _get_json(f"{topo.webhdfs_url}/jmx?qry=Hadoop:service=NameNode,name={bean}")
    assert isinstance(data, dict)
    return data["beans"][0]


def _hdfs_namenode(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    try:
        info = _namenode_bean(topo, "NameNodeInfo")
    except Exception as exc:
        return False, f"JMX: {type(exc).__name__}"
    if info.get("Safemode"):
        return False, "in safe mode"
    live = json.loads(str(info.get("LiveNodes") or "{}"))
    return True, f"out of safe mode, {len(live)} live DataNode(s)"


def _hdfs_datanode(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    try:
        info = _namenode_bean(topo, "NameNodeInfo")
    except Exception as exc:
        return False, f"NameNode JMX: {type(exc).__name__}"
    live = json.loads(str(info.get("LiveNodes") or "{}"))
    addr = f"{topo.bind_host}:{node.ports['data']}"
    for name, desc in live.items():
        if addr in (name, desc.get("xferaddr") if isinstance(desc, dict) else None):
            return True, "live in NameNode"
    return False, "not (yet) live in NameNode"


def master_state(topo: Topology) -> dict[str, object]:
    data = _get_json(topo.url(topo.only("spark-master"), "webui") + "/json/")
    assert isinstance(data, dict)
    return data


def alive_workers(topo: Topology) -> list[dict[str, object]]:
    return [w for w in master_state(topo).get("workers", [])  # type: ignore[union-attr]
            if isinstance(w, dict) and w.get("state") == "ALIVE"]


def _spark_master(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    try:
        state = master_state(topo)
    except Exception as exc:
        return False, f"master UI: {type(exc).__name__}"
    if state.get("status") != "ALIVE":
        return False, f"master status {state.get('status')}"
    return True, f"ALIVE, {state.get('aliveworkers', 0)} alive worker(s)"


def _spark_worker(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    try:
        workers = alive_workers(topo)
    except Exception as exc:
        return False, f"master UI: {type(exc).__name__}"
    for w in workers:
        if w.get("port") == node.ports["rpc"]:
            return True, f"registered, {w.get('coresused', 0)}/{w.get('cores', 0)} cores used"
    return False, "not registered with the master"


def _influxdb(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    try:
        resp = requests.get(f"{topo.influx_url}/ping", timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        return False, f"/ping: {type(exc).__name__}"
    if resp.status_code != 204:
        return False, f"/ping answered {resp.status_code}"
    return True, f"/ping ok (InfluxDB {resp.headers.get('X-Influxdb-Version', '?')})"


PROBES: dict[str, Probe] = {
    "rabbitmq": _rabbitmq,
    "hdfs-namenode": _hdfs_namenode,
    "hdfs-datanode": _hdfs_datanode,
    "spark-master": _spark_master,
    "spark-worker": _spark_worker,
    "influxdb": _influxdb,
}


def probe(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[bool, str]:
    return PROBES[node.role](topo, node, pw)
