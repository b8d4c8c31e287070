"""The window mirrors monitor.schema, and build_window reads InfluxDB-style points strictly."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from diag_traces import T0

from diagnoser.window import (
    MetricsWindow,
    NodeSample,
    QueueSample,
    SparkTaskSample,
    StreamLagSample,
    StreamProgressSample,
    WindowError,
    build_window,
    points_from_rows,
    to_epoch_s,
)
from monitor.schema import (
    DIAGNOSIS,
    PROCESSING,
    QUEUE,
    QUEUING,
    SPARK_TASK,
    STREAM_LAG,
    STREAM_PROGRESS,
)


@pytest.mark.parametrize(("kind", "measurement"), [
    (NodeSample, PROCESSING), (NodeSample, QUEUING), (QueueSample, QUEUE),
    (StreamLagSample, STREAM_LAG), (StreamProgressSample, STREAM_PROGRESS),
    (SparkTaskSample, SPARK_TASK),
])
def test_samples_carry_every_schema_tag_and_field(kind, measurement):
    names = {f.name for f in fields(kind)}
    assert set(measurement.tags) | set(measurement.fields) <= names


def _node(t, node="worker-0", role="spark-worker", m=PROCESSING.name, **f):
    return {"measurement": m, "time": t, "tags": {"node": node, "role": role, "cluster": "x"},
            "fields": {"cpu": 50.0, "memory": 40.0, **f}}


def test_build_window_reads_every_input_measurement():
    pts = [
        _node(T0, disk=12, processes=40),
        _node(T0 + 10, node="channel-0", role="rabbitmq", m=QUEUING.name),
        {"measurement": QUEUE.name, "time": T0, "tags": {"node": "channel-0", "queue": "q"},
         "fields": {"messages": 10, "publish_rate": 100.0, "deliver_rate": 80.0}},
        {"measurement": STREAM_LAG.name, "time": T0, "tags": {"node": "channel-0", "stream": "s"},
         "fields": {"lag": 5, "end_offset": 100, "committed_offset": 95}},
        {"measurement": STREAM_PROGRESS.name, "time": T0, "tags": {"query": "twin"},
         "fields": {"input_rate": 200.0, "processed_rate": 150.0, "latency_p95_ms": 900}},
        {"measurement": SPARK_TASK.name, "time": T0,
         "tags": {"node": "worker-0", "executor": "1"},
         "fields": {"duration_ms": 120, "input_records": 1000, "stage": 3}},
        {"measurement": DIAGNOSIS.name, "time": T0, "tags": {}, "fields": {"code": 1}},  # ignored
    ]
    w = build_window(pts, active={"processing": 1, "queue": 1})
    assert (w.start, w.end, w.seconds) == (T0, T0 + 10, 10)
    assert [s.pool for s in w.nodes] == ["processing", "queue"]
    assert w.nodes[0].disk == 12.0 and w.nodes[0].processes == 40.0
    assert w.queues[0].publish_excess == pytest.approx(0.2)
    assert w.stream_lag[0].lag == 5 and w.stream_lag[0].committed_offset == 95
    assert w.stream_progress[0].rate_deficit == pytest.approx(0.25)
    assert w.tasks[0].stage == "3" and w.tasks[0].input_records == 1000
    assert w.active == {"processing": 1, "queue": 1} and w.rejected == ()


def test_pool_comes_from_topology_then_role_then_measurement():
    pts = [_node(T0, node="a", role="spark-master"),          # role: core, not processing
           _node(T0, node="b", role="mystery"),               # measurement: processing
           _node(T0, node="c", role="mystery", m=QUEUING.name),
           _node(T0, node="d", role="spark-master")]
    w = build_window(pts, active={}, pool_of={"d": "processing"})
    assert {s.node: s.pool for s in w.nodes} == {"a": "core", "b": "processing", "c": "queue",
                                                 "d": "processing"}


def test_times_in_every_influx_form():
    assert to_epoch_s("2023-11-14T22:13:20Z") == T0
    assert to_epoch_s("2023-11-14T22:13:20.123456789Z") == pytest.approx(T0 + 0.123456)
    assert to_epoch_s(int(T0 * 1000), "ms") == T0
    assert to_epoch_s(int(T0) * 10**9, "ns") == T0
    with pytest.raises(WindowError, match="time_unit"):
        to_epoch_s(1, "h")
    with pytest.raises(WindowError, match="RFC 3339"):
        to_epoch_s("yesterday")


def test_points_outside_start_end_are_dropped():
    pts = [_node(T0 - 5), _node(T0), _node(T0 + 60), _node(T0 + 61)]
    w = build_window(pts, active={}, start=T0, end=T0 + 60)
    assert [s.time for s in w.nodes] == [T0, T0 + 60]


@pytest.mark.parametrize(("point", "expected"), [
    ({"measurement": "cpu_load", "time": T0}, "points[1].measurement: unknown 'cpu_load'"),
    ({**_node(T0), "fields": {"memory": 4.0}}, "points[1].fields.cpu: required"),
    ({**_node(T0), "fields": {"cpu": True, "memory": 1.0}}, "points[1].fields.cpu: expected a "
                                                            "finite number"),
    ({**_node(T0), "fields": {"cpu": float("nan"), "memory": 1.0}}, "points[1].fields.cpu"),
    ({**_node(T0), "tags": {"role": "spark-worker"}}, "points[1].tags.node: required"),
    ({**_node(T0), "time": None}, "points[1].time: required"),
    ({"measurement": QUEUE.name, "time": T0, "tags": {"node": "c"}, "fields": {"messages": 1}},
     "points[1].tags.queue: required"),
])
def test_bad_points_are_named(point, expected):
    with pytest.raises(WindowError) as exc:
        build_window([_node(T0), point], active={})
    assert expected in str(exc.value)


def test_skip_mode_keeps_good_points_and_says_why_it_dropped_the_others():
    pts = [_node(T0), {**_node(T0 + 1), "fields": {"memory": 1.0}}, _node(T0 + 2)]
    w = build_window(pts, active={}, on_error="skip")
    assert len(w.nodes) == 2 and w.rejected == ("points[1].fields.cpu: required for "
                                                "processing_cluster",)


def test_empty_window_needs_explicit_bounds():
    with pytest.raises(WindowError, match="pass start= and end="):
        build_window([], active={})
    w = build_window([], active={"queue": 1}, start=T0, end=T0 + 60)
    assert w.nodes == () and w.seconds == 60


def test_window_validates_active_counts():
    with pytest.raises(WindowError, match=re.escape("window.active.queue: must be a count")):
        MetricsWindow(T0, T0, active={"queue": -1})
    with pytest.raises(WindowError, match=re.escape("window.active.storage: unknown pool")):
        MetricsWindow(T0, T0, active={"storage": 1})
    with pytest.raises(WindowError, match=re.escape("window.end")):
        MetricsWindow(T0, T0 - 1)


def test_points_from_rows_splits_flat_influxql_rows():
    rows = [{"time": "2023-11-14T22:13:20Z", "node": "worker-0", "role": "spark-worker",
             "cluster": "x", "cpu": 91, "memory": 80, "disk": None, "host": "ignored"}]
    (p,) = points_from_rows(PROCESSING.name, rows)
    assert p == {"measurement": "processing_cluster", "time": "2023-11-14T22:13:20Z",
                 "tags": {"cluster": "x", "node": "worker-0", "role": "spark-worker"},
                 "fields": {"cpu": 91, "memory": 80}}
    grouped = points_from_rows(QUEUE.name, [{"time": 0, "messages": 3}],
                               tags={"node": "channel-0", "queue": "q"})
    w = build_window(grouped, active={})
    assert w.queues[0].node == "channel-0" and w.queues[0].messages == 3
    with pytest.raises(WindowError, match="not a diagnoser input"):
        points_from_rows(DIAGNOSIS.name, [])
