"""Streaming job acceptance against the real RabbitMQ, Spark and HDFS: a known set of readings
(with malformed ones and re-sent duplicates) survives a SIGKILL of the driver exactly once;
waking a channel and a worker during a run needs no restart."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pika
import pytest
import requests
from hdfs import InsecureClient
from hdfs.util import HdfsError

from infra.amqp import amqp_params
from infra.platform import Platform
from infra.topology import Topology
from ingest import schema
from ingest.routing import RoutingTable
from ingest.streams import fetch_routing_table, publish_routing_table, stream_end
from ingest.topology import TELEMETRY_EXCHANGE, TELEMETRY_STREAM, declare_channel
from sensors_sim.models.fleet import make_fleet
from spark_jobs import aggregates
from spark_jobs.session import build_session
from tests.integration.helpers import Job

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MALFORMED = [
    b"not json at all",
    b'{"schema_version": 1}',
    b'{"schema_version":9,"der_id":"pv-x","der_type":"pv","site_id":"s","ts_ms":1,"seq":0}',
    b"[1, 2, 3]",
]


def _ends(topo: Topology, channels) -> dict[str, int]:
    return {ch: stream_end(amqp_params(topo, ch, "admin"), TELEMETRY_STREAM) for ch in channels}


def _publish(topo: Topology, channel: str, bodies: list[bytes], rate_per_s: float) -> None:
    conn = pika.BlockingConnection(amqp_params(topo, channel, "admin"))
    ch = conn.channel()
    ch.confirm_delivery()
    t0 = time.monotonic()
    for i, body in enumerate(bodies):
        ch.basic_publish(TELEMETRY_EXCHANGE, "test.site", body,
                         pika.BasicProperties(delivery_mode=2))
        ahead = i / rate_per_s - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    conn.close()


def _known_readings(prefix: str, n_ders: int, steps: int, step_ms: int) -> list[dict]:
    """``steps`` rounds of one reading per DER, ``step_ms`` apart in event time: published at
    n_ders * 1000 / step_ms per second, event time then keeps pace with the wall clock."""
    now = int(time.time() * 1000)
    ders = make_fleet(n_ders, seed=11, mix={"pv": 2, "battery": 1, "ev_charger": 1, "wind": 1})
    readings = []
    for k in range(steps):
        for d in ders:
            r = d.read(now + k * step_ms)
            if r is not None:
                r["der_id"] = f"{prefix}{r['der_id']}"  # unique to this test run
                readings.append(r)
    return readings


@pytest.fixture()
def idle_workers(platform: Platform, topo: Topology):
    # The job and the checks each need the worker's core: wait until no app holds it.
    from infra import health

    deadline = time.monotonic() + 60
    while health.master_state(topo).get("activeapps") and time.monotonic() < deadline:
        time.sleep(1)
    yield


@pytest.fixture()
def hdfs_root(topo: Topology):
    path = f"/tests/stream-{uuid.uuid4().hex[:8]}"
    yield path
    InsecureClient(topo.webhdfs_url, user="root").delete(path, recursive=True)


def test_crash_mid_batch_then_restart_keeps_every_reading_exactly_once(
        platform, topo: Topology, idle_workers, hdfs_root):
    declare_channel(topo, "channel-0")
    start = _ends(topo, ["channel-0"])
    prefix = f"t{uuid.uuid4().hex[:4]}-"
    readings = _known_readings(prefix, n_ders=40, steps=250, step_ms=160)  # 10,000 readings
    bodies = [schema.encode(r) for r in readings]
    resent = bodies[1000:1300]                                       # re-sent duplicates
    stream = bodies[:2000] + MALFORMED[:2] + resent + bodies[2000:6000] + MALFORMED[2:] \
        + bodies[6000:]
    root = f"{topo.hdfs_url}{hdfs_root}"

    publisher = threading.Thread(target=_publish, args=(topo, "channel-0", stream, 250.0))
    publisher.start()
    job = Job(root, start)
    job.wait_for(lambda: job.committed("ingest") >= 3, 240, "three committed ingest batches")
    job.kill9()                                                      # mid-run, mid-batch
    killed_after = job.committed("ingest")

    publisher.join(timeout=120)
    job2 = Job(root, start, "--until-idle-s", "25")
    assert job2.finish(timeout=420) == 0, "".join(job2.output[-80:])
    assert any(e.get("event") == "batch_committed" for e in job2.events)

    spark = build_session(topo, "stream-job-check")
    try:
        raw = spark.read.parquet(f"{root}/raw").toPandas()
        mine = raw[raw["der_id"].str.startswith(prefix)]
        expected = {(r["der_id"], r["seq"]) for r in readings}
        got = list(zip(mine["der_id"], mine["seq"], strict=True))
        assert len(got) == len(set(got)), "duplicates in the raw table"
        assert set(got) == expected, f"missing {len(expected - set(got))}, " \
            f"extra {len(set(got) - expected)} (killed after {killed_after} batches)"
        assert set(mine["der_type"]) >= {"pv", "battery", "ev_charger", "wind"}

        quarantine = spark.read.parquet(f"{root}/quarantine").toPandas()
        assert sorted(quarantine["payload"]) == sorted(m.decode() for m in MALFORMED)
        assert quarantine["reason"].notna().all() and (quarantine["reason"] != "").all()

        twin = spark.read.parquet(f"{root}/twin").toPandas()
        twin = twin[twin["der_id"].str.startswith(prefix)]
        latest = twin.sort_values("updated_ms").groupby("der_id").tail(1).set_index("der_id")
        last = (pd.DataFrame(readings).sort_values("seq").groupby("der_id").tail(1)
                .set_index("der_id"))
        assert set(latest.index) == set(last.index)
        for der_id, row in last.iterrows():
            assert latest.loc[der_id, "last_seq"] == row["seq"], der_id
            assert latest.loc[der_id, "p_w"] == pytest.approx(row["p_w"]), der_id

        agg = spark.read.parquet(f"{root}/aggregates").toPandas()
    finally:
        spark.stop()
    ref = aggregates.reference(mine, 5)
    agg = agg[agg["site_id"].isin(set(mine["site_id"]))]
    assert agg["window_start"].nunique() >= 3, "too few closed windows to compare"
    ref = ref.set_index(["window_start", "site_id", "der_type"])
    agg["window_start"] = pd.to_datetime(agg["window_start"], utc=True)
    for _, row in agg.iterrows():
        key = (row["window_start"], row["site_id"], row["der_type"])
        assert key in ref.index, key
        for col in aggregates.AGG_COLUMNS:
            assert row[col] == pytest.approx(ref.loc[key, col], rel=1e-9, abs=1e-6), (key, col)


def test_waking_channel_1_and_worker_1_during_a_run_needs_no_restart(
        platform: Platform, topo: Topology, idle_workers, hdfs_root, dormant):
    declare_channel(topo, "channel-0")
    start = _ends(topo, ["channel-0"])
    root = f"{topo.hdfs_url}{hdfs_root}"
    job = Job(root, start, "--queries", "ingest")
    try:
        job.wait_for(lambda: any(e.get("event") == "started" for e in job.events), 180,
                     "the query to start")
        prefix = f"w{uuid.uuid4().hex[:4]}-"
        _publish(topo, "channel-0",
                 [schema.encode(r) for r in _known_readings(prefix, 5, 20, 100)], 50.0)
        job.wait_for(lambda: job.committed("ingest") >= 1, 120, "a first batch")

        # channel-1 wakes, is declared and enters the routing table: the running query reads it
        platform.wake(dormant("channel-1"))
        declare_channel(topo, "channel-1")
        base = fetch_routing_table(topo) or RoutingTable(0, ("channel-0",), 0)
        publish_routing_table(topo, base.successor(["channel-0", "channel-1"], reason="test"))
        ch1 = f"c{uuid.uuid4().hex[:4]}-"
        _publish(topo, "channel-1",
                 [schema.encode(r) for r in _known_readings(ch1, 5, 20, 100)], 50.0)

        # worker-1 wakes: the master gives the running application an executor on it
        platform.wake(dormant("worker-1"))
        app_id = None
        deadline = time.monotonic() + 90
        executors_on_1: list = []
        while time.monotonic() < deadline:
            master = requests.get(topo.url("spark-master", "webui") + "/json/", timeout=5).json()
            apps = [a for a in master.get("activeapps", []) if a["name"] == "vpp-telemetry"]
            app_id = apps[0]["id"] if apps else None
            w1 = requests.get(topo.url("worker-1", "webui") + "/json/", timeout=5).json()
            executors_on_1 = [e for e in w1.get("executors", []) if e.get("appid") == app_id]
            if app_id and executors_on_1:
                break
            time.sleep(1)
        assert app_id and executors_on_1, "no executor of the app on worker-1"
        # ...and once its JVM is up, the driver's REST API lists two active executors.
        api = f"http://{topo.bind_host}:{topo.spark.driver_ui_port}/api/v1/applications"
        active = 0
        while time.monotonic() < deadline + 60 and active < 2:
            execs = requests.get(f"{api}/{app_id}/executors", timeout=5).json()
            active = sum(1 for e in execs if e["id"] != "driver" and e["isActive"])
            time.sleep(1)
        assert active >= 2

        job.wait_for(lambda: _rows_from(topo, f"{hdfs_root}/raw", ch1) == 100, 180,
                     "all of channel-1's readings in the raw table")
    finally:
        if job.proc.poll() is None:
            job.proc.send_signal(signal.SIGTERM)
            job.finish(timeout=120)
        current = fetch_routing_table(topo)
        if current is not None and current.channels != ("channel-0",):
            publish_routing_table(topo, current.successor(["channel-0"], reason="test cleanup"))


def _rows_from(topo: Topology, table: str, prefix: str) -> int:
    """Rows of a DER-id prefix in a table, counted with pyarrow over WebHDFS (the test process
    cannot start a second Spark application while the job holds the cores)."""
    import io

    import pyarrow.parquet as pq

    client = InsecureClient(topo.webhdfs_url, user="root")

    def listing(path: str) -> list[str]:
        # Published partitions only: staging directories come and go while the job runs.
        try:
            return [p for p in client.list(path) if not p.startswith("_")]
        except HdfsError:  # not created yet, or removed by a concurrent commit
            return []

    n = 0
    for type_dir in listing(table):
        for date_dir in listing(f"{table}/{type_dir}"):
            part = f"{table}/{type_dir}/{date_dir}"
            for f in listing(part):
                if f.endswith(".parquet"):
                    with client.read(f"{part}/{f}") as fh:
                        data = pq.read_table(io.BytesIO(fh.read()), columns=["der_id"])
                    n += sum(1 for d in data.column("der_id").to_pylist() if d.startswith(prefix))
    return n
