"""Paper mode: Alg. 2 (Real-time Resource Utilisation Analyser) as published, for comparison.

Faithful on purpose, including its weaknesses, so the experiments can show what the improved
engine changes: the decision is instantaneous (latest sample, no ``for``, no hysteresis), CPU
*and* memory must both cross a threshold, and scale-down ignores the pool's ``min_active`` (the
orchestrator has to refuse it).

Reading of Alg. 2 used here: the utilisation ``CPU^utl``/``Mem^utl`` of a pool (``id`` = CL for
processing, CC for queue) is the mean over the pool's nodes of each node's latest sample in the
window, i.e. "the current utilisation of the active configured resources". A per-record reading
would let one hot and one idle worker ask for a scale-up and a scale-down at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from statistics import fmean

from .labels import Diagnosis, Evidence, RcaLabel, no_action
from .window import MetricsWindow, NodeSample

CL = "CL"   # processing cluster (Spark) in the paper's notation
CC = "CC"   # queuing cluster / channel (RabbitMQ)
POOL_ID = {"processing": CL, "queue": CC}


@dataclass(frozen=True)
class PaperThresholds:
    """CPU_max^th, Mem_max^th, CPU_min^th, Mem_min^th of Alg. 2, in % of the node's own limit.

    Maxima are the paper's (Sec. IV-B): scale out when CPU crosses 85 %, memory 75 %.
    The paper gives no minima. Ours keep each minimum at or below half its maximum: going from
    two nodes to one doubles the survivor's load, so a pool scaled down at <= 20 % CPU and
    <= 30 % memory lands at <= 40 % / <= 60 %, still below 85 % / 75 %, and the next sample does
    not ask to scale straight back up. CPU gets the wider margin because it is burstier than
    memory. (The paper's Table I/II show busy-but-fine nodes at 15-32 % CPU and 51-68 % memory:
    with the AND below, memory is what usually keeps paper mode from scaling down.)
    """

    cpu_max: float = 85.0
    mem_max: float = 75.0
    cpu_min: float = 20.0
    mem_min: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"thresholds.{f.name}: expected a number, got {value!r}")
            if not 0 <= value <= 100:
                raise ValueError(f"thresholds.{f.name}: must be within 0..100, got {value}")
        if self.cpu_min >= self.cpu_max:
            raise ValueError(f"thresholds.cpu_min: {self.cpu_min} must be below cpu_max "
                             f"{self.cpu_max}")
        if self.mem_min >= self.mem_max:
            raise ValueError(f"thresholds.mem_min: {self.mem_min} must be below mem_max "
                             f"{self.mem_max}")


def alg2_label(pool_id: str, cpu: float, mem: float,
               thresholds: PaperThresholds | None = None) -> RcaLabel:
    """Lines 9-29 of Alg. 2 for one BM^fdbk entry {CPU^utl, Mem^utl, id}."""
    th = thresholds or PaperThresholds()
    if pool_id not in (CL, CC):
        raise ValueError(f"id: must be {CL} or {CC}, got {pool_id!r}")
    if pool_id == CL and cpu >= th.cpu_max and mem >= th.mem_max:
        return RcaLabel.UP_PROCESSING          # RCA = F_2 (R_up^CL)
    if pool_id == CC and cpu >= th.cpu_max and mem >= th.mem_max:
        return RcaLabel.UP_QUEUE               # RCA = F_1 (R_up^CC)
    if pool_id == CL and cpu <= th.cpu_min and mem <= th.mem_min:
        return RcaLabel.DOWN_PROCESSING
    if pool_id == CC and cpu <= th.cpu_min and mem <= th.mem_min:
        return RcaLabel.DOWN_QUEUE
    return RcaLabel.NO_ACTION


def diagnose_paper(window: MetricsWindow, thresholds: PaperThresholds | None = None,
                   now: float | None = None) -> list[Diagnosis]:
    """Alg. 2 over one window: the actionable labels in Alg. 2's order (CL before CC), or a
    single no-action diagnosis. Unlike the improved engine, an up and a down may come together.
    """
    th = thresholds or PaperThresholds()
    when = window.end if now is None else now
    out: list[Diagnosis] = []
    evidence: list[Evidence] = []
    for pool in ("processing", "queue"):
        latest = window.latest_by_node(pool)
        if not latest:
            continue   # no entry in TB for this id: Alg. 2 has nothing to match
        cpu = fmean(s.cpu for s in latest.values())
        mem = fmean(s.memory for s in latest.values())
        label = alg2_label(POOL_ID[pool], cpu, mem, th)
        ev = _evidence(cpu, mem, th, down=label.direction < 0)
        if label is RcaLabel.NO_ACTION:
            evidence.extend(ev)
            continue
        out.append(Diagnosis(
            label, rule=f"alg2_{label.tag}", mode="paper", time=when, window=window.span,
            pool=pool, nodes=_ranked(latest.values(), hottest_first=label.direction > 0),
            evidence=ev, active=window.active.get(pool),
        ))
    return out or [no_action("paper", when, window.span, tuple(evidence))]


def _evidence(cpu: float, mem: float, th: PaperThresholds, down: bool) -> tuple[Evidence, ...]:
    if down:
        return (Evidence("node.cpu", "<=", th.cpu_min, cpu, cpu <= th.cpu_min, "last", "mean"),
                Evidence("node.memory", "<=", th.mem_min, mem, mem <= th.mem_min, "last", "mean"))
    return (Evidence("node.cpu", ">=", th.cpu_max, cpu, cpu >= th.cpu_max, "last", "mean"),
            Evidence("node.memory", ">=", th.mem_max, mem, mem >= th.mem_max, "last", "mean"))


def _ranked(samples: Iterable[NodeSample], hottest_first: bool) -> tuple[str, ...]:
    ranked = sorted(samples, key=lambda s: (s.cpu, s.memory, s.node), reverse=hottest_first)
    return tuple(s.node for s in ranked)
