"""The reactive baseline the bench compares against: the Kubernetes HPA's ratio rule.

``desired = ceil(active * metric / target)`` per pool, skipped inside a tolerance band around
1.0 (HPA's default 0.1), with CPU (% of each node's own limit, the pool's mean of the latest
samples) as the metric. It turns the answer into the same RCA labels Alg. 2 emits, so the one
decide/realise path of the orchestrator runs every policy. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler.features import FeatureVector
from diagnoser.labels import RcaLabel

UP = {"queue": RcaLabel.UP_QUEUE, "processing": RcaLabel.UP_PROCESSING}
DOWN = {"queue": RcaLabel.DOWN_QUEUE, "processing": RcaLabel.DOWN_PROCESSING}


@dataclass(frozen=True)
class RatioRule:
    target_cpu_pct: float = 70.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not self.target_cpu_pct > 0:
            raise ValueError(f"reactive.target_cpu_pct: must be > 0, got {self.target_cpu_pct}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"reactive.tolerance: must be in [0, 1), got {self.tolerance}")


DEFAULT_RULE = RatioRule()


def desired(active: int, cpu_pct: float, rule: RatioRule) -> int:
    if active <= 0:
        return 1
    ratio = cpu_pct / rule.target_cpu_pct
    if abs(ratio - 1.0) <= rule.tolerance:
        return active
    return max(1, math.ceil(active * ratio))


def labels(features: FeatureVector, active: Mapping[str, int], rule: RatioRule = DEFAULT_RULE
           ) -> tuple[RcaLabel, ...]:
    out = []
    for pool in ("queue", "processing"):
        want = desired(active.get(pool, 0), features[f"{pool}_cpu_mean_last"], rule)
        if want > active.get(pool, 0):
            out.append(UP[pool])
        elif want < active.get(pool, 0):
            out.append(DOWN[pool])
    return tuple(out) or (RcaLabel.NO_ACTION,)
