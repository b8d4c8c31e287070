"""Streaming job acceptance against the real RabbitMQ, Spark and HDFS: a known set of readings
(with malformed ones and re-sent duplicates) survives a SIGKILL of the driver exactly once.

Waking a channel and a worker during a run without a restart is proven where the orchestrator
does it: channel-1 in the Fig. 12 test (tests/integration/test_orchestrator.py), worker-1 with
its executor in the short demo (tests/integration/test_demo.py)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pika
import pytest
from hdfs import InsecureClient

from bench.live import Job
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.topology import Topology
from ingest import schema
from ingest.streams import stream_end
from ingest.topology import TELEMETRY_EXCHANGE, TELEMETRY_STREAM, declare_channel
from sensors_sim.models.fleet import make_fleet
from spark_jobs import aggregates
from spark_jobs.audit import read_table

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


def _known_readings(prefix: str, n_ders: int, steps: int, step_ms: int,
                    t0_ms: int | None = None) -> list[dict]:
    """``steps`` rounds of one reading per DER, ``step_ms`` apart in event time: published at
    n_ders * 1000 / step_ms per second, event time then keeps pace with the wall clock. The
    DERs' seq counts from 0, so a second call with the same prefix is a restarted fleet."""
    now = int(time.time() * 1000) if t0_ms is None else t0_ms
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
    # Five DERs whose gateway restarted after the run: seq from 0 again, later event times.
    # They are new readings, not re-sent ones, and must be stored too.
    restarted = [r for r in _known_readings(prefix, n_ders=40, steps=20, step_ms=160,
                                            t0_ms=max(r["ts_ms"] for r in readings) + 1000)
                 if r["der_id"] in {readings[i]["der_id"] for i in range(5)}]
    bodies = [schema.encode(r) for r in readings]
    resent = bodies[1000:1300]                                       # re-sent duplicates
    stream = bodies[:2000] + MALFORMED[:2] + resent + bodies[2000:6000] + MALFORMED[2:] \
        + bodies[6000:] + [schema.encode(r) for r in restarted]
    readings = readings + restarted
    root = f"{topo.hdfs_url}{hdfs_root}"

    publisher = threading.Thread(target=_publish, args=(topo, "channel-0", stream, 250.0))
    publisher.start()
    job = Job(root, start)
    job.wait_for(lambda: job.committed("ingest") >= 2, 240, "two committed ingest batches")
    job.kill9()                                                      # mid-run, mid-batch
    killed_after = job.committed("ingest")

    publisher.join(timeout=120)
    # The restarted job catches up in a few big batches: on a half-CPU worker the per-batch
    # overhead of three queries, not the rows, sets the pace.
    job2 = Job(root, start, "--until-idle-s", "15", "--max-rows-per-trigger", "5000")
    assert job2.finish(timeout=420) == 0, "".join(job2.output[-80:])
    assert any(e.get("event") == "batch_committed" for e in job2.events)

    # Read back over WebHDFS (pyarrow): the tables at rest, as Spark would read them, without
    # the half minute a second Spark application takes to start.
    raw = read_table(topo, f"{hdfs_root}/raw")
    mine = raw[raw["der_id"].str.startswith(prefix)]
    expected = {(r["der_id"], r["seq"], r["ts_ms"]) for r in readings}
    assert len(expected) == len(readings) and len(restarted) >= 5 * 15
    got = list(zip(mine["der_id"], mine["seq"], mine["ts_ms"], strict=True))
    assert len(got) == len(set(got)), "duplicates in the raw table"
    assert set(got) == expected, f"missing {len(expected - set(got))}, " \
        f"extra {len(set(got) - expected)} (killed after {killed_after} batches)"
    assert set(mine["der_type"]) >= {"pv", "battery", "ev_charger", "wind"}

    quarantine = read_table(topo, f"{hdfs_root}/quarantine")
    assert sorted(quarantine["payload"]) == sorted(m.decode() for m in MALFORMED)
    assert quarantine["reason"].notna().all() and (quarantine["reason"] != "").all()

    twin = read_table(topo, f"{hdfs_root}/twin")
    twin = twin[twin["der_id"].str.startswith(prefix)]
    latest = twin.sort_values("updated_ms").groupby("der_id").tail(1).set_index("der_id")
    last = (pd.DataFrame(readings).sort_values(["ts_ms", "seq"]).groupby("der_id").tail(1)
            .set_index("der_id"))
    assert set(latest.index) == set(last.index)
    for der_id, row in last.iterrows():
        assert latest.loc[der_id, "last_seq"] == row["seq"], der_id
        assert latest.loc[der_id, "p_w"] == pytest.approx(row["p_w"]), der_id

    agg = read_table(topo, f"{hdfs_root}/aggregates")
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
