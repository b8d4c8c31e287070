"""RCA labels of Alg. 2 and the diagnosis that carries one, with the evidence behind it.

A label alone ("scale up processing") cannot be audited; every :class:`Diagnosis` therefore says
which rule produced it, over which window, what was observed against which threshold and which
node(s) it points at. The orchestrator acts on the label; Grafana and the experiments read the
evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from monitor.schema import DIAGNOSIS

MODES = ("paper", "improved")


class RcaLabel(IntEnum):
    """The five outputs of Alg. 2. The integer is the ``code`` field written to InfluxDB."""

    NO_ACTION = 0          # 0: reliable stage, nothing to do
    UP_PROCESSING = 1      # R_up^CL: wake a dormant Spark worker
    UP_QUEUE = 2           # R_up^CC: wake a dormant RabbitMQ channel
    DOWN_PROCESSING = 3    # R_down^CL: put a Spark worker to sleep
    DOWN_QUEUE = 4         # R_down^CC: put a RabbitMQ channel to sleep

    @property
    def tag(self) -> str:
        """Stable ASCII value of the ``label`` tag (and of ``label:`` in rules.yaml)."""
        return _TAG[self]

    @property
    def paper_name(self) -> str:
        return _PAPER[self]

    @property
    def pool(self) -> str | None:
        """Topology pool the label acts on (``infra.topology.SCALABLE_POOLS``)."""
        return _POOL[self]

    @property
    def direction(self) -> int:
        """+1 scale up, -1 scale down, 0 no action."""
        return _DIRECTION[self]

    @classmethod
    def from_tag(cls, tag: str) -> RcaLabel:
        for label, name in _TAG.items():
            if name == tag:
                return label
        raise ValueError(f"unknown label {tag!r} (allowed: {', '.join(_TAG.values())})")


_TAG = {
    RcaLabel.NO_ACTION: "none",
    RcaLabel.UP_PROCESSING: "up_cl",
    RcaLabel.UP_QUEUE: "up_cc",
    RcaLabel.DOWN_PROCESSING: "down_cl",
    RcaLabel.DOWN_QUEUE: "down_cc",
}
_PAPER = {
    RcaLabel.NO_ACTION: "0",
    RcaLabel.UP_PROCESSING: "R_up^CL",
    RcaLabel.UP_QUEUE: "R_up^CC",
    RcaLabel.DOWN_PROCESSING: "R_down^CL",
    RcaLabel.DOWN_QUEUE: "R_down^CC",
}
_POOL = {
    RcaLabel.NO_ACTION: None,
    RcaLabel.UP_PROCESSING: "processing",
    RcaLabel.UP_QUEUE: "queue",
    RcaLabel.DOWN_PROCESSING: "processing",
    RcaLabel.DOWN_QUEUE: "queue",
}
_DIRECTION = {
    RcaLabel.NO_ACTION: 0,
    RcaLabel.UP_PROCESSING: 1,
    RcaLabel.UP_QUEUE: 1,
    RcaLabel.DOWN_PROCESSING: -1,
    RcaLabel.DOWN_QUEUE: -1,
}


@dataclass(frozen=True)
class WindowSpan:
    """The slice of time the evidence was computed over (epoch seconds)."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Evidence:
    """One observed value compared with one threshold.

    ``metric`` is ``family.field`` (``node.cpu``, ``stream.lag``, ...); ``over_time`` says how the
    window's samples of one entity were reduced and ``across`` how entities were combined;
    ``entity`` is the node/queue/stream/query that produced ``observed`` (the hottest worker for
    ``across: max``). ``observed`` is None when the window had no data for the metric.
    ``threshold`` is the one in force: a rule's ``enter``, or its ``exit`` once latched.
    """

    metric: str
    op: str                    # ">=", "<=", ">" or "<"
    threshold: float
    observed: float | None
    satisfied: bool
    over_time: str = "last"
    across: str = "mean"
    entity: str | None = None
    node: str | None = None

    def describe(self) -> str:
        seen = "no data" if self.observed is None else f"{self.observed:.4g}"
        who = f" ({self.entity})" if self.entity else ""
        return (f"{self.over_time}/{self.across} {self.metric}{who} = {seen} "
                f"{self.op} {self.threshold:.4g}: {'yes' if self.satisfied else 'no'}")


@dataclass(frozen=True)
class Diagnosis:
    """One RCA label with its evidence. ``nodes`` are ordered: the first is the one to act on
    (hottest for a scale-up, coolest for a scale-down)."""

    label: RcaLabel
    rule: str
    mode: str
    time: float
    window: WindowSpan
    pool: str | None = None
    nodes: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    # Improved mode: when the rule's condition first held and when it started firing, so a
    # consumer can tell a new scale-up request from the same one repeated every evaluation.
    pending_since: float | None = None
    firing_since: float | None = None
    active: int | None = None            # active nodes of `pool` in the window
    also: tuple[str, ...] = ()           # other firing rules that gave the same label

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.label.pool != self.pool:
            raise ValueError(f"pool: label {self.label.tag} acts on {self.label.pool!r}, "
                             f"not {self.pool!r}")

    @property
    def code(self) -> int:
        return int(self.label)

    @property
    def primary(self) -> Evidence | None:
        """The first satisfied evidence, else the first evidence: what ``observed`` reports."""
        for ev in self.evidence:
            if ev.satisfied:
                return ev
        return self.evidence[0] if self.evidence else None

    def to_point(self) -> dict[str, Any]:
        """An InfluxDB point (``monitor.schema.DIAGNOSIS``) for ``write_points``.

        ``time`` is integer nanoseconds, which the ``influxdb`` client passes through unchanged
        with its default precision. Empty tags are left out: InfluxDB rejects empty tag values.
        """
        tags = {
            "label": self.label.tag,
            "pool": self.pool or "",
            "node": self.nodes[0] if self.nodes else "",
            "rule": self.rule,
            "mode": self.mode,
        }
        fields: dict[str, float | int] = {"code": self.code, "window_s": float(self.window.seconds)}
        ev = self.primary
        if ev is not None and ev.observed is not None:
            fields["observed"] = float(ev.observed)
            fields["threshold"] = float(ev.threshold)
        return {
            "measurement": DIAGNOSIS.name,
            "tags": {k: v for k, v in tags.items() if v},
            "fields": fields,
            # via microseconds: epoch nanoseconds exceed a float's 53-bit mantissa
            "time": round(self.time * 1e6) * 1000,
        }

    def to_message(self) -> dict[str, Any]:
        """A JSON-serialisable body for the diagnosis exchange: the label and all its evidence."""
        return {
            "label": self.label.tag,
            "code": self.code,
            "paper_label": self.label.paper_name,
            "rule": self.rule,
            "mode": self.mode,
            "time": self.time,
            "pool": self.pool,
            "nodes": list(self.nodes),
            "window": {"start": self.window.start, "end": self.window.end,
                       "seconds": self.window.seconds},
            "pending_since": self.pending_since,
            "firing_since": self.firing_since,
            "active": self.active,
            "also": list(self.also),
            "evidence": [
                {"metric": e.metric, "over_time": e.over_time, "across": e.across, "op": e.op,
                 "threshold": e.threshold, "observed": e.observed, "satisfied": e.satisfied,
                 "entity": e.entity, "node": e.node}
                for e in self.evidence
            ],
        }


def no_action(mode: str, time: float, window: WindowSpan,
              evidence: tuple[Evidence, ...] = ()) -> Diagnosis:
    return Diagnosis(RcaLabel.NO_ACTION, "none", mode, time, window, evidence=evidence)

