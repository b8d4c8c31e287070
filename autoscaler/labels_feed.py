"""Collect step, RCA side: the diagnoser's labels, read from its stream (``vpp.diagnosis.labels``
on the home channel), newest evaluation first. The orchestrator never recomputes them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from diagnoser.labels import RcaLabel
from infra.amqp import amqp_params
from infra.topology import Topology
from ingest.streams import StreamMessage, read_stream
from ingest.topology import DIAGNOSIS_STREAM, home_channel


@dataclass(frozen=True)
class LabelSet:
    """The labels of one diagnoser evaluation (its ``time``, epoch s) and their messages."""

    time: float
    labels: tuple[RcaLabel, ...]
    messages: tuple[dict[str, Any], ...] = ()

    def evidence(self) -> list[dict[str, Any]]:
        return [{"label": m.get("label"), "rule": m.get("rule"), "nodes": m.get("nodes"),
                 "evidence": m.get("evidence")} for m in self.messages
                if m.get("label") != RcaLabel.NO_ACTION.tag]


def latest_evaluation(messages: Iterable[dict[str, Any]], mode: str,
                      source: str = "diagnoser") -> LabelSet | None:
    """Labels of the newest evaluation of ``mode`` by the diagnoser named ``source`` (pure;
    messages as the diagnoser sends them)."""
    by_time: dict[float, list[dict[str, Any]]] = {}
    for m in messages:
        if (m.get("mode") != mode or m.get("source", "diagnoser") != source
                or not isinstance(m.get("time"), int | float)):
            continue
        by_time.setdefault(float(m["time"]), []).append(m)
    if not by_time:
        return None
    t = max(by_time)
    msgs = by_time[t]
    labels = []
    for m in msgs:
        try:
            labels.append(RcaLabel.from_tag(str(m.get("label"))))
        except ValueError:
            continue
    return LabelSet(t, tuple(labels), tuple(msgs))


@dataclass
class LabelFeed:
    """Reads what arrived since the last call (tracks the stream offset itself)."""

    topo: Topology
    mode: str = "improved"
    source: str = "diagnoser"
    reader: Callable[..., Iterable[StreamMessage]] = read_stream
    next_offset: int | str = "last"
    latest: LabelSet | None = None
    errors: int = 0
    _params: Any = field(default=None, repr=False)

    def poll(self) -> LabelSet | None:
        if self._params is None:
            self._params = amqp_params(self.topo, home_channel(self.topo), "autoscaler",
                                       heartbeat=30, socket_timeout=5)
        bodies = []
        for msg in self.reader(self._params, DIAGNOSIS_STREAM, self.next_offset, idle_s=0.3):
            self.next_offset = msg.offset + 1
            try:
                body = json.loads(msg.body)
            except ValueError:
                self.errors += 1
                continue
            if msg.routing_key.startswith("rca."):
                bodies.append(body)
        newest = latest_evaluation(bodies, self.mode, self.source)
        if newest is not None and (self.latest is None or newest.time >= self.latest.time):
            self.latest = newest
        return self.latest
