"""Improved mode (the default): Alg. 2's labels from data-driven rules with memory.

AutoDiagn decides from one instantaneous sample, so a CPU hovering at the threshold flips the
label every sample and the orchestrator wakes and sleeps nodes in a loop. This engine is a pure
step function, ``Engine.evaluate(state, window, now) -> (state, diagnoses)``, that adds what
Prometheus alerting rules and the autoscalers in DESIGN.md have learned:

* **hysteresis** — a rule's condition *latches*: it is entered with the signals' ``enter``
  thresholds and, once latched, holds with their ``exit`` thresholds;
* **for_s** — the latched condition must hold continuously this long before the rule fires
  (pending -> firing); any evaluation where it does not hold resets the clock;
* **keep_firing_for_s** — a firing rule whose condition stops holding keeps firing this long,
  measured from the first evaluation where it failed; if it holds again meanwhile it simply
  goes on firing;
* **continuity** — if evaluations are more than ``engine.max_gap_s`` apart (service restarted,
  InfluxDB unreachable), nobody saw the condition hold in between: every clock restarts;
* **cooldown** — when a pool's active count changes, its rules are reset and held quiet for
  ``engine.cooldown_s``: the window still holds samples taken under the old capacity (and from
  a node just put to sleep), and judging them again would scale twice for one cause. Keep it at
  least as long as the query window;
* **min_active** — a scale-down rule's condition only holds while the pool has more than
  ``min_active`` active nodes, so its clock only runs when a scale-down is possible; at
  ``min_active`` it never fires.

Combination of firing rules, in this order:

1. ``unless``: a rule whose ``unless`` names a rule that fires, or whose pool is in cooldown, is
   reset to idle: its evidence is explained (a growing queue backlog while Spark is behind, or
   while the worker woken for it starts, does not also ask for a channel);
2. a scale-up beats a scale-down: while any up rule fires, every down rule is reset to idle,
   because the system is not at rest and removing capacity would slow the recovery (a
   processing scale-up raises the delivery load on the channels); a scale-down then needs a
   full for_s of rest after the up episode ends;
3. one diagnosis per label: the first firing rule in file order gives the evidence, the others
   are listed in ``Diagnosis.also``;
4. labels ordered R_up^CL, R_up^CC, R_down^CL, R_down^CC. Processing comes first, as in Alg. 2,
   and because a Spark bottleneck also shows as queue backlog while the reverse is not true: an
   orchestrator that acts on one label per cycle should take the first;
5. nothing firing: one no-action diagnosis (label 0, the paper's reliable stage).

A diagnosis is repeated at every evaluation while its rule fires; ``firing_since`` identifies
one episode, so a consumer can act once per episode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from infra.topology import SCALABLE_POOLS, PoolPolicy, Topology, load_topology

from . import aggregates
from .labels import Diagnosis, Evidence, RcaLabel, no_action
from .rules import AllOf, AnyOf, Condition, Rule, RuleSet, Signal, load_rules
from .window import MetricsWindow

LABEL_ORDER = (RcaLabel.UP_PROCESSING, RcaLabel.UP_QUEUE, RcaLabel.DOWN_PROCESSING,
               RcaLabel.DOWN_QUEUE)


@dataclass(frozen=True)
class RuleState:
    latched: bool = False                 # condition holds (enter crossed, exit not yet)
    pending_since: float | None = None    # start of the current continuous hold
    firing_since: float | None = None     # start of the current firing episode
    cleared_at: float | None = None       # first failed evaluation while firing

    @property
    def firing(self) -> bool:
        return self.firing_since is not None


IDLE = RuleState()


@dataclass(frozen=True)
class EngineState:
    rules: Mapping[str, RuleState] = field(default_factory=dict)
    last_eval: float | None = None
    active: Mapping[str, int] = field(default_factory=dict)         # last seen, per pool
    settle_until: Mapping[str, float] = field(default_factory=dict)  # cooldown end, per pool

    def rule(self, rule_id: str) -> RuleState:
        return self.rules.get(rule_id, IDLE)

    def firing(self) -> tuple[str, ...]:
        return tuple(rid for rid, st in self.rules.items() if st.firing)

    def pending(self) -> tuple[str, ...]:
        return tuple(rid for rid, st in self.rules.items()
                     if st.pending_since is not None and not st.firing)


@dataclass(frozen=True)
class Engine:
    rules: RuleSet
    pools: Mapping[str, PoolPolicy]

    def __post_init__(self) -> None:
        for pool in SCALABLE_POOLS:
            if pool not in self.pools:
                raise ValueError(f"pools.{pool}: policy missing (min_active is needed to "
                                 f"refuse a scale-down below it)")

    @classmethod
    def load(cls, rules_path: str | os.PathLike[str] | None = None,
             topology: Topology | None = None) -> Engine:
        """Rules from ``rules.yaml`` (or ``$VPP_DIAGNOSER_RULES``), pool policies from the
        topology (or ``$VPP_TOPOLOGY``)."""
        topo = topology or load_topology()
        return cls(load_rules(rules_path), dict(topo.pools))

    def initial_state(self) -> EngineState:
        return EngineState()

    # -- the step function ---------------------------------------------------------------------
    def evaluate(self, state: EngineState, window: MetricsWindow, now: float
                 ) -> tuple[EngineState, list[Diagnosis]]:
        if not math.isfinite(now):
            raise ValueError(f"now: must be finite, got {now}")
        if state.last_eval is not None and now < state.last_eval:
            raise ValueError(f"now: {now} is before the previous evaluation {state.last_eval}; "
                             f"the engine's clocks only run forward")
        settings = self.rules.settings
        states = dict(state.rules)
        if state.last_eval is not None and now - state.last_eval > settings.max_gap_s:
            states = {}

        active = dict(state.active)
        settle = dict(state.settle_until)
        for pool in SCALABLE_POOLS:
            count = window.active.get(pool)
            if count is None:
                continue
            if pool in active and active[pool] != count:
                settle[pool] = now + settings.cooldown_s
                for rule in self.rules.rules:
                    if rule.pool == pool:
                        states.pop(rule.id, None)
            active[pool] = count

        def settling(pool: str) -> bool:
            return now < settle.get(pool, -math.inf)

        results: dict[str, tuple[RuleState, tuple[Evidence, ...], tuple[str, ...]]] = {}
        for rule in self.rules.rules:
            prev = states.get(rule.id, IDLE)
            holds, evidence, named = self._condition(rule, prev.latched, window)
            results[rule.id] = (_step(rule, prev, holds and not settling(rule.pool), now),
                                evidence, named)
        # `unless`: evidence explained by another rule does not count, neither while that rule
        # fires nor while its pool settles after the scale it asked for (a backlog drains only
        # after the new worker is up). Decided on the first pass's states, so rule order does not
        # matter; the explained rule restarts from idle and needs a fresh for_s of its own.
        by_id = {r.id: r for r in self.rules.rules}
        explained = [r.id for r in self.rules.rules
                     if any(results[u][0].firing or settling(by_id[u].pool) for u in r.unless)]
        for rid in explained:
            results[rid] = (IDLE, *results[rid][1:])
        # A scale-up beats a scale-down, and a scale-down needs for_s of rest of the whole
        # system: while any up fires, the down clocks are held at zero, not merely muted.
        if any(results[r.id][0].firing for r in self.rules.rules if r.label.direction > 0):
            for r in self.rules.rules:
                if r.label.direction < 0:
                    results[r.id] = (IDLE, *results[r.id][1:])

        new_state = EngineState({rid: st for rid, (st, _, _) in results.items()},
                                now, active, settle)
        return new_state, self._combine(results, window, now)

    # -- one rule --------------------------------------------------------------------------------
    def _condition(self, rule: Rule, latched: bool, window: MetricsWindow
                   ) -> tuple[bool, tuple[Evidence, ...], tuple[str, ...]]:
        leaves: list[tuple[Evidence, aggregates.Reading]] = []
        holds = _holds(rule.when, rule, latched, window, leaves)
        evidence = [ev for ev, _ in leaves]
        if rule.label.direction < 0:
            # Part of the condition, not a filter on the output: at min_active the clock must
            # not run, or the first sample after a scale-up would find it long expired.
            count = window.active.get(rule.pool)
            floor = self.pools[rule.pool].min_active
            ok = count is not None and count > floor
            evidence.append(Evidence("pool.active", ">", float(floor),
                                     None if count is None else float(count), ok,
                                     "last", "sum", rule.pool))
            holds = holds and ok
        named = tuple(dict.fromkeys(
            r.node for ev, r in leaves
            if ev.satisfied and r.node is not None and r.node_pool == rule.pool))
        return holds, tuple(evidence), named

    # -- combination -----------------------------------------------------------------------------
    def _combine(self, results: Mapping[str, tuple[RuleState, tuple[Evidence, ...],
                                                      tuple[str, ...]]],
                 window: MetricsWindow, now: float) -> list[Diagnosis]:
        emitted = [r for r in self.rules.rules if results[r.id][0].firing]
        out: list[Diagnosis] = []
        for label in LABEL_ORDER:
            same = [r for r in emitted if r.label is label]
            if not same:
                continue
            rule = same[0]
            st, evidence, named = results[rule.id]
            up = label.direction > 0
            ranked = aggregates.rank_nodes(window, rule.pool, hottest_first=up)
            # Up: the nodes the evidence points at (hottest worker, backlogged channel). Down:
            # any node of the pool can go to sleep, so suggest the coolest first.
            nodes = (named or ranked) if up else ranked
            out.append(Diagnosis(
                label, rule.id, "improved", now, window.span, pool=rule.pool,
                nodes=tuple(nodes), evidence=evidence, pending_since=st.pending_since,
                firing_since=st.firing_since, active=window.active.get(rule.pool),
                also=tuple(r.id for r in same[1:]),
            ))
        return out or [no_action("improved", now, window.span)]


def _holds(cond: Condition, rule: Rule, latched: bool, window: MetricsWindow,
           leaves: list[tuple[Evidence, aggregates.Reading]]) -> bool:
    # Every leaf is read (no short-circuit) so the evidence is complete.
    if isinstance(cond, AllOf):
        return all([_holds(c, rule, latched, window, leaves) for c in cond.items])
    if isinstance(cond, AnyOf):
        return any([_holds(c, rule, latched, window, leaves) for c in cond.items])
    return _signal(cond, rule, latched, window, leaves)


def _signal(sig: Signal, rule: Rule, latched: bool, window: MetricsWindow,
            leaves: list[tuple[Evidence, aggregates.Reading]]) -> bool:
    reading = aggregates.read(window, sig, rule.pool)
    threshold = sig.exit if latched else sig.enter
    if reading.value is None:
        ok = sig.missing
    elif sig.op == ">=":
        ok = reading.value >= threshold
    else:
        ok = reading.value <= threshold
    leaves.append((Evidence(sig.metric, sig.op, threshold, reading.value, ok, sig.over_time,
                            sig.across, reading.entity, reading.node), reading))
    return ok


def _step(rule: Rule, prev: RuleState, holds: bool, now: float) -> RuleState:
    """Prometheus' inactive -> pending -> firing, on a hysteresis-latched condition."""
    if holds:
        since = prev.pending_since if prev.pending_since is not None else now
        firing_since = prev.firing_since
        if firing_since is None and now - since >= rule.for_s:
            firing_since = now
        return RuleState(True, since, firing_since, None)
    if prev.firing:
        cleared = prev.cleared_at if prev.cleared_at is not None else now
        if now - cleared < rule.keep_firing_for_s:
            return replace(prev, latched=False, pending_since=None, cleared_at=cleared)
    return IDLE
