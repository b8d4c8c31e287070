"""The rule path behind one prediction, as text for the orchestrator's decision log line.

A depth-limited tree *is* a set of rules; printing the path a feature vector took ("queue:
publish_rate_last > 3197.5 and stream_lag_slope <= 12 -> 2 channels") lets an operator check a
decision against the metrics in Grafana without opening the model. Repeated tests of one feature
along a path are merged into the tightest bound (``x > 10 and x > 20`` reads ``x > 20``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autoscaler.features import FeatureVector
from autoscaler.model.train import UNIT, ResourceModel
from infra.topology import SCALABLE_POOLS


@dataclass(frozen=True)
class Condition:
    feature: str
    op: str              # "<=" or ">" (sklearn: go left when value <= threshold)
    threshold: float
    value: float         # the feature's value in this prediction

    def describe(self) -> str:
        return f"{self.feature} {self.op} {_fmt(self.threshold)}"


@dataclass(frozen=True)
class RulePath:
    pool: str
    conditions: tuple[Condition, ...]
    count: int
    samples: int             # training rows that reached the leaf
    purity: float            # share of those rows whose label is `count`

    @property
    def text(self) -> str:
        unit = UNIT[self.pool] + ("s" if self.count != 1 else "")
        rules = " and ".join(c.describe() for c in self.conditions) or "always"
        return f"{self.pool}: {rules} -> {self.count} {unit}"

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.feature for c in self.conditions))


@dataclass(frozen=True)
class Explanation:
    version: int
    paths: Mapping[str, RulePath]

    @property
    def text(self) -> str:
        """One line for the log: both pools' rules, separated by ``; ``."""
        return "; ".join(self.paths[p].text for p in SCALABLE_POOLS if p in self.paths)

    def as_dict(self) -> dict[str, object]:
        return {"model_version": self.version,
                **{f"rule_{p}": path.text for p, path in self.paths.items()}}


def _fmt(x: float) -> str:
    if abs(x) >= 100 or x == int(x):
        return f"{x:.1f}"
    return f"{x:.3g}"


def rule_path(model: ResourceModel, pool: str,
              features: FeatureVector | Mapping[str, float] | Sequence[float]) -> RulePath:
    tree = model.trees[pool]
    x = model.row(features)
    t = tree.tree_
    node_ids = tree.decision_path(x).indices
    leaf = int(tree.apply(x)[0])
    # Tightest bound per (feature, direction), in the order features are first tested.
    bounds: dict[tuple[str, str], Condition] = {}
    for node in node_ids:
        if node == leaf:
            continue
        name = model.feature_names[int(t.feature[node])]
        threshold = float(t.threshold[node])
        value = float(x[0, int(t.feature[node])])
        op = "<=" if value <= threshold else ">"
        key = (name, op)
        prev = bounds.get(key)
        if prev is None or (op == "<=" and threshold < prev.threshold) or (
                op == ">" and threshold > prev.threshold):
            bounds[key] = Condition(name, op, threshold, value)
    counts = np.asarray(t.value[leaf][0], dtype=float)
    klass = int(tree.classes_[int(np.argmax(counts))])
    total = counts.sum()
    return RulePath(pool, tuple(bounds.values()), klass, int(t.n_node_samples[leaf]),
                    float(counts.max() / total) if total else 0.0)


def explain(model: ResourceModel, features: FeatureVector | Mapping[str, float] | Sequence[float]
            ) -> Explanation:
    """Both pools' rule paths for ``features`` (``ModelHandle.explain`` delegates here)."""
    return Explanation(model.version, {p: rule_path(model, p, features) for p in SCALABLE_POOLS})
