"""Decide step (collect -> evaluate -> **decide** -> realise): Alg. 3 as a pure function.

``decide(state, inputs, now) -> (new_state, actions)``. No clock, no Docker, no network: the
service passes the RCA labels of Alg. 2, the resource model's :class:`RequiredCounts`, the
nodes' states and the observed throughput, and realises the returned actions (drain-safe) itself.

Alg. 3 semantics, per pool:

* **R_up** (wake): target = max(active + 1, model's required), at most ``max_active``;
* **R_down** (sleep): target = min(active - 1, model's required), at least ``min_active``;
  a target never goes against the label's direction, whatever the model says (the model sizes,
  the diagnoser decides whether to move);
* **0**: no action, the reliable stage.

What keeps it from flapping (the KEDA/HPA/Flink lessons of DESIGN.md):

* **step size** (``max_step``): how many nodes one step may wake or put to sleep in a pool.
  ``1`` is Alg. 3 as published (the target may be further away; the next step, after the
  cooldown and with fresh labels, takes the next node). ``0`` goes straight to the target, as
  the HPA and the Flink autoscaler do: the model sized the pool, so a surge needing two more
  workers gets both at once instead of one per cooldown;
* **cooldown** (``cooldown_s``): after any action in a pool, nothing else there until it passed;
* **scale-down delay** (``scale_down_delay_s``): a down label must persist, uninterrupted, this
  long before a node is put to sleep, like the HPA's stabilisation window: any step of that pool
  without a down label restarts the clock;
* **no scale-down while catching up**: with the stream lag above ``catch_up_lag`` readings the
  system is not at rest; the delay clock restarts too;
* **up beats down**: if a pool gets both, only the up label counts;
* **effectiveness check** (Flink): after a wake, the pool's throughput at that moment is kept;
  if the pool still asks R_up after the cooldown and throughput did not grow by
  ``effectiveness_gain``, the next action (or hold) carries that in its evidence.

Choice of node: wake a *paused* dormant node before a *stopped* one (unpause is fast), lowest
name first; put to sleep the most recently woken active node, never the home channel (the first
node of the queue pool: control plane, metrics and decisions streams live there).

**Shadow mode** (``PolicyConfig.shadow``): the same decisions, marked ``shadow=True``; the state
records them as if realised so the shadow log keeps the cadence the live one would have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autoscaler.features import FeatureVector
from autoscaler.model.capacity import RequiredCounts
from diagnoser.labels import RcaLabel
from infra.topology import SCALABLE_POOLS, PoolPolicy, Topology
from monitor.schema import DECISION

NODE_STATES = ("active", "paused", "stopped")
DORMANT_STATES = ("paused", "stopped")
WAKE, SLEEP = "wake", "sleep"


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class NodeStatus:
    """One node of a pool now. ``since``: when it entered ``state`` (for an active node: when it
    was woken), if known; it orders the sleep choice when the policy's own record is empty."""

    name: str
    state: str
    since: float | None = None

    def __post_init__(self) -> None:
        if self.state not in NODE_STATES:
            raise ValueError(f"nodes.{self.name}.state: must be one of {', '.join(NODE_STATES)}"
                             f", got {self.state!r}")

    @property
    def active(self) -> bool:
        return self.state == "active"


@dataclass(frozen=True)
class PoolView:
    """A pool's policy and nodes (topology order). ``home`` never sleeps; for the queue pool it
    defaults to the pool's first node."""

    policy: PoolPolicy
    nodes: tuple[NodeStatus, ...]
    home: str | None = None

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"pools.{self.policy.name}.nodes: duplicate names {names}")
        if self.home is None and self.policy.name == "queue" and self.nodes:
            object.__setattr__(self, "home", self.nodes[0].name)
        if self.home is not None and self.home not in names:
            raise ValueError(f"pools.{self.policy.name}.home: {self.home!r} is not a node of "
                             f"the pool ({', '.join(names)})")

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def active(self) -> tuple[NodeStatus, ...]:
        return tuple(n for n in self.nodes if n.active)

    @property
    def dormant(self) -> tuple[NodeStatus, ...]:
        return tuple(n for n in self.nodes if n.state in DORMANT_STATES)

    @classmethod
    def from_topology(cls, topo: Topology, pool: str, states: Mapping[str, str],
                      since: Mapping[str, float] | None = None) -> PoolView:
        """``states``: node name -> active | paused | stopped (from Docker); every node of the
        pool must be listed, so a missing container is noticed, not assumed asleep."""
        nodes = []
        for node in topo.pool_nodes(pool):
            if node.name not in states:
                raise ValueError(f"states.{node.name}: missing (pool {pool})")
            nodes.append(NodeStatus(node.name, states[node.name], (since or {}).get(node.name)))
        return cls(topo.pools[pool], tuple(nodes))


@dataclass(frozen=True)
class PolicyConfig:
    cooldown_s: float = 60.0
    scale_down_delay_s: float = 120.0
    catch_up_lag: float = 5_000.0       # readings of stream lag: above it, no scale-down
    effectiveness_gain: float = 0.10    # a wake must raise the pool's throughput by 10 %
    max_step: int = 1                   # nodes per pool per step; 0: straight to the target
    shadow: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_step, bool) or not isinstance(self.max_step, int) or \
                self.max_step < 0:
            raise ValueError(f"policy.max_step: must be an integer >= 0, got {self.max_step!r}")
        for name in ("cooldown_s", "scale_down_delay_s", "catch_up_lag", "effectiveness_gain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value >= 0):
                raise ValueError(f"policy.{name}: must be a finite number >= 0, got {value!r}")


DEFAULT_POLICY = PolicyConfig()


@dataclass(frozen=True)
class PolicyInputs:
    """One evaluation: the labels of Alg. 2 (any order; RcaLabel or Diagnosis.label), the
    model's answer (None when no model is loaded: then targets are active +/- 1), the pools,
    per-pool throughput in readings/s (queue: publish rate, processing: Spark's input rate; see
    :func:`observations`), the stream lag in readings, and context copied into every action's
    evidence (model version, rule path, diagnosis rule ...)."""

    labels: tuple[RcaLabel, ...]
    pools: Mapping[str, PoolView]
    required: RequiredCounts | None = None
    throughput: Mapping[str, float] = field(default_factory=dict)
    lag: float | None = None
    model_version: int | None = None
    explanation: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)


def observations(features: FeatureVector) -> tuple[dict[str, float], float]:
    """Throughput per pool and stream lag from the feature vector the model was asked with."""
    return ({"queue": features["publish_rate_mean"],
             "processing": features["input_rate_mean"]},
            features["stream_lag_last"])


# ---------------------------------------------------------------------------------------------
# state and outputs


@dataclass(frozen=True)
class EffectivenessCheck:
    node: str
    time: float
    throughput_before: float | None


@dataclass(frozen=True)
class PoolState:
    last_action_at: float | None = None
    last_action: str | None = None
    down_since: float | None = None      # first step of the current uninterrupted down request
    woken: tuple[str, ...] = ()          # nodes this policy woke and has not put back, oldest first
    check: EffectivenessCheck | None = None
    last_effectiveness: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Hold:
    """A label that did not become an action, and why (for the decision log)."""

    pool: str
    label: RcaLabel
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyState:
    pools: Mapping[str, PoolState] = field(default_factory=dict)
    holds: tuple[Hold, ...] = ()        # the last step's held labels
    reliable: bool = False              # the last step saw label 0 only (Alg. 3's RS)

    def pool(self, name: str) -> PoolState:
        return self.pools.get(name, PoolState())


@dataclass(frozen=True)
class Action:
    time: float
    pool: str
    node: str
    action: str                          # wake | sleep
    reason: str
    label: RcaLabel
    required: RequiredCounts | None
    active_before: int
    active_after: int
    shadow: bool
    evidence: Mapping[str, Any]

    def to_log(self) -> dict[str, Any]:
        """The structured decision line (JSON-ready)."""
        return {
            "event": "autoscaler_decision", "time": self.time, "pool": self.pool,
            "node": self.node, "action": self.action, "label": self.label.tag,
            "paper_label": self.label.paper_name, "reason": self.reason,
            "required": None if self.required is None else self.required.as_dict(),
            "active_before": self.active_before, "active_after": self.active_after,
            "shadow": self.shadow, "evidence": dict(self.evidence),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_log(), sort_keys=True, default=str)

    def to_point(self, latency_s: float | None = None) -> dict[str, Any]:
        """An InfluxDB point (``monitor.schema.DECISION``); ``latency_s`` is the realised
        wake/sleep latency, known only after the service acted."""
        fields: dict[str, float | int] = {"active_before": self.active_before,
                                          "active_after": self.active_after}
        if self.required is not None:
            fields["required"] = self.required.of(self.pool)
        if latency_s is not None:
            fields["latency_s"] = float(latency_s)
        return {"measurement": DECISION.name,
                "tags": {"action": self.action, "pool": self.pool, "node": self.node,
                         "label": self.label.tag, "shadow": "true" if self.shadow else "false"},
                "fields": fields, "time": round(self.time * 1e6) * 1000}


# ---------------------------------------------------------------------------------------------
# the step


def wake_choice(view: PoolView) -> NodeStatus | None:
    """Paused before stopped (unpausing is fast), then lowest name."""
    dormant = sorted(view.dormant, key=lambda n: (DORMANT_STATES.index(n.state), n.name))
    return dormant[0] if dormant else None


def sleep_choice(view: PoolView, pool_state: PoolState) -> NodeStatus | None:
    """The most recently woken active node other than home: by the policy's own record, then
    by ``since``, then the highest name (nodes are woken lowest name first)."""
    candidates = [n for n in view.active if n.name != view.home]
    if not candidates:
        return None
    order = {name: i for i, name in enumerate(pool_state.woken)}
    return max(candidates, key=lambda n: (order.get(n.name, -1),
                                          -math.inf if n.since is None else n.since, n.name))


def _pool_label(labels: Sequence[RcaLabel], pool: str) -> RcaLabel | None:
    mine = [lb for lb in labels if lb.pool == pool]
    ups = [lb for lb in mine if lb.direction > 0]
    downs = [lb for lb in mine if lb.direction < 0]
    # Up beats down: removing capacity while something asks for more slows the recovery.
    return ups[0] if ups else downs[0] if downs else None


def decide(state: PolicyState, inputs: PolicyInputs, now: float,
           config: PolicyConfig = DEFAULT_POLICY) -> tuple[PolicyState, list[Action]]:
    labels = tuple(RcaLabel(lb) for lb in inputs.labels)
    pools = dict(state.pools)
    actions: list[Action] = []
    holds: list[Hold] = []
    for lb in labels:
        if lb.pool is not None and lb.pool not in inputs.pools:
            holds.append(Hold(lb.pool, lb, f"pool {lb.pool} not in inputs"))
    for pool in SCALABLE_POOLS:
        ps = state.pool(pool)
        label = _pool_label(labels, pool)
        view = inputs.pools.get(pool)
        if view is None:
            continue
        if label is None or label.direction > 0:
            ps = replace(ps, down_since=None)   # a down request must persist uninterrupted
        if label is None:
            if ps.check is not None and now - ps.check.time >= config.cooldown_s:
                ps = replace(ps, check=None)    # the pool stopped asking: the wake did its job
            pools[pool] = ps
            continue
        ps, taken, hold = (_up if label.direction > 0 else _down)(
            ps, view, label, inputs, now, config)
        pools[pool] = ps
        actions.extend(taken)
        if hold is not None:
            holds.append(hold)
    reliable = all(lb is RcaLabel.NO_ACTION for lb in labels)
    return PolicyState(pools, tuple(holds), reliable), actions


def _evidence(ps: PoolState, view: PoolView, label: RcaLabel, inputs: PolicyInputs,
              target: int, config: PolicyConfig) -> dict[str, Any]:
    pool = view.name
    ev: dict[str, Any] = {
        "label": label.tag,
        "required": None if inputs.required is None else inputs.required.of(pool),
        "target": target,
        "active": [n.name for n in view.active],
        "dormant": {n.name: n.state for n in view.dormant},
        "bounds": [view.policy.min_active, view.policy.max_active],
        "throughput": inputs.throughput.get(pool),
        "lag": inputs.lag,
        "last_action_at": ps.last_action_at,
        "cooldown_s": config.cooldown_s,
    }
    if inputs.model_version is not None:
        ev["model_version"] = inputs.model_version
    if inputs.explanation:
        ev["rule_path"] = inputs.explanation
    if ps.last_effectiveness is not None:
        ev["effectiveness"] = dict(ps.last_effectiveness)
    ev.update(inputs.evidence)
    return ev


def _cooling(ps: PoolState, now: float, config: PolicyConfig) -> bool:
    return ps.last_action_at is not None and now - ps.last_action_at < config.cooldown_s


def _cooldown_reason(ps: PoolState, config: PolicyConfig) -> str:
    until = (ps.last_action_at or 0.0) + config.cooldown_s
    return f"cooldown after {ps.last_action} until {until:.0f}"


def _act(ps: PoolState, view: PoolView, label: RcaLabel, inputs: PolicyInputs, now: float,
         config: PolicyConfig, node: str, kind: str, reason: str, ev: dict[str, Any]
         ) -> tuple[PoolState, Action]:
    before = len(view.active)
    after = before + (1 if kind == WAKE else -1)
    if kind == WAKE:
        woken = (*(n for n in ps.woken if n != node), node)
        check = EffectivenessCheck(node, now, inputs.throughput.get(view.name))
        new = replace(ps, last_action_at=now, last_action=kind, woken=woken, check=check,
                      last_effectiveness=None)
    else:
        new = replace(ps, last_action_at=now, last_action=kind, down_since=None, check=None,
                      woken=tuple(n for n in ps.woken if n != node), last_effectiveness=None)
    return new, Action(now, view.name, node, kind, reason, label, inputs.required, before, after,
                       config.shadow, ev)


def _steps(config: PolicyConfig, distance: int) -> int:
    return distance if config.max_step == 0 else min(distance, config.max_step)


def _with_state(view: PoolView, node: str, state: str, now: float) -> PoolView:
    """The pool as it will be once ``node`` is in ``state`` (for the next node of one step)."""
    nodes = tuple(NodeStatus(n.name, state, now) if n.name == node else n for n in view.nodes)
    return replace(view, nodes=nodes)


def _up(ps: PoolState, view: PoolView, label: RcaLabel, inputs: PolicyInputs, now: float,
        config: PolicyConfig) -> tuple[PoolState, list[Action], Hold | None]:
    pool, cur = view.name, len(view.active)
    if ps.check is not None and now - ps.check.time >= config.cooldown_s:
        # Still asking for more after the cooldown: did the last wake raise throughput?
        before, after = ps.check.throughput_before, inputs.throughput.get(pool)
        effective = (before is not None and after is not None
                     and after >= before * (1 + config.effectiveness_gain))
        ps = replace(ps, check=None, last_effectiveness={
            "node": ps.check.node, "woken_at": ps.check.time, "throughput_before": before,
            "throughput_now": after, "effective": effective})
    required = inputs.required.of(pool) if inputs.required is not None else cur + 1
    target = min(view.policy.max_active, max(cur + 1, required))
    ev = _evidence(ps, view, label, inputs, target, config)
    if cur >= view.policy.max_active:
        return ps, [], Hold(pool, label, f"at max_active {view.policy.max_active}", ev)
    if _cooling(ps, now, config):
        return ps, [], Hold(pool, label, _cooldown_reason(ps, config), ev)
    actions: list[Action] = []
    for _ in range(_steps(config, target - cur)):
        node = wake_choice(view)
        if node is None:
            break
        reason = (f"{label.paper_name}: model requires {required}, active {cur} -> target "
                  f"{target}; wake {node.state} {node.name}")
        ps, action = _act(ps, view, label, inputs, now, config, node.name, WAKE, reason,
                          {**ev, "node_state": node.state})
        actions.append(action)
        view = _with_state(view, node.name, "active", now)
    if not actions:
        return ps, [], Hold(pool, label, "no dormant node to wake", ev)
    return ps, actions, None


def _down(ps: PoolState, view: PoolView, label: RcaLabel, inputs: PolicyInputs, now: float,
          config: PolicyConfig) -> tuple[PoolState, list[Action], Hold | None]:
    pool, cur = view.name, len(view.active)
    required = inputs.required.of(pool) if inputs.required is not None else cur - 1
    target = max(view.policy.min_active, min(cur - 1, required))
    if ps.down_since is None:
        ps = replace(ps, down_since=now)
    ev = _evidence(ps, view, label, inputs, target, config)
    ev["down_since"] = ps.down_since
    # The model sizing above active - 1 does not stop a down label (never against the label's
    # direction) but is worth seeing in the log.
    ev["model_agrees"] = inputs.required is None or required <= cur - 1
    if cur <= view.policy.min_active:
        return ps, [], Hold(pool, label, f"at min_active {view.policy.min_active}", ev)
    if inputs.lag is not None and inputs.lag > config.catch_up_lag:
        ps = replace(ps, down_since=None)   # catching up is not rest: the delay starts again
        return ps, [], Hold(pool, label, f"catching up: lag {inputs.lag:.0f} > "
                                         f"{config.catch_up_lag:.0f}", ev)
    waited = now - ps.down_since
    if waited < config.scale_down_delay_s:
        return ps, [], Hold(pool, label, f"scale-down pending {waited:.0f}/"
                                         f"{config.scale_down_delay_s:.0f} s", ev)
    if _cooling(ps, now, config):
        return ps, [], Hold(pool, label, _cooldown_reason(ps, config), ev)
    actions: list[Action] = []
    for _ in range(_steps(config, cur - target)):
        node = sleep_choice(view, ps)
        if node is None:
            break
        reason = (f"{label.paper_name}: model requires {required}, active {cur} -> target "
                  f"{target}; sleep {node.name}")
        ps, action = _act(ps, view, label, inputs, now, config, node.name, SLEEP, reason, ev)
        actions.append(action)
        view = _with_state(view, node.name, "stopped", now)
    if not actions:
        return ps, [], Hold(pool, label, "no node may sleep (home channel only)", ev)
    return ps, actions, None
