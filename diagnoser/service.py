"""The diagnoser service (Alg. 2): a thin loop around the pure rules engine.

Every ``interval_s``: read the last ``window_s`` of the rules' inputs from InfluxDB, build the
metrics window, evaluate (improved mode by default, ``--mode paper`` for Alg. 2 as published),
detect stragglers, then publish every label with its evidence on ``vpp.diagnosis`` and write it
to InfluxDB (``rca``, ``straggler``). One structured log line per evaluation says what was
decided and why. Labels that could not be published wait and go out with the next evaluation.

    python -m diagnoser [--mode improved|paper] [--interval S]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pika
from prometheus_client import Counter, Gauge

from diagnoser.engine import Engine
from diagnoser.labels import Diagnosis, RcaLabel
from diagnoser.paper import PaperThresholds, diagnose_paper
from diagnoser.stragglers import (
    Straggler,
    node_rates,
    node_stragglers,
    robust_stragglers,
    stage_relative_node_stragglers,
)
from diagnoser.window import build_window
from infra import logs
from infra.amqp import amqp_params, publish_stored
from infra.logs import event
from infra.topology import Topology
from ingest.topology import DIAGNOSIS_EXCHANGE, TELEMETRY_STREAM, home_channel
from monitor import history, influx
from monitor.schema import QUEUE, SPARK_TASK

log = logs.get("diagnoser")
EVALUATIONS = Counter("vpp_diagnoser_evaluations", "Windows evaluated")
LABELS = Counter("vpp_diagnoser_labels", "Labels emitted", ["label"])
STRAGGLERS = Counter("vpp_diagnoser_stragglers", "Stragglers flagged", ["node"])
ERRORS = Counter("vpp_diagnoser_errors", "Failed evaluations or outputs", ["stage"])
LAST_CODE = Gauge("vpp_diagnoser_last_label", "Code of the latest label per pool", ["pool"])
PENDING = Gauge("vpp_diagnoser_pending_messages", "Labels waiting for the broker")


@dataclass
class Outbox:
    """Confirmed publishing of diagnosis messages; what fails stays for the next round."""

    params: pika.ConnectionParameters
    pending: list[tuple[str, bytes]] = field(default_factory=list)

    def send(self, messages: list[tuple[str, bytes]]) -> int:
        self.pending.extend(messages)
        if not self.pending:
            return 0
        sent = 0
        try:
            conn = pika.BlockingConnection(self.params)
            try:
                ch = conn.channel()
                ch.confirm_delivery()
                while self.pending:
                    key, body = self.pending[0]
                    publish_stored(ch, DIAGNOSIS_EXCHANGE, key, body)
                    self.pending.pop(0)
                    sent += 1
            finally:
                if conn.is_open:
                    conn.close()
        except Exception as exc:  # broker restarting: the labels wait
            ERRORS.labels("publish").inc()
            event(log, "publish_deferred", pending=len(self.pending), error=repr(exc)[:200])
        PENDING.set(len(self.pending))
        return sent


def telemetry_or_other(point: dict) -> bool:
    """Queue evidence is the telemetry path only: the control-plane streams (health events,
    labels, decisions) have producers but no steady consumer, so their publish rate always
    exceeds their deliver rate and would read as a permanent backlog."""
    if point["measurement"] != QUEUE.name:
        return True
    return point["tags"].get("queue") == TELEMETRY_STREAM  # type: ignore[union-attr]


def straggler_point(s: Straggler, now: float) -> str:
    return influx.line("straggler", {"node": s.node, "method": s.method},
                       {"observed": s.observed, "median": s.median, "threshold": s.threshold,
                        "peers": s.peers, "stage": int(s.stage) if s.stage.isdigit() else None},
                       int((s.time or now) * 1e9))


def diagnosis_line(d: Diagnosis) -> str:
    p = d.to_point()
    return influx.line(p["measurement"], p["tags"], p["fields"], int(p["time"]))


class Diagnoser:
    def __init__(self, topo: Topology, mode: str = "improved", rules_path: str | None = None,
                 paper: PaperThresholds | None = None, name: str = "diagnoser") -> None:
        if mode not in ("improved", "paper"):
            raise ValueError(f"mode: must be improved or paper, got {mode!r}")
        self.topo = topo
        self.mode = mode
        self.name = name  # in every message: an orchestrator follows one diagnoser by name
        self.engine = Engine.load(rules_path, topo)
        self.state = self.engine.initial_state()
        self.paper = paper or PaperThresholds()
        self.window_s = float(self.engine.rules.settings.window_s)
        self.interval_s = float(self.engine.rules.settings.interval_s)
        self.pool_of = {n.name: n.pool for n in topo.nodes}
        self.wanted = dict(self.engine.rules.inputs())
        self.wanted.setdefault(SPARK_TASK.name, SPARK_TASK.fields)
        self.outbox = Outbox(amqp_params(topo, home_channel(topo), "diagnoser", heartbeat=30))
        self.client = influx.client(topo)

    def step(self, now: float) -> list[Diagnosis]:
        start_ns, end_ns = int((now - self.window_s) * 1e9), int(now * 1e9)
        points = [p for p in history.fetch(self.topo, self.wanted, start_ns, end_ns,
                                           cli=self.client) if telemetry_or_other(p)]
        active = history.active_counts(self.topo, points, now)
        # time_unit applies to the bounds as well as to the points' times.
        window = build_window(points, active=active, start=start_ns, end=end_ns,
                              pool_of=self.pool_of, time_unit="ns", on_error="skip")
        if self.mode == "paper":
            diags = diagnose_paper(window, self.paper, now=now)
        else:
            self.state, diags = self.engine.evaluate(self.state, window, now)
        stragglers = (robust_stragglers(window.tasks) + node_stragglers(node_rates(window.tasks))
                      + stage_relative_node_stragglers(window.tasks))
        self._emit(diags, stragglers, now, active, len(window.rejected))
        return diags

    def _emit(self, diags: list[Diagnosis], stragglers: list[Straggler], now: float,
              active: dict[str, int], rejected: int) -> None:
        EVALUATIONS.inc()
        messages = [(f"rca.{d.label.tag}", json.dumps({**d.to_message(), "source": self.name},
                                                       default=str).encode())
                    for d in diags]
        for s in stragglers:
            STRAGGLERS.labels(s.node).inc()
            messages.append((f"straggler.{s.node}", json.dumps(s.__dict__, default=str).encode()))
        self.outbox.send(messages)
        try:
            influx.write_lines(self.topo, [diagnosis_line(d) for d in diags]
                               + [straggler_point(s, now) for s in stragglers], cli=self.client)
        except Exception as exc:  # the labels were published; the dashboard copy can lag
            ERRORS.labels("influx").inc()
            event(log, "influx_write_failed", error=repr(exc)[:200])
        for d in diags:
            LABELS.labels(d.label.tag).inc()
            if d.pool:
                LAST_CODE.labels(d.pool).set(d.code)
        event(log, "diagnosis", mode=self.mode, active=active, rejected_points=rejected,
              labels=[{"label": d.label.tag, "paper": d.label.paper_name, "rule": d.rule,
                       "pool": d.pool, "nodes": list(d.nodes),
                       "evidence": [e.describe() for e in d.evidence][:6]}
                      for d in diags if d.label is not RcaLabel.NO_ACTION] or "0 (reliable)",
              stragglers=[{"node": s.node, "method": s.method, "observed": round(s.observed, 1),
                           "median": round(s.median, 1)} for s in stragglers])

    def run(self, stop, interval_s: float | None = None) -> None:
        interval = interval_s or self.interval_s
        next_at = time.monotonic()
        while not stop():
            try:
                self.step(time.time())
            except Exception as exc:  # InfluxDB restarting: skip this round, keep going
                ERRORS.labels("evaluate").inc()
                event(log, "evaluation_failed", error=repr(exc)[:300])
            next_at += interval
            while not stop() and time.monotonic() < next_at:
                time.sleep(min(0.5, max(0.0, next_at - time.monotonic())))
