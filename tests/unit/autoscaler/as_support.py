"""Hand-made metric points for the autoscaler tests (InfluxDB-style dicts, epoch seconds)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import yaml

from autoscaler.model.capacity import DEFAULT_PATH, Capacity, parse_capacity
from diagnoser.window import build_window
from infra.topology import PoolPolicy
from ingest.topology import TELEMETRY_STREAM
from monitor.schema import PROCESSING, QUEUE, QUEUING, STREAM_LAG, STREAM_PROGRESS

T0 = 1_700_000_000.0   # 2023-11-14 22:13:20 UTC
POOLS = {"queue": PoolPolicy("queue", "stop", 1, 2),
         "processing": PoolPolicy("processing", "stop", 1, 3)}

Value = float | Callable[[float], float]


def fixed_capacity() -> Capacity:
    """The shipped capacity.yaml with fixed processing numbers: tests of the label and simulator
    arithmetic must not move when a new sweep rewrites the shipped file."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    raw["source"] = {"kind": "provisional", "note": "unit-test numbers"}
    raw["queue"].update(readings_per_s=4000, scaling_efficiency=0.9)
    raw["processing"].update(readings_per_s=700, scaling_efficiency=0.9)
    return parse_capacity(raw)


def val(x: Value, t: float) -> float:
    return x(t) if callable(x) else float(x)


def node(t: float, name: str, cpu: Value, mem: Value, pool: str = "processing") -> dict:
    meas, role = (PROCESSING, "spark-worker") if pool == "processing" else (QUEUING, "rabbitmq")
    return {"measurement": meas.name, "time": t,
            "tags": {"cluster": "vpp-twin", "node": name, "role": role},
            "fields": {"cpu": val(cpu, t), "memory": val(mem, t)}}


def queue(t: float, channel: str, messages: Value, publish: Value, deliver: Value,
          name: str = TELEMETRY_STREAM) -> dict:
    return {"measurement": QUEUE.name, "time": t, "tags": {"node": channel, "queue": name},
            "fields": {"messages": val(messages, t), "publish_rate": val(publish, t),
                       "deliver_rate": val(deliver, t)}}


def lag(t: float, channel: str, value: Value) -> dict:
    return {"measurement": STREAM_LAG.name, "time": t,
            "tags": {"node": channel, "stream": TELEMETRY_STREAM},
            "fields": {"lag": val(value, t)}}


def progress(t: float, input_rate: Value, processed: Value, duration_ms: Value,
             query: str = "ingest") -> dict:
    return {"measurement": STREAM_PROGRESS.name, "time": t, "tags": {"query": query},
            "fields": {"input_rate": val(input_rate, t), "processed_rate": val(processed, t),
                       "batch_duration_ms": val(duration_ms, t)}}


def window(points: list[dict], start: float, end: float,
           active: Mapping[str, int] | None = None):
    return build_window(points, active=active or {}, start=start, end=end)
