"""Acceptance of the local platform against the real services (issue: local platform)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika
import pytest
import requests
from hdfs import InsecureClient
from influxdb import InfluxDBClient

from infra import health
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.topology import Topology
from spark_jobs.session import build_session, submit_command, submit_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).with_name("jobs")


def _connect(topo: Topology, node: str, pw: dict[str, str]) -> pika.BlockingConnection:
    return pika.BlockingConnection(amqp_params(topo, node, "admin", pw["admin"]))


def test_amqp_round_trip_through_a_stream_queue_read_back_by_offset(platform, topo, passwords):
    queue = f"test.stream.{uuid.uuid4().hex[:8]}"
    conn = _connect(topo, "channel-0", passwords)
    ch = conn.channel()
    try:
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
        ch.confirm_delivery()
        for i in range(50):
            ch.basic_publish("", queue, f"reading-{i}".encode(),
                             pika.BasicProperties(delivery_mode=2), mandatory=True)
        # Read back from offset 20: exactly readings 20..49, each with its offset header.
        ch.basic_qos(prefetch_count=100)
        got: list[tuple[int, str]] = []
        for method, props, body in ch.consume(queue, arguments={"x-stream-offset": 20},
                                              inactivity_timeout=5):
            if method is None:
                break
            got.append((props.headers["x-stream-offset"], body.decode()))
            ch.basic_ack(method.delivery_tag)
            if len(got) == 30:
                break
        assert got == [(i, f"reading-{i}") for i in range(20, 50)]
    finally:
        # RabbitMQ 3.10 closes the connection when a stream consumer with buffered deliveries
        # is cancelled (DESIGN.md): harmless for a reader.
        with contextlib.suppress(Exception):
            ch.cancel()
        conn2 = _connect(topo, "channel-0", passwords)
        conn2.channel().queue_delete(queue)
        conn2.close()
        if conn.is_open:
            conn.close()


def test_no_guest_user_and_least_privilege(platform, topo, passwords):
    mgmt = topo.url(topo.node("channel-0"), "management")
    users = requests.get(f"{mgmt}/api/users", auth=("admin", passwords["admin"]), timeout=10).json()
    assert "guest" not in {u["name"] for u in users}
    # The gateway user may publish telemetry but not declare anything.
    conn = pika.BlockingConnection(amqp_params(topo, "channel-0", "gateway", passwords["gateway"]))
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare("not-allowed", durable=True)
    assert exc.value.reply_code == 403
    conn.close()


@pytest.fixture()
def spark(platform, topo):
    # One core per worker: an application holds its workers' cores until it stops, so each test
    # gets its own session and ends it (spark-submit below needs the cores too).
    session = build_session(topo, "platform-tests")
    yield session
    session.stop()


def test_webhdfs_file_is_read_by_spark_and_spark_parquet_is_listed_by_webhdfs(spark, topo):
    client = InsecureClient(topo.webhdfs_url, user="root")
    base = f"/tests/{uuid.uuid4().hex[:8]}"
    lines = [f"der-{i},{i * 1.5}" for i in range(100)]
    client.write(f"{base}/readings.csv", data="\n".join(lines) + "\n", encoding="utf-8")
    try:
        rows = spark.read.text(f"{topo.hdfs_url}{base}/readings.csv").collect()
        assert [r.value for r in rows] == lines

        df = spark.createDataFrame([(f"der-{i}", float(i)) for i in range(10)],
                                   "der_id string, p double")
        df.write.parquet(f"{topo.hdfs_url}{base}/out.parquet")
        listed = client.list(f"{base}/out.parquet")
        assert "_SUCCESS" in listed
        assert any(name.endswith(".parquet") for name in listed)
        assert spark.read.parquet(f"{topo.hdfs_url}{base}/out.parquet").count() == 10
    finally:
        client.delete(base, recursive=True)


def test_influx_line_protocol_write_is_returned_by_influxql(platform, topo):
    client = InfluxDBClient(host=topo.bind_host, port=topo.only("influxdb").ports["http"])
    db = f"test_{uuid.uuid4().hex[:8]}"
    client.create_database(db)
    try:
        t_ns = time.time_ns()
        lines = [f"processing_cluster,cluster=processing,node=worker-{i},role=worker "
                 f"cpu={10.5 + i},memory=40.0 {t_ns + i}" for i in range(3)]
        assert client.write_points(lines, database=db, protocol="line")
        result = client.query('SELECT "cpu" FROM "processing_cluster" GROUP BY "node"', database=db)
        got = {tags["node"]: [p["cpu"] for p in pts] for (_m, tags), pts in result.items()}
        assert got == {"worker-0": [10.5], "worker-1": [11.5], "worker-2": [12.5]}
    finally:
        client.drop_database(db)


def test_spark_submit_runs_on_worker_0(platform, topo, tmp_path):
    out = tmp_path / "nodes.txt"
    cmd = submit_command(topo, JOBS / "where_tasks_run.py", [str(out), "4"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=submit_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(out.read_text().split()) == {"worker-0"}


def _executor_nodes(spark) -> set[str]:
    def node(_):
        import os
        import time

        time.sleep(0.5)  # long enough that every executor gets tasks
        return os.environ.get("VPP_NODE", "?")

    n = 24
    return set(spark.sparkContext.parallelize(range(n), n).map(node).collect())


def _alive(topo: Topology) -> set[int]:
    return {int(w["port"]) for w in health.alive_workers(topo)}


def test_waking_worker_1_adds_a_worker_the_job_uses_and_sleeping_removes_it(
        spark, platform: Platform, topo, dormant):
    assert _alive(topo) == {topo.node("worker-0").ports["rpc"]}
    assert _executor_nodes(spark) == {"worker-0"}

    t = platform.wake(dormant("worker-1"))
    assert t.action in ("start", "unpause") and t.ready_s > 0
    assert _alive(topo) == {topo.node(w).ports["rpc"] for w in ("worker-0", "worker-1")}
    # The running application is given an executor on the new worker by the master.
    deadline = time.monotonic() + 60
    nodes: set[str] = set()
    while time.monotonic() < deadline:
        nodes = _executor_nodes(spark)
        if nodes == {"worker-0", "worker-1"}:
            break
    assert nodes == {"worker-0", "worker-1"}

    s = platform.sleep("worker-1")
    assert s.action == "stop"
    deadline = time.monotonic() + 30
    while _alive(topo) != {topo.node("worker-0").ports["rpc"]} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _alive(topo) == {topo.node("worker-0").ports["rpc"]}


def test_channel_1_wakes_to_a_second_broker_and_sleeping_closes_every_port(
        platform: Platform, topo, passwords, dormant):
    ch1 = topo.node("channel-1")
    assert not any(health.port_open(topo.bind_host, p) for p in ch1.ports.values())
    t = platform.wake(dormant("channel-1"))
    assert t.action == "start"
    conn = _connect(topo, "channel-1", passwords)
    assert conn.is_open
    conn.close()

    # pause keeps the memory and wakes in milliseconds; stop frees everything.
    p = platform.sleep("channel-1", mode="pause")
    w = platform.wake("channel-1")
    assert (p.action, w.action) == ("pause", "unpause")
    assert w.ready_s < t.ready_s
    s = platform.sleep("channel-1", mode="stop")
    assert s.action == "stop"
    assert not any(health.port_open(topo.bind_host, p) for p in ch1.ports.values())


def test_container_limits_are_in_force(platform: Platform, topo):
    for node in topo.nodes:
        attrs = platform.container(node).attrs
        host = attrs["HostConfig"]
        assert host["NanoCpus"] == int(node.cpus * 1e9), node.name
        assert host["Memory"] == node.memory_mb * 1024 * 1024, node.name
        assert host["NetworkMode"] == "host", node.name


def test_status_cli_reports_every_node(platform, topo):
    proc = subprocess.run([sys.executable, "-m", "infra", "status"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for node in topo.nodes:
        assert node.name in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("channel-0 "))
    assert " active " in line and " ok " in line


LOOPBACK = ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]")


def _container_sockets(ids: set[str]) -> list[tuple[str, str]]:
    """(ss line, local address) of every listening TCP / bound UDP socket of these containers."""
    ss = subprocess.run(["ss", "-Hltnup"], capture_output=True, text=True, check=True).stdout
    out = []
    for line in ss.splitlines():
        owners = set()
        for pid in (int(p) for p in re.findall(r"pid=(\d+)", line)):
            try:
                cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                continue
            owners |= {cid for cid in ids if cid in cgroup}
        if owners:
            fields = line.split()
            out.append((line, f"{fields[0]} {fields[4]}"))
    return out


def test_every_listener_of_every_container_binds_loopback_only(platform: Platform):
    ids = {c.id for c in platform.project_containers() if c.status == "running"}
    assert ids
    sockets = _container_sockets(ids)
    assert len(sockets) >= len(ids), \
        f"only {len(sockets)} listeners found for {len(ids)} containers"
    wide = {addr: line for line, addr in sockets if addr.split()[1].rpartition(":")[0]
            not in LOOPBACK}
    if wide:
        # Erlang's resolver opens a UDP socket on 0.0.0.0:<ephemeral> for the length of one DNS
        # lookup; that is a client socket, not a listener. A listener is still there later.
        time.sleep(3)
        again = {addr for _, addr in _container_sockets(ids)}
        wide = {addr: line for addr, line in wide.items() if addr in again}
    assert not wide, list(wide.values())


@pytest.mark.last
def test_make_down_leaves_no_project_container(platform: Platform, topo):
    from infra import services

    running = [svc for svc in services.SERVICES if services.status(topo, svc).running]
    env = dict(os.environ)
    proc = subprocess.run(["make", "-s", "down"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert platform.project_containers() == []
    assert not any(services.status(topo, svc).running for svc in services.SERVICES)
    if platform.was_up_before_tests:  # type: ignore[attr-defined]
        # Leave the machine as the session found it: containers and the host services.
        platform.up(progress=lambda _m: None)
        for svc in running:
            services.start(svc)
