"""Typed view of ``infra/topology.yaml``: the single source of nodes, pools, ports and limits.

Loading validates everything up front and raises :class:`TopologyError` whose message names the
offending field (``nodes.channel-1.ports.amqp: ...``), so a wrong file fails before any container
is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.yamlfile import FieldErrors, read_yaml

DEFAULT_PATH = Path(__file__).with_name("topology.yaml")

POOLS = ("queue", "processing", "core")
SCALABLE_POOLS = ("queue", "processing")
STATES = ("active", "dormant")
SLEEP_MODES = ("pause", "stop")

# Which ports a role must declare, which pool it belongs to and which image runs it.
ROLE_PORTS: dict[str, frozenset[str]] = {
    "rabbitmq": frozenset({"amqp", "management", "dist", "epmd"}),
    "spark-master": frozenset({"rpc", "webui"}),
    "spark-worker": frozenset({"rpc", "webui"}),
    "hdfs-namenode": frozenset({"rpc", "http"}),
    "hdfs-datanode": frozenset({"data", "http", "ipc"}),
    "influxdb": frozenset({"http", "rpc"}),
}
ROLE_POOL = {
    "rabbitmq": "queue",
    "spark-worker": "processing",
    "spark-master": "core",
    "hdfs-namenode": "core",
    "hdfs-datanode": "core",
    "influxdb": "core",
}
ROLE_IMAGE = {
    "rabbitmq": "rabbitmq",
    "spark-master": "spark",
    "spark-worker": "spark",
    "hdfs-namenode": "hadoop",
    "hdfs-datanode": "hadoop",
    "influxdb": "influxdb",
}
SINGLETON_ROLES = ("spark-master", "hdfs-namenode", "hdfs-datanode", "influxdb")


class TopologyError(ValueError):
    """A topology file is invalid; the message names every offending field."""


@dataclass(frozen=True)
class PoolPolicy:
    name: str
    sleep_mode: str
    min_active: int
    max_active: int


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    pool: str
    initial_state: str
    ports: Mapping[str, int]
    cpus: float
    memory_mb: int

    @property
    def scalable(self) -> bool:
        return self.pool in SCALABLE_POOLS


@dataclass(frozen=True)
class HealthPolicy:
    timeout_s: float
    poll_s: float


@dataclass(frozen=True)
class SparkSettings:
    worker_timeout_s: int
    driver_ui_port: int
    executor_memory_mb: int


@dataclass(frozen=True)
class OrchestratorSettings:
    """Timing of the Alg. 3 loop (autoscaler/): how often it decides, how long it waits."""

    interval_s: float = 10.0          # one collect -> evaluate -> decide -> realise step
    cooldown_s: float = 60.0          # after an action in a pool, nothing else there
    scale_down_delay_s: float = 120.0 # a down label must persist this long
    catch_up_lag: float = 5000.0      # readings of stream lag above which nothing sleeps
    drain_timeout_s: float = 120.0    # channel consumed / worker decommissioned within this
    routing_settle_s: float = 3.0     # gateways apply a routing table within 1 s
    max_step: int = 0                 # nodes per pool per step; 0: straight to the target


ORCHESTRATOR_FIELDS = tuple(OrchestratorSettings.__dataclass_fields__)


@dataclass(frozen=True)
class RabbitUser:
    name: str
    tags: tuple[str, ...]
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class RabbitSettings:
    vhost: str
    users: Mapping[str, RabbitUser]


@dataclass(frozen=True)
class ServicePorts:
    port: int
    count: int = 1

    def at(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} outside the {self.count} ports from {self.port}")
        return self.port + index


SERVICE_NAMES = ("gateway_metrics", "metrics_writer", "collector", "node_agents", "stream_job",
                 "diagnoser", "orchestrator", "demo")


@dataclass(frozen=True)
class Topology:
    project: str
    bind_host: str
    images: Mapping[str, str]
    pools: Mapping[str, PoolPolicy]
    health: HealthPolicy
    spark: SparkSettings
    rabbitmq: RabbitSettings
    services: Mapping[str, ServicePorts]
    nodes: tuple[Node, ...]
    orchestrator: OrchestratorSettings = field(default_factory=OrchestratorSettings)
    source: Path = field(default=DEFAULT_PATH, compare=False)

    # -- lookups -------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"unknown node {name!r}; topology {self.source} has: {known}")

    def pool_nodes(self, pool: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.pool == pool)

    def role_nodes(self, role: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    def only(self, role: str) -> Node:
        (node,) = self.role_nodes(role)
        return node

    def container_name(self, node: Node | str) -> str:
        name = node if isinstance(node, str) else node.name
        return f"{self.project}-{name}"

    def image(self, node: Node) -> str:
        return self.images[ROLE_IMAGE[node.role]]

    # -- endpoints (everything binds the loopback address) --------------------------------------
    def url(self, node: Node | str, port: str, scheme: str = "http") -> str:
        n = self.node(node) if isinstance(node, str) else node
        return f"{scheme}://{self.bind_host}:{n.ports[port]}"

    @property
    def spark_master_url(self) -> str:
        return self.url(self.only("spark-master"), "rpc", scheme="spark")

    @property
    def hdfs_url(self) -> str:
        return self.url(self.only("hdfs-namenode"), "rpc", scheme="hdfs")

    @property
    def webhdfs_url(self) -> str:
        return self.url(self.only("hdfs-namenode"), "http")

    @property
    def influx_url(self) -> str:
        return self.url(self.only("influxdb"), "http")


# ---------------------------------------------------------------------------------------------
# loading and validation




def _mapping(raw: Any, path: str, errs: FieldErrors) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errs.add(path, f"expected a mapping, got {type(raw).__name__}")
        return {}
    return raw


def _take(
    raw: dict[str, Any], key: str, path: str, errs: FieldErrors, kind: type | tuple[type, ...],
    default: Any = ...,
) -> Any:
    if key not in raw:
        if default is ...:
            errs.add(f"{path}.{key}", "required field is missing")
        return None if default is ... else default
    value = raw[key]
    # bool is an int subclass; a port of `true` is a typo, not a number.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        errs.add(f"{path}.{key}", f"expected {_kind_name(kind)}, got a boolean")
        return None
    if not isinstance(value, kind):
        errs.add(f"{path}.{key}", f"expected {_kind_name(kind)}, got {value!r}")
        return None
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _unknown_keys(raw: dict[str, Any], allowed: set[str], path: str, errs: FieldErrors) -> None:
    for key in raw:
        if key not in allowed:
            errs.add(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _parse_pools(raw: dict[str, Any], errs: FieldErrors) -> dict[str, PoolPolicy]:
    pools: dict[str, PoolPolicy] = {}
    for name, body in raw.items():
        path = f"pools.{name}"
        if name not in SCALABLE_POOLS:
            errs.add(path, f"unknown pool {name!r} (allowed: {', '.join(SCALABLE_POOLS)})")
            continue
        body = _mapping(body, path, errs)
        _unknown_keys(body, {"sleep_mode", "min_active", "max_active"}, path, errs)
        mode = _take(body, "sleep_mode", path, errs, str)
        lo = _take(body, "min_active", path, errs, int)
        hi = _take(body, "max_active", path, errs, int)
        if mode is not None and mode not in SLEEP_MODES:
            errs.add(f"{path}.sleep_mode", f"must be one of {', '.join(SLEEP_MODES)}, got {mode!r}")
        if lo is not None and lo < 1:
            errs.add(f"{path}.min_active", "must be at least 1 (a pool cannot scale to zero)")
        if lo is not None and hi is not None and hi < lo:
            errs.add(f"{path}.max_active", f"{hi} is below min_active {lo}")
        pools[name] = PoolPolicy(name, mode or "stop", lo or 1, hi or 1)
    for name in SCALABLE_POOLS:
        if name not in raw:
            errs.add(f"pools.{name}", "required pool policy is missing")
    return pools


def _parse_node(name: str, body: Any, errs: FieldErrors) -> Node | None:
    path = f"nodes.{name}"
    body = _mapping(body, path, errs)
    allowed = {"role", "pool", "initial_state", "ports", "cpus", "memory_mb"}
    _unknown_keys(body, allowed, path, errs)
    role = _take(body, "role", path, errs, str)
    pool = _take(body, "pool", path, errs, str)
    state = _take(body, "initial_state", path, errs, str)
    ports_raw = _mapping(_take(body, "ports", path, errs, dict) or {}, f"{path}.ports", errs)
    cpus = _take(body, "cpus", path, errs, (int, float))
    mem = _take(body, "memory_mb", path, errs, int)

    if role is not None and role not in ROLE_PORTS:
        errs.add(f"{path}.role", f"unknown role {role!r} (allowed: {', '.join(ROLE_PORTS)})")
        role = None
    if pool is not None and pool not in POOLS:
        errs.add(f"{path}.pool", f"unknown pool {pool!r} (allowed: {', '.join(POOLS)})")
        pool = None
    if role and pool and ROLE_POOL[role] != pool:
        errs.add(f"{path}.pool", f"role {role} belongs to pool {ROLE_POOL[role]!r}, not {pool!r}")
    if state is not None and state not in STATES:
        errs.add(f"{path}.initial_state", f"must be one of {', '.join(STATES)}, got {state!r}")
    if state == "dormant" and pool == "core":
        errs.add(f"{path}.initial_state", "only queue and processing nodes can be dormant")
    if cpus is not None and not 0.05 <= float(cpus) <= 64:
        errs.add(f"{path}.cpus", f"must be between 0.05 and 64, got {cpus}")
    if mem is not None and not 64 <= mem <= 1 << 20:
        errs.add(f"{path}.memory_mb", f"must be between 64 and 1048576, got {mem}")

    ports: dict[str, int] = {}
    for pname, value in ports_raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 32767:
            # Above 32767 lies the kernel's ephemeral range, where Spark and clients pick ports.
            errs.add(f"{path}.ports.{pname}", f"must be an integer in 1024..32767, got {value!r}")
            continue
        ports[pname] = value
    if role:
        missing = ROLE_PORTS[role] - set(ports_raw)
        extra = set(ports_raw) - ROLE_PORTS[role]
        for pname in sorted(missing):
            errs.add(f"{path}.ports.{pname}", f"required for role {role}")
        for pname in sorted(extra):
            errs.add(f"{path}.ports.{pname}", f"not a port of role {role}")
    if None in (role, pool, state, cpus, mem):
        return None
    return Node(name, role, pool, state, dict(ports), float(cpus), mem)


def _parse_rabbitmq(raw: dict[str, Any], errs: FieldErrors) -> RabbitSettings:
    _unknown_keys(raw, {"vhost", "users"}, "rabbitmq", errs)
    vhost = _take(raw, "vhost", "rabbitmq", errs, str) or "vpp"
    users: dict[str, RabbitUser] = {}
    for name, body in _mapping(_take(raw, "users", "rabbitmq", errs, dict) or {},
                               "rabbitmq.users", errs).items():
        path = f"rabbitmq.users.{name}"
        if name == "guest":
            errs.add(path, "the guest user is not allowed")
            continue
        body = _mapping(body, path, errs)
        _unknown_keys(body, {"tags", "configure", "write", "read"}, path, errs)
        tags = _take(body, "tags", path, errs, list, [])
        perms = {}
        for key in ("configure", "write", "read"):
            pattern = _take(body, key, path, errs, str)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    errs.add(f"{path}.{key}", f"not a valid regex: {exc}")
            perms[key] = pattern or "^$"
        users[name] = RabbitUser(name, tuple(str(t) for t in tags or ()), **perms)
    if "admin" not in users:
        errs.add("rabbitmq.users.admin", "an administrator user named admin is required")
    return RabbitSettings(vhost, users)


def _parse_services(raw: dict[str, Any], errs: FieldErrors) -> dict[str, ServicePorts]:
    _unknown_keys(raw, set(SERVICE_NAMES), "services", errs)
    services: dict[str, ServicePorts] = {}
    for name in SERVICE_NAMES:
        path = f"services.{name}"
        if name not in raw:
            errs.add(path, "required service port is missing")
            continue
        body = _mapping(raw[name], path, errs)
        _unknown_keys(body, {"port", "count"}, path, errs)
        port = _take(body, "port", path, errs, int)
        count = _take(body, "count", path, errs, int, 1)
        if port is not None and not 1024 <= port <= 32767:
            errs.add(f"{path}.port", f"must be an integer in 1024..32767, got {port!r}")
            continue
        if count is not None and count < 1:
            errs.add(f"{path}.count", f"must be >= 1, got {count}")
            continue
        if port is not None and count is not None:
            services[name] = ServicePorts(port, count)
    return services


def parse_topology(raw: Any, source: Path = DEFAULT_PATH) -> Topology:
    errs = FieldErrors("topology", TopologyError)
    root = _mapping(raw, "topology", errs)
    errs.raise_if_any(source)
    allowed = {"project", "bind_host", "images", "pools", "health", "spark", "rabbitmq",
               "services", "nodes", "orchestrator"}
    _unknown_keys(root, allowed, "topology", errs)

    project = _take(root, "project", "topology", errs, str)
    if project is not None and not project.replace("-", "").isalnum():
        errs.add("topology.project", f"must be letters, digits and '-', got {project!r}")
    bind_host = _take(root, "bind_host", "topology", errs, str)
    if bind_host is not None and not bind_host.startswith("127."):
        errs.add("topology.bind_host", f"must be a loopback address, got {bind_host!r}")

    images = _mapping(_take(root, "images", "topology", errs, dict) or {}, "images", errs)
    for key in sorted(set(ROLE_IMAGE.values()) - set(images)):
        errs.add(f"images.{key}", "required image name is missing")

    pools = _parse_pools(_mapping(root.get("pools", {}), "pools", errs), errs)

    hraw = _mapping(root.get("health", {}), "health", errs)
    _unknown_keys(hraw, {"timeout_s", "poll_s"}, "health", errs)
    health = HealthPolicy(
        float(_take(hraw, "timeout_s", "health", errs, (int, float), 240)),
        float(_take(hraw, "poll_s", "health", errs, (int, float), 1.0)),
    )
    sraw = _mapping(root.get("spark", {}), "spark", errs)
    _unknown_keys(sraw, {"worker_timeout_s", "driver_ui_port", "executor_memory_mb"}, "spark", errs)
    spark = SparkSettings(
        int(_take(sraw, "worker_timeout_s", "spark", errs, int, 15) or 15),
        int(_take(sraw, "driver_ui_port", "spark", errs, int, 4040) or 4040),
        int(_take(sraw, "executor_memory_mb", "spark", errs, int, 640) or 640),
    )

    oraw = _mapping(root.get("orchestrator", {}), "orchestrator", errs)
    _unknown_keys(oraw, set(ORCHESTRATOR_FIELDS), "orchestrator", errs)
    defaults = OrchestratorSettings()
    timing = {}
    for key in ORCHESTRATOR_FIELDS:
        whole = key == "max_step"      # a count of nodes, the rest are seconds or readings
        value = _take(oraw, key, "orchestrator", errs, int if whole else (int, float),
                      getattr(defaults, key))
        if value is not None and value < 0:
            errs.add(f"orchestrator.{key}", f"must be >= 0, got {value!r}")
        value = value if value is not None else getattr(defaults, key)
        timing[key] = int(value) if whole else float(value)
    if timing["interval_s"] <= 0:
        errs.add("orchestrator.interval_s", "must be > 0")
    orchestrator = OrchestratorSettings(**timing)

    rabbitmq = _parse_rabbitmq(_mapping(root.get("rabbitmq", {}), "rabbitmq", errs), errs)

    services = _parse_services(_mapping(root.get("services", {}), "services", errs), errs)

    nodes_raw = _mapping(_take(root, "nodes", "topology", errs, dict) or {}, "nodes", errs)
    nodes: list[Node] = []
    for name, body in nodes_raw.items():
        if not isinstance(name, str) or not name.replace("-", "").isalnum():
            errs.add(f"nodes.{name}", "node names are letters, digits and '-'")
            continue
        node = _parse_node(name, body, errs)
        if node is not None:
            nodes.append(node)

    # Ports are unique across the whole topology: every container shares the host network.
    owner: dict[int, str] = {spark.driver_ui_port: "spark.driver_ui_port"}
    for sname, sp in services.items():
        for i in range(sp.count):
            here = f"services.{sname}.port" + (f" (+{i})" if i else "")
            if sp.port + i in owner:
                errs.add(here, f"duplicate port {sp.port + i}, "
                               f"already used by {owner[sp.port + i]}")
            else:
                owner[sp.port + i] = here
    for node in nodes:
        for pname, port in node.ports.items():
            here = f"nodes.{node.name}.ports.{pname}"
            if port in owner:
                errs.add(here, f"duplicate port {port}, already used by {owner[port]}")
            else:
                owner[port] = here

    for role in SINGLETON_ROLES:
        count = sum(1 for n in nodes if n.role == role)
        if count != 1 and len(nodes) == len(nodes_raw):
            errs.add("nodes", f"exactly one node with role {role} is required, found {count}")
    for pname, policy in pools.items():
        members = [n for n in nodes if n.pool == pname]
        active = sum(1 for n in members if n.initial_state == "active")
        if members and active < policy.min_active:
            errs.add(f"pools.{pname}.min_active",
                     f"{policy.min_active} but only {active} node(s) start active")
        if members and len(members) > policy.max_active:
            errs.add(f"pools.{pname}.max_active",
                     f"{policy.max_active} but the pool has {len(members)} nodes")
        if not members:
            errs.add("nodes", f"pool {pname} has no nodes")

    errs.raise_if_any(source)
    return Topology(
        project=project,
        bind_host=bind_host,
        images=dict(images),
        pools=pools,
        health=health,
        spark=spark,
        rabbitmq=rabbitmq,
        services=services,
        nodes=tuple(nodes),
        orchestrator=orchestrator,
        source=source,
    )


def topology_path() -> Path:
    return Path(os.environ.get("VPP_TOPOLOGY") or DEFAULT_PATH)


def load_topology(path: str | os.PathLike[str] | None = None) -> Topology:
    src = Path(path) if path is not None else topology_path()
    return parse_topology(read_yaml(src, "topology", TopologyError), src)
