"""The orchestrator (Alg. 3): collect -> evaluate -> decide -> realise, every ``interval_s``.

* **collect**: the last ``WINDOW_S`` of the model's inputs from InfluxDB, the nodes' states
  from Docker, and the newest RCA labels of the diagnoser (its stream), or, for the reactive
  baseline, none;
* **evaluate**: the feature vector, the resource model's required counts (and its rule path);
  the ``reactive`` policy derives its labels from CPU with the HPA ratio rule instead;
* **decide**: :func:`autoscaler.policy.decide` (pure: bounds, cooldowns, scale-down delay);
* **realise**: :class:`autoscaler.realise.Realiser` wakes or drains-and-sleeps the node.

Every step logs one ``evaluation`` line (labels, required counts, holds and why); every
action one ``autoscaler_decision`` line with its evidence and outcome, also written to InfluxDB
(``autoscaler_decision``) and published on ``vpp.decisions``. The model is re-read from its
pointer file each step, so ``make retrain`` takes effect without a restart.

Policies (``--policy``): ``ours`` (improved diagnoser labels + model sizing + stabilisation,
straight to the model's target unless ``orchestrator.max_step`` limits a step),
``paper`` (Alg. 2 labels of ``diagnoser --mode paper``, one node per step, no model, no
scale-down delay), ``reactive`` (HPA-style ratio rule on CPU).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from autoscaler import reactive
from autoscaler.features import INPUTS, WINDOW_S, FeatureVector, extract
from autoscaler.labels_feed import LabelFeed, LabelSet
from autoscaler.model.train import ModelHandle, load_model
from autoscaler.policy import (
    WAKE,
    Action,
    PolicyConfig,
    PolicyInputs,
    PolicyState,
    PoolView,
    decide,
    observations,
)
from autoscaler.realise import Outcome, Realiser
from diagnoser.labels import RcaLabel
from diagnoser.service import telemetry_or_other
from diagnoser.window import build_window
from infra import logs
from infra.amqp import amqp_params
from infra.logs import event
from infra.platform import Platform
from infra.topology import SCALABLE_POOLS, Topology
from ingest.streams import publish_confirmed
from ingest.topology import DECISIONS_EXCHANGE, home_channel
from monitor import history, influx

log = logs.get("autoscaler")
POLICIES = ("ours", "paper", "reactive")
STEPS = Counter("vpp_autoscaler_steps", "Evaluations of the Alg. 3 loop")
ACTIONS = Counter("vpp_autoscaler_actions", "Actions decided",
                  ["pool", "action", "outcome", "shadow"])
HOLDS = Counter("vpp_autoscaler_holds", "Labels that did not become an action", ["pool"])
ERRORS = Counter("vpp_autoscaler_errors", "Failed steps or outputs", ["stage"])
ACTIVE = Gauge("vpp_autoscaler_active_nodes", "Active nodes per pool", ["pool"])
REQUIRED = Gauge("vpp_autoscaler_required_nodes", "Model's required nodes per pool", ["pool"])
MODEL_VERSION = Gauge("vpp_autoscaler_model_version", "Version of the model in use")
LATENCY = Histogram("vpp_autoscaler_action_seconds", "Wake/sleep latency incl. drain",
                    ["pool", "action"], buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))


@dataclass(frozen=True)
class Evaluation:
    """Everything one step saw and decided (returned for tests and the demo's status view)."""

    time: float
    labels: tuple[RcaLabel, ...]
    states: dict[str, str]
    required: dict[str, int] | None
    rule_path: str | None
    actions: tuple[tuple[Action, Outcome | None], ...]
    holds: tuple[str, ...]
    reliable: bool


def policy_config(topo: Topology, policy: str, shadow: bool) -> PolicyConfig:
    o = topo.orchestrator
    if policy == "paper":
        # Alg. 3 as published: act on every label; only the step interval separates actions.
        # One node per step, as published.
        return PolicyConfig(cooldown_s=o.interval_s, scale_down_delay_s=0.0,
                            catch_up_lag=float("1e12"), max_step=1, shadow=shadow)
    return PolicyConfig(cooldown_s=o.cooldown_s, scale_down_delay_s=o.scale_down_delay_s,
                        catch_up_lag=o.catch_up_lag, max_step=o.max_step, shadow=shadow)


def docker_states(platform: Platform, topo: Topology) -> dict[str, str]:
    """active | paused | stopped per scalable node (an absent container counts as stopped)."""
    word = {"running": "active", "restarting": "active", "paused": "paused"}
    out = {}
    for pool in SCALABLE_POOLS:
        for node in topo.pool_nodes(pool):
            c = platform.container(node)
            out[node.name] = word.get(c.status if c is not None else "", "stopped")
    return out


class Orchestrator:
    def __init__(self, topo: Topology, policy: str = "ours", shadow: bool = False,
                 model: ModelHandle | None = None, platform: Platform | None = None,
                 feed: LabelFeed | None = None, realiser: Realiser | None = None,
                 label_max_age_s: float | None = None, diagnoser: str = "diagnoser") -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.topo = topo
        self.policy = policy
        self.config = policy_config(topo, policy, shadow)
        self.model = model if model is not None else (load_model() if policy == "ours" else None)
        self.platform = platform or Platform(topo)
        self.feed = feed or LabelFeed(topo, mode="paper" if policy == "paper" else "improved",
                                      source=diagnoser)
        self._stop: Callable[[], bool] = lambda: False
        self.realiser = realiser or Realiser(topo, self.platform, stopping=lambda: self._stop())
        self.state = PolicyState()
        self.client = influx.client(topo)
        self.pool_of = {n.name: n.pool for n in topo.nodes}
        # Labels older than this are not acted on (diagnoser down or lagging).
        self.label_max_age_s = label_max_age_s or 3 * topo.orchestrator.interval_s + 30
        self.decisions = amqp_params(topo, home_channel(topo), "autoscaler", heartbeat=30)
        self.woken_at: dict[str, float] = {}

    # -- collect / evaluate ------------------------------------------------------------------
    def features(self, now: float, states: dict[str, str]) -> FeatureVector:
        start_ns, end_ns = int((now - WINDOW_S) * 1e9), int(now * 1e9)
        points = [p for p in history.fetch(self.topo, INPUTS, start_ns, end_ns, cli=self.client)
                  if telemetry_or_other(p)]
        active = {pool: sum(1 for n in self.topo.pool_nodes(pool) if states[n.name] == "active")
                  for pool in SCALABLE_POOLS}
        window = build_window(points, active=active, start=start_ns, end=end_ns,
                              pool_of=self.pool_of, time_unit="ns", on_error="skip")
        return extract(window, now=now, active=active)

    def labels(self, now: float, features: FeatureVector, states: dict[str, str]
               ) -> tuple[tuple[RcaLabel, ...], LabelSet | None, str]:
        if self.policy == "reactive":
            active = {p: int(features[f"active_{p}"]) for p in SCALABLE_POOLS}
            return reactive.labels(features, active), None, "reactive ratio rule"
        got = self.feed.poll()
        if got is None:
            return (), None, "no label from the diagnoser yet"
        age = now - got.time
        if age > self.label_max_age_s:
            return (), got, f"newest label is {age:.0f} s old: diagnoser down?"
        return got.labels, got, "fresh"

    # -- the step -----------------------------------------------------------------------------
    def step(self, now: float | None = None) -> Evaluation:
        now = time.time() if now is None else now
        STEPS.inc()
        if self.model is not None and self.model.refresh():
            event(log, "model_reloaded", version=self.model.version)
        states = docker_states(self.platform, self.topo)
        features = self.features(now, states)
        labels, labelset, label_note = self.labels(now, features, states)
        required = rule_path = None
        if self.model is not None:
            required = self.model.predict(features)
            rule_path = self.model.explain(features).text
            MODEL_VERSION.set(self.model.version)
        throughput, lag = observations(features)
        pools = {p: PoolView.from_topology(self.topo, p, states, self.woken_at)
                 for p in SCALABLE_POOLS}
        evidence: dict[str, Any] = {"policy": self.policy, "labels_note": label_note}
        if labelset is not None:
            evidence["diagnosis"] = labelset.evidence()[:4]
        inputs = PolicyInputs(labels, pools, required, throughput, lag,
                              None if self.model is None else self.model.version, rule_path,
                              evidence)
        self.state, actions = decide(self.state, inputs, now, self.config)
        done: list[tuple[Action, Outcome | None]] = []
        for action in actions:
            outcome = None if action.shadow else self._realise(action)
            self._record(action, outcome, rule_path)
            done.append((action, outcome))
        for pool in SCALABLE_POOLS:
            ACTIVE.labels(pool).set(len(pools[pool].active))
            if required is not None:
                REQUIRED.labels(pool).set(required.of(pool))
        for h in self.state.holds:
            HOLDS.labels(h.pool).inc()
        ev = Evaluation(now, labels, states, None if required is None else required.as_dict(),
                        rule_path, tuple(done),
                        tuple(f"{h.pool}: {h.label.tag} held ({h.reason})"
                              for h in self.state.holds), self.state.reliable)
        event(log, "evaluation", policy=self.policy, labels=[lb.tag for lb in labels],
              label_note=label_note, states=states, required=ev.required,
              rule_path=rule_path, features_missing=len(features.missing),
              lag=round(lag, 1), throughput={k: round(v, 1) for k, v in throughput.items()},
              actions=[f"{a.action} {a.node}" for a, _ in done], holds=list(ev.holds),
              reliable=self.state.reliable)
        return ev

    def _realise(self, action: Action) -> Outcome:
        t0 = time.time()
        outcome = (self.realiser.wake(action.node) if action.action == WAKE
                   else self.realiser.sleep(action.node))
        LATENCY.labels(action.pool, action.action).observe(outcome.latency_s)
        if outcome.outcome == "done" and action.action == WAKE:
            self.woken_at[action.node] = t0
        if outcome.outcome != "done":
            # Not realised: the policy must not believe the pool changed. Forget the action so
            # the next step sees the real states (the cooldown still applies).
            ps = self.state.pool(action.pool)
            woken = tuple(n for n in ps.woken if n != action.node)
            pools = dict(self.state.pools)
            pools[action.pool] = replace(ps, woken=woken, check=None)
            self.state = replace(self.state, pools=pools)
        return outcome

    def _record(self, action: Action, outcome: Outcome | None, rule_path: str | None) -> None:
        status = "shadow" if outcome is None else outcome.outcome
        ACTIONS.labels(action.pool, action.action, status, str(action.shadow).lower()).inc()
        record = {**action.to_log(), "outcome": None if outcome is None else outcome.as_dict()}
        event(log, "autoscaler_decision", **{k: v for k, v in record.items() if k != "event"})
        p = action.to_point(None if outcome is None else outcome.latency_s)
        p["tags"].update(policy=self.policy, outcome=status)
        p["fields"].update(reason=action.reason[:500], rule_path=(rule_path or "")[:1000])
        try:
            influx.write_lines(self.topo, [influx.line(p["measurement"], p["tags"], p["fields"],
                                                       int(p["time"]))], cli=self.client)
        except Exception as exc:
            ERRORS.labels("influx").inc()
            event(log, "influx_write_failed", error=repr(exc)[:200])
        try:
            publish_confirmed(self.decisions, DECISIONS_EXCHANGE,
                              [(f"{action.pool}.{action.action}",
                                json.dumps(record, default=str).encode())])
        except Exception as exc:
            ERRORS.labels("publish").inc()
            event(log, "publish_failed", error=repr(exc)[:200])

    def run(self, stop: Callable[[], bool], interval_s: float | None = None) -> None:
        interval = interval_s or self.topo.orchestrator.interval_s
        self._stop = stop
        next_at = time.monotonic()
        while not stop():
            try:
                self.step()
            except Exception as exc:  # a service restarting: skip this round, keep going
                ERRORS.labels("step").inc()
                event(log, "step_failed", error=repr(exc)[:300])
            next_at = max(next_at + interval, time.monotonic())
            while not stop() and time.monotonic() < next_at:
                time.sleep(min(0.5, max(0.0, next_at - time.monotonic())))
