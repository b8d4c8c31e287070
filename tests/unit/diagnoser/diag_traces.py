"""Synthetic metric traces for the diagnoser tests: a scenario says what every metric does as a
function of time; a window at `now` holds the samples of the last `span` seconds, every `step`
seconds, turned into InfluxDB-style points and read back with build_window, as the service will.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from diagnoser.engine import Engine, EngineState
from diagnoser.labels import Diagnosis, RcaLabel
from diagnoser.rules import parse_rules
from diagnoser.window import MetricsWindow, build_window
from infra.topology import PoolPolicy
from monitor.schema import PROCESSING, QUEUE, QUEUING, STREAM_LAG, STREAM_PROGRESS

T0 = 1_700_000_000.0
STREAM = "vpp.telemetry.pv"
CLASSIC = "vpp.control.commands"

Value = float | Callable[[float], float]
POOLS = {"queue": PoolPolicy("queue", "stop", 1, 2),
         "processing": PoolPolicy("processing", "stop", 1, 3)}


def v(x: Value, t: float) -> float:
    return x(t) if callable(x) else float(x)


@dataclass(frozen=True)
class Scenario:
    workers: Mapping[str, tuple[Value, Value]] = field(
        default_factory=lambda: {"worker-0": (55.0, 60.0)})
    channels: Mapping[str, tuple[Value, Value]] = field(
        default_factory=lambda: {"channel-0": (40.0, 40.0)})
    input_rate: Value | None = 1000.0
    processed_rate: Value | None = 1000.0
    lag: Value | None = 200.0                 # stream lag on channel-0
    publish_rate: Value | None = 1000.0       # classic queue on channel-0
    deliver_rate: Value | None = 1000.0
    messages: Value | None = 0.0
    active: Mapping[str, int] = field(default_factory=lambda: {"processing": 1, "queue": 1})


def steady() -> Scenario:
    return Scenario()


def idle() -> Scenario:
    return Scenario(
        workers={"worker-0": (12.0, 55.0), "worker-1": (8.0, 55.0)},
        channels={"channel-0": (10.0, 30.0), "channel-1": (6.0, 28.0)},
        input_rate=100.0, processed_rate=100.0, lag=0.0, publish_rate=100.0, deliver_rate=100.0,
        active={"processing": 2, "queue": 2},
    )


def spark_behind() -> Scenario:
    # Spark saturated: it processes 1500 of 2000 rows/s, the lag grows 500/s, and the broker
    # (whose consumer is Spark) sees deliver < publish with a growing classic queue.
    return Scenario(
        workers={"worker-0": (88.0, 70.0), "worker-1": (96.0, 72.0)},
        input_rate=2000.0, processed_rate=1500.0, lag=lambda t: 500.0 * (t - T0),
        publish_rate=2000.0, deliver_rate=1500.0, messages=lambda t: 500.0 * (t - T0),
        active={"processing": 2, "queue": 1},
    )


def channel_hot() -> Scenario:
    return Scenario(channels={"channel-0": (95.0, 50.0)})


def broker_backlog() -> Scenario:
    # Workers cool, but the broker delivers 1500 of 2000 msg/s: the queue is the bottleneck.
    return Scenario(
        workers={"worker-0": (40.0, 60.0)},
        channels={"channel-0": (70.0, 50.0)},
        publish_rate=2000.0, deliver_rate=1500.0, messages=lambda t: 500.0 * (t - T0),
    )


def points_at(t: float, sc: Scenario) -> list[dict]:
    pts: list[dict] = []
    for node, (cpu, mem) in sc.workers.items():
        pts.append({"measurement": PROCESSING.name, "time": t,
                    "tags": {"cluster": "vpp-twin", "node": node, "role": "spark-worker"},
                    "fields": {"cpu": v(cpu, t), "memory": v(mem, t), "disk": 10.0}})
    for node, (cpu, mem) in sc.channels.items():
        pts.append({"measurement": QUEUING.name, "time": t,
                    "tags": {"cluster": "vpp-twin", "node": node, "role": "rabbitmq"},
                    "fields": {"cpu": v(cpu, t), "memory": v(mem, t), "disk": 10.0}})
    if sc.input_rate is not None and sc.processed_rate is not None:
        pts.append({"measurement": STREAM_PROGRESS.name, "time": t, "tags": {"query": "twin"},
                    "fields": {"input_rate": v(sc.input_rate, t),
                               "processed_rate": v(sc.processed_rate, t),
                               "batch_duration_ms": 900.0}})
    if sc.lag is not None:
        pts.append({"measurement": STREAM_LAG.name, "time": t,
                    "tags": {"node": "channel-0", "stream": STREAM},
                    "fields": {"lag": v(sc.lag, t)}})
    if sc.messages is not None:
        fields = {"messages": v(sc.messages, t)}
        if sc.publish_rate is not None:
            fields["publish_rate"] = v(sc.publish_rate, t)
        if sc.deliver_rate is not None:
            fields["deliver_rate"] = v(sc.deliver_rate, t)
        pts.append({"measurement": QUEUE.name, "time": t,
                    "tags": {"node": "channel-0", "queue": CLASSIC}, "fields": fields})
    return pts


def window_at(now: float, sc: Scenario | Callable[[float], Scenario], span: float = 60.0,
              step: float = 10.0) -> MetricsWindow:
    scenario_at = sc if callable(sc) else (lambda _t: sc)
    n = round(span / step)
    points = [p for i in range(n + 1) for p in points_at(now - span + i * step,
                                                        scenario_at(now - span + i * step))]
    return build_window(points, active=scenario_at(now).active, start=now - span, end=now)


def run(engine: Engine, sc: Scenario | Callable[[float], Scenario], seconds: float,
        step: float = 10.0, span: float = 60.0, state: EngineState | None = None,
        start: float = T0) -> tuple[EngineState, list[tuple[float, list[Diagnosis]]]]:
    st = state or engine.initial_state()
    out = []
    for i in range(int(seconds / step) + 1):
        now = start + i * step
        st, diags = engine.evaluate(st, window_at(now, sc, span, step), now)
        out.append((now, diags))
    return st, out


def labels(trace: list[tuple[float, list[Diagnosis]]]) -> list[tuple[RcaLabel, ...]]:
    return [tuple(d.label for d in diags) for _, diags in trace]


def first_time(trace: list[tuple[float, list[Diagnosis]]], label: RcaLabel) -> float | None:
    for t, diags in trace:
        if any(d.label is label for d in diags):
            return t
    return None


def flips(seq: list) -> int:
    return sum(1 for a, b in pairwise(seq) if a != b)


def sine(mid: float, amp: float, period: float) -> Callable[[float], float]:
    return lambda t: mid + amp * math.sin(2 * math.pi * (t - T0) / period)


def cpu_rule_engine(for_s: float = 30, keep: float = 0, enter: float = 85, exit: float = 75,
                    cooldown_s: float = 60, max_gap_s: float = 90,
                    label: str = "up_cl", op: str = ">=") -> Engine:
    """One rule on the hottest worker's latest CPU: isolates the engine's semantics."""
    raw = {
        "version": 1,
        "engine": {"window_s": 10, "interval_s": 10, "max_gap_s": max_gap_s,
                   "cooldown_s": cooldown_s},
        "rules": [{"id": "cpu", "label": label, "for_s": for_s, "keep_firing_for_s": keep,
                   "when": {"metric": "node.cpu", "over_time": "last", "across": "max",
                            "op": op, "enter": enter, "exit": exit}}],
    }
    return Engine(parse_rules(raw, "test"), POOLS)


def cpu_window(now: float, cpu: float, active: int = 2) -> MetricsWindow:
    sc = Scenario(workers={"worker-0": (cpu, 50.0)}, active={"processing": active, "queue": 1})
    return window_at(now, sc, span=0.0)


def step_cpu(engine: Engine, values: list[float], step: float = 10.0, active: int = 2,
             state: EngineState | None = None, start: float = T0
             ) -> tuple[EngineState, list[RcaLabel]]:
    st = state or engine.initial_state()
    out = []
    for i, cpu in enumerate(values):
        now = start + i * step
        st, diags = engine.evaluate(st, cpu_window(now, cpu, active), now)
        out.append(diags[0].label)
    return st, out

