"""The local platform on Docker: one container per topology node, host networking, limits.

``container_spec`` is a pure function from the topology to what Docker is asked to create, so it
is unit-tested without an engine. :class:`Platform` is the thin adapter over the Docker SDK that
brings nodes up, reports their state and wakes or sleeps dormant nodes, timing each transition.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from infra import health
from infra.state import ROOT, passwords, state_dir
from infra.topology import Node, Topology

LABEL_PROJECT = "vpp-twin.project"
LABEL_NODE = "vpp-twin.node"
LABEL_POOL = "vpp-twin.pool"
LABEL_HASH = "vpp-twin.config-hash"
STOP_TIMEOUT_S = 30

# Start order: storage and coordination first, so dependants find them when they boot.
ROLE_ORDER = ("influxdb", "hdfs-namenode", "hdfs-datanode", "spark-master", "rabbitmq",
              "spark-worker")
DATA_PATHS = {"rabbitmq": "/var/lib/rabbitmq", "influxdb": "/var/lib/influxdb",
              "hdfs-namenode": "/data", "hdfs-datanode": "/data"}
DAEMON_MEMORY_MB = 256

Progress = Callable[[str], None]


class PlatformError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeStatus:
    node: Node
    container: str
    state: str          # active | asleep | stopped | absent
    docker_status: str  # Docker's own word: running, paused, exited, created, ...
    health: str         # ok | down | -
    detail: str


@dataclass(frozen=True)
class Transition:
    """One wake or sleep, timed: the Docker call, then until the node serves (or is gone)."""

    node: str
    action: str      # start | unpause | pause | stop | none
    api_s: float
    ready_s: float

    def as_dict(self) -> dict[str, object]:
        return {"node": self.node, "action": self.action, "api_s": round(self.api_s, 3),
                "ready_s": round(self.ready_s, 3)}


# ---------------------------------------------------------------------------------------------
# pure: what to create


def rabbitmq_definitions(topo: Topology, pw: dict[str, str]) -> dict[str, Any]:
    vhost = topo.rabbitmq.vhost
    users = topo.rabbitmq.users.values()
    return {
        "users": [{"name": u.name, "password": pw[u.name], "tags": list(u.tags)} for u in users],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {"user": u.name, "vhost": vhost, "configure": u.configure, "write": u.write,
             "read": u.read}
            for u in users
        ],
    }


def _hdfs_env(topo: Topology) -> dict[str, str]:
    nn, dn = topo.only("hdfs-namenode"), topo.only("hdfs-datanode")
    return {
        "VPP_NAMENODE_RPC_PORT": str(nn.ports["rpc"]),
        "VPP_NAMENODE_HTTP_PORT": str(nn.ports["http"]),
        "VPP_DATANODE_DATA_PORT": str(dn.ports["data"]),
        "VPP_DATANODE_HTTP_PORT": str(dn.ports["http"]),
        "VPP_DATANODE_IPC_PORT": str(dn.ports["ipc"]),
    }


def _role_env(topo: Topology, node: Node, pw: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    p = {k: str(v) for k, v in node.ports.items()}
    if node.role == "rabbitmq":
        return {
            "VPP_AMQP_PORT": p["amqp"],
            "VPP_MANAGEMENT_PORT": p["management"],
            "VPP_MEMORY_MB": str(node.memory_mb),
            "VPP_RABBITMQ_DEFINITIONS": json.dumps(rabbitmq_definitions(topo, pw), sort_keys=True),
            "RABBITMQ_NODENAME": f"rabbit-{node.name}@localhost",
            "RABBITMQ_DIST_PORT": p["dist"],
            # Two brokers share the host network: each gets its own epmd port.
            "ERL_EPMD_PORT": p["epmd"],
            "ERL_EPMD_ADDRESS": topo.bind_host,
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                f"-kernel inet_dist_use_interface {{{topo.bind_host.replace('.', ',')}}}",
        }, []
    if node.role in ("hdfs-namenode", "hdfs-datanode"):
        env = _hdfs_env(topo) | {"VPP_HEAP_MB": str(int(node.memory_mb * 0.6))}
        return env, ["namenode" if node.role == "hdfs-namenode" else "datanode"]
    if node.role == "spark-master":
        return {
            "VPP_RPC_PORT": p["rpc"], "VPP_WEBUI_PORT": p["webui"],
            "VPP_WORKER_TIMEOUT_S": str(topo.spark.worker_timeout_s),
            "VPP_DAEMON_MEMORY_MB": str(min(DAEMON_MEMORY_MB * 2, node.memory_mb // 2)),
        }, ["master"]
    if node.role == "spark-worker":
        return {
            "VPP_RPC_PORT": p["rpc"], "VPP_WEBUI_PORT": p["webui"],
            "VPP_MASTER_URL": topo.spark_master_url,
            "VPP_WORKER_CORES": "1",
            # What the worker offers executors; the rest of the container covers the worker
            # daemon, the executor's off-heap overhead and its Python worker.
            "VPP_WORKER_MEMORY_MB": str(topo.spark.executor_memory_mb),
            "VPP_DAEMON_MEMORY_MB": str(DAEMON_MEMORY_MB),
        }, ["worker"]
    if node.role == "influxdb":
        return {"VPP_HTTP_PORT": p["http"], "VPP_RPC_PORT": p["rpc"]}, []
    raise PlatformError(f"no container spec for role {node.role}")


def volume_name(topo: Topology, node: Node) -> str:
    return f"{topo.container_name(node)}-data"


# The node's monitoring agent (monitor/agent.py) runs from the checkout, mounted read-only, with
# the image's Debian python3; a loop restarts it if it ever exits.
CODE_MOUNT = "/opt/vpp"
STATE_MOUNT = "/opt/vpp-state"
TOPOLOGY_MOUNT = "/opt/vpp-topology.yaml"
AGENT_CMD = "while :; do python3 -m monitor.agent; sleep 3; done"


def container_spec(topo: Topology, node: Node, pw: dict[str, str],
                   code_root: Path | None = None, state: Path | None = None
                   ) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``, without the config-hash label."""
    env, command = _role_env(topo, node, pw)
    env = {"VPP_BIND_HOST": topo.bind_host, "VPP_NODE": node.name} | env
    volumes: dict[str, dict[str, str]] = {}
    if node.role in DATA_PATHS:
        volumes[volume_name(topo, node)] = {"bind": DATA_PATHS[node.role], "mode": "rw"}
    if code_root is not None and state is not None:
        volumes[str(code_root)] = {"bind": CODE_MOUNT, "mode": "ro"}
        volumes[str(state)] = {"bind": STATE_MOUNT, "mode": "ro"}
        volumes[str(Path(topo.source).resolve())] = {"bind": TOPOLOGY_MOUNT, "mode": "ro"}
        env |= {"PYTHONPATH": CODE_MOUNT, "VPP_STATE_DIR": STATE_MOUNT,
                "VPP_TOPOLOGY": TOPOLOGY_MOUNT, "PYTHONDONTWRITEBYTECODE": "1",
                "VPP_AGENT_CMD": AGENT_CMD}
    return {
        "image": topo.image(node),
        "command": command,
        "name": topo.container_name(node),
        "environment": env,
        "labels": {LABEL_PROJECT: topo.project, LABEL_NODE: node.name, LABEL_POOL: node.pool},
        "network_mode": "host",
        "nano_cpus": int(node.cpus * 1e9),
        "mem_limit": f"{node.memory_mb}m",
        "memswap_limit": f"{node.memory_mb}m",  # no swap: the limit is the limit
        "volumes": volumes,
        "init": True,
        # Read-only process inspection for the node's agent: /proc/<pid>/io and socket owners
        # of services that run under their own uid (RabbitMQ).
        "cap_add": ["SYS_PTRACE"],
        "log_config": {"type": "json-file", "config": {"max-size": "20m", "max-file": "2"}},
    }


def spec_hash(spec: dict[str, Any], image_id: str) -> str:
    blob = json.dumps(spec, sort_keys=True) + image_id
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def state_word(docker_status: str) -> str:
    return {"running": "active", "restarting": "active", "paused": "asleep"}.get(
        docker_status, "absent" if docker_status == "absent" else "stopped")


def ordered(nodes: Iterable[Node]) -> list[Node]:
    return sorted(nodes, key=lambda n: (ROLE_ORDER.index(n.role), n.name))


# ---------------------------------------------------------------------------------------------
# the Docker adapter


class Platform:
    def __init__(self, topo: Topology, client: docker.DockerClient | None = None) -> None:
        self.topo = topo
        self._client = client
        self.passwords = passwords(topo.rabbitmq.users)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(version="auto", timeout=120)
            except docker.errors.DockerException as exc:
                raise PlatformError(f"cannot reach the Docker engine ({exc}); run `make setup`")\
                    from exc
        return self._client

    # -- containers ------------------------------------------------------------------------------
    def container(self, node: Node | str) -> Container | None:
        try:
            return self.client.containers.get(self.topo.container_name(node))
        except docker.errors.NotFound:
            return None

    def _docker_status(self, node: Node) -> str:
        c = self.container(node)
        return c.status if c is not None else "absent"

    def project_containers(self) -> list[Container]:
        return self.client.containers.list(
            all=True, filters={"label": f"{LABEL_PROJECT}={self.topo.project}"})

    def ensure_container(self, node: Node, progress: Progress = print) -> Container:
        """Create the node's container, or re-create it when its spec or image changed."""
        spec = container_spec(self.topo, node, self.passwords, ROOT, state_dir())
        try:
            image = self.client.images.get(spec["image"])
        except docker.errors.ImageNotFound as exc:
            raise PlatformError(f"image {spec['image']} is missing; run `make setup`") from exc
        digest = spec_hash(spec, image.id)
        existing = self.container(node)
        if existing is not None:
            if existing.labels.get(LABEL_HASH) == digest:
                return existing
            progress(f"re-creating {existing.name}: its configuration or image changed")
            existing.remove(force=True)
        for vol in spec["volumes"]:
            if vol.startswith("/"):
                continue  # a bind mount of the checkout, not a named volume
            try:
                self.client.volumes.get(vol)
            except docker.errors.NotFound:
                self.client.volumes.create(vol, labels={LABEL_PROJECT: self.topo.project})
        spec["labels"] = spec["labels"] | {LABEL_HASH: digest}
        return self.client.containers.create(**spec)

    # -- health -----------------------------------------------------------------------------------
    def probe(self, node: Node) -> tuple[bool, str]:
        return health.probe(self.topo, node, self.passwords)

    def wait_healthy(self, nodes: Iterable[Node], timeout_s: float | None = None,
                     progress: Progress = print) -> float:
        pending = {n.name: n for n in nodes}
        timeout_s = self.topo.health.timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()
        last: dict[str, str] = {}
        reported = -1.0
        while pending:
            for name, node in list(pending.items()):
                ok, detail = self.probe(node)
                last[name] = detail
                if ok:
                    progress(f"  {name:<13} healthy after {time.monotonic() - t0:5.1f} s: {detail}")
                    del pending[name]
                    continue
                status = self._docker_status(node)
                if status in ("exited", "dead", "absent"):
                    raise PlatformError(f"{name} is {status} while starting:\n"
                                        f"{self.logs(node, 30)}")
            elapsed = time.monotonic() - t0
            if not pending:
                return elapsed
            if elapsed > timeout_s:
                detail = "; ".join(f"{n}: {last.get(n, '?')}" for n in pending)
                tails = "\n".join(f"--- {n} ---\n{self.logs(pending[n], 20)}" for n in pending)
                raise PlatformError(f"not healthy after {timeout_s:.0f} s: {detail}\n{tails}")
            if elapsed - reported >= 15:
                reported = elapsed
                progress(f"  waiting {elapsed:4.0f} s for: {', '.join(sorted(pending))}")
            time.sleep(self.topo.health.poll_s)
        return time.monotonic() - t0

    def logs(self, node: Node, lines: int = 50) -> str:
        c = self.container(node)
        if c is None:
            return "(no container)"
        return c.logs(tail=lines).decode(errors="replace")

    # -- lifecycle --------------------------------------------------------------------------------
    def up(self, progress: Progress = print) -> None:
        topo = self.topo
        progress(f"==> bringing up {len(topo.nodes)} nodes of {topo.source}")
        containers = {n.name: self.ensure_container(n, progress) for n in ordered(topo.nodes)}
        active = [n for n in ordered(topo.nodes) if n.initial_state == "active"]
        for node in active:
            c = containers[node.name]
            c.reload()
            if c.status == "paused":
                c.unpause()
            elif c.status != "running":
                c.start()
        self.wait_healthy(active, progress=progress)
        for node in ordered(topo.nodes):
            if node.initial_state == "dormant":
                self._make_dormant(node, containers[node.name], progress)

    def _make_dormant(self, node: Node, c: Container, progress: Progress) -> None:
        """Dormant = created in advance; in pause mode also booted, then frozen (fast wake)."""
        c.reload()
        mode = self.topo.pools[node.pool].sleep_mode
        if c.status in ("running", "paused") and mode == "stop":
            # Left running by an earlier session (e.g. a woken node): honour the topology.
            self.sleep(node, mode="stop", enforce_min=False)
        elif mode == "pause" and c.status != "paused":
            if c.status != "running":
                c.start()
            self.wait_healthy([node], progress=progress)
            c.pause()
        progress(f"  {node.name:<13} dormant ({mode})")

    def down(self, progress: Progress = print) -> int:
        """Stop and remove every container of the project; data volumes are kept."""
        containers = self.project_containers()

        def remove(c: Container) -> None:
            if c.status == "paused":
                c.unpause()  # a frozen process cannot handle SIGTERM
            if c.status in ("running", "restarting", "paused"):
                c.stop(timeout=STOP_TIMEOUT_S)
            c.remove(v=False)
            progress(f"  removed {c.name}")

        # Stopping is mostly waiting for graceful shutdown: do it for all nodes at once.
        with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
            list(pool.map(remove, containers))
        return len(containers)

    def clean(self, progress: Progress = print) -> None:
        self.down(progress)
        label = f"{LABEL_PROJECT}={self.topo.project}"
        for vol in self.client.volumes.list(filters={"label": label}):
            progress(f"  removing volume {vol.name}")
            vol.remove(force=True)

    def status(self) -> list[NodeStatus]:
        rows = []
        for node in self.topo.nodes:
            c = self.container(node)
            dstatus = c.status if c is not None else "absent"
            if dstatus == "running":
                ok, detail = self.probe(node)
                hstate = "ok" if ok else "down"
            else:
                hstate, detail = "-", ""
            rows.append(NodeStatus(node, self.topo.container_name(node), state_word(dstatus),
                                   dstatus, hstate, detail))
        return rows

    # -- wake / sleep -----------------------------------------------------------------------------
    def wake(self, node: Node | str, timeout_s: float | None = None) -> Transition:
        n = self.topo.node(node) if isinstance(node, str) else node
        if not n.scalable:
            raise PlatformError(f"{n.name} is in the {n.pool} pool; only queue and processing "
                                "nodes wake and sleep")
        c = self.container(n)
        if c is None:
            raise PlatformError(f"{n.name} has no container; run `make up` first")
        t0 = time.monotonic()
        if c.status == "paused":
            action = "unpause"
            c.unpause()
        elif c.status in ("running", "restarting"):
            action = "none"
        else:
            action = "start"
            c.start()
        api_s = time.monotonic() - t0
        self.wait_healthy([n], timeout_s=timeout_s, progress=lambda _msg: None)
        return Transition(n.name, action, api_s, time.monotonic() - t0)

    def sleep(self, node: Node | str, mode: str | None = None, enforce_min: bool = True,
              timeout_s: float = 60) -> Transition:
        n = self.topo.node(node) if isinstance(node, str) else node
        if not n.scalable:
            raise PlatformError(f"{n.name} is in the {n.pool} pool; only queue and processing "
                                "nodes wake and sleep")
        policy = self.topo.pools[n.pool]
        mode = mode or policy.sleep_mode
        if mode not in ("pause", "stop"):
            raise PlatformError(f"sleep mode must be pause or stop, got {mode!r}")
        c = self.container(n)
        if c is None:
            raise PlatformError(f"{n.name} has no container; run `make up` first")
        if enforce_min and c.status == "running":
            awake = [m for m in self.topo.pool_nodes(n.pool) if self._docker_status(m) == "running"]
            if len(awake) <= policy.min_active:
                raise PlatformError(f"refusing to sleep {n.name}: pool {n.pool} would drop below "
                                    f"min_active={policy.min_active}")
        t0 = time.monotonic()
        if c.status not in ("running", "restarting", "paused"):
            return Transition(n.name, "none", 0.0, 0.0)
        if mode == "pause":
            if c.status == "paused":
                return Transition(n.name, "none", 0.0, 0.0)
            c.pause()
            api_s = time.monotonic() - t0
        else:
            if c.status == "paused":
                c.unpause()  # a frozen process cannot handle SIGTERM
            c.stop(timeout=STOP_TIMEOUT_S)
            api_s = time.monotonic() - t0
            deadline = t0 + timeout_s
            while any(health.port_open(self.topo.bind_host, p) for p in n.ports.values()):
                if time.monotonic() > deadline:
                    raise PlatformError(f"{n.name} stopped but still has a port open")
                time.sleep(0.1)
        return Transition(n.name, "pause" if mode == "pause" else "stop", api_s,
                          time.monotonic() - t0)
