"""Pure parts of monitoring: utilisation against the node's own limits, socket accounting,
message -> line protocol, management API -> points."""

from __future__ import annotations

import json

import pytest

from monitor import collect, writer
from monitor.cgroup import Reading, SocketBytes, parse_ss, utilisation


def _reading(t: float, cpu_s: float, **kw) -> Reading:
    base = dict(mono_s=t, wall_ns=int(t * 1e9), cpu_ns=int(cpu_s * 1e9), cpu_quota=0.5,
                mem_bytes=256 << 20, mem_limit=1 << 30, disk_read=0, disk_write=0, net_rx=0,
                net_tx=0, processes=4, disk_used_pct=12.5)
    base.update(kw)
    return Reading(**base)


def test_cpu_is_relative_to_the_quota_not_the_host():
    # 1 s of CPU time in 2 s of wall time on a 0.5-CPU quota is a fully busy node.
    f = utilisation(_reading(10, 3.0), _reading(12, 4.0))
    assert f["cpu"] == 100.0
    assert utilisation(_reading(0, 0), _reading(2, 0.1))["cpu"] == 10.0
    assert f["memory"] == 25.0 and f["disk"] == 12.5 and f["processes"] == 4


def test_rates_and_monotonic_guard():
    f = utilisation(_reading(0, 0, disk_write=1000, net_rx=0, net_tx=10),
                    _reading(4, 0, disk_write=9000, net_rx=400, net_tx=10))
    assert f["disk_write_bps"] == 2000.0 and f["net_rx_bps"] == 100.0 and f["net_tx_bps"] == 0
    with pytest.raises(ValueError):
        utilisation(_reading(5, 0), _reading(5, 0))


SS = """ESTAB 0 0 127.0.0.1:5672 127.0.0.1:40000 users:(("beam.smp",pid=16,fd=59))
\t ts sack cubic bytes_sent:500 bytes_acked:501 bytes_received:1200 segs_out:4
ESTAB 0 0 127.0.0.1:57772 127.0.0.1:4369 uid:101
\t ts sack bytes_sent:31 bytes_acked:32 bytes_received:6
ESTAB 0 0 127.0.0.1:5672 127.0.0.1:40001 users:(("beam.smp",pid=16,fd=60))
\t ts sack bytes_acked:70 bytes_received:30
"""


def test_parse_ss_counts_only_sockets_with_an_owner_here():
    got = parse_ss(SS)
    assert got == {("127.0.0.1:5672", "127.0.0.1:40000"): (1200, 501),
                   ("127.0.0.1:5672", "127.0.0.1:40001"): (30, 70)}


def test_socket_bytes_keep_what_closed_sockets_moved():
    acc = SocketBytes()
    a, b = ("l", "p1"), ("l", "p2")
    assert acc.update({a: (100, 10), b: (5, 5)}) == (105, 15)
    assert acc.update({b: (50, 6)}) == (150, 16)       # a closed: its bytes stay counted
    assert acc.update({}) == (150, 16)


def test_writer_turns_messages_into_schema_checked_lines():
    body = json.dumps({"points": [
        {"m": "processing_cluster", "tags": {"cluster": "processing", "node": "worker-0",
                                             "role": "spark-worker"},
         "fields": {"cpu": 12.5, "memory": 40.0, "sample_seq": 3}, "t": 1_000},
        {"m": "no_such_measurement", "tags": {}, "fields": {"x": 1}, "t": 1},
        {"m": "processing_cluster", "tags": {"node": "w"}, "fields": {"typo": 1}, "t": 1},
    ]}).encode()
    lines, rejected = writer.to_lines(body)
    assert lines == ["processing_cluster,cluster=processing,node=worker-0,role=spark-worker "
                     "cpu=12.5,memory=40.0,sample_seq=3i 1000"]
    assert rejected == 2
    assert writer.to_lines(b"not json") == ([], 1)


def test_queue_points_from_the_management_api():
    queues = [{"name": "vpp.telemetry.stream", "messages": 42, "consumers": 1,
               "message_bytes": 4200, "message_stats": {"publish_details": {"rate": 10.5},
                                                        "deliver_get_details": {"rate": 9.0}}},
              {"name": "vpp.dead"}]
    pts = collect.queue_points("channel-0", queues, 7)
    assert pts[0] == {"m": "rabbitmq_queue", "tags": {"node": "channel-0",
                                                     "queue": "vpp.telemetry.stream"},
                      "fields": {"messages": 42, "publish_rate": 10.5, "deliver_rate": 9.0,
                                 "consumers": 1, "bytes": 4200}, "t": 7}
    assert pts[1]["fields"]["messages"] == 0


def test_task_points_map_executors_to_nodes_and_use_finish_time():
    tasks = [{"status": "SUCCESS", "executorId": "1", "duration": 1500,
              "launchTime": "2026-12-01T09:55:52.123GMT",
              "taskMetrics": {"executorRunTime": 1400, "jvmGcTime": 20,
                              "inputMetrics": {"recordsRead": 300}}},
             {"status": "FAILED", "executorId": "1", "duration": 10,
              "launchTime": "2026-12-01T09:55:52.123GMT"}]
    (p,) = collect.task_points(tasks, 7, {"1": "worker-1"})
    assert p["tags"] == {"node": "worker-1", "executor": "1"}
    assert p["fields"] == {"duration_ms": 1500.0, "run_ms": 1400.0, "gc_ms": 20.0,
                           "input_records": 300, "stage": 7}
    assert p["t"] == int((1796118952.123 + 1.5) * 1e9)
