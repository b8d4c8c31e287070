"""Alg. 3 policy (pure): targets and bounds, cooldown, scale-down delay, one node per step,
home channel, wake/sleep choice, catching up, effectiveness, shadow mode, no flapping."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest

from autoscaler.features import extract
from autoscaler.model.capacity import RequiredCounts
from autoscaler.policy import (
    NodeStatus,
    PolicyConfig,
    PolicyInputs,
    PolicyState,
    PoolView,
    decide,
    observations,
    sleep_choice,
    wake_choice,
)
from diagnoser.labels import RcaLabel
from diagnoser.window import MetricsWindow
from infra.topology import PoolPolicy
from monitor.schema import DECISION

UP_CL, UP_CC = RcaLabel.UP_PROCESSING, RcaLabel.UP_QUEUE
DOWN_CL, DOWN_CC = RcaLabel.DOWN_PROCESSING, RcaLabel.DOWN_QUEUE
NONE = RcaLabel.NO_ACTION
T = 1_000.0


def workers(*states: str) -> PoolView:
    return PoolView(PoolPolicy("processing", "stop", 1, 3),
                    tuple(NodeStatus(f"worker-{i}", s) for i, s in enumerate(states)))


def channels(*states: str) -> PoolView:
    return PoolView(PoolPolicy("queue", "stop", 1, 2),
                    tuple(NodeStatus(f"channel-{i}", s) for i, s in enumerate(states)))


def inputs(*labels: RcaLabel, w: PoolView | None = None, c: PoolView | None = None,
           required: RequiredCounts | None = None, **kw) -> PolicyInputs:
    return PolicyInputs(labels=labels,
                        pools={"processing": w or workers("active", "stopped", "stopped"),
                               "queue": c or channels("active", "stopped")},
                        required=required, **kw)


def apply(view: PoolView, actions) -> PoolView:
    """Realise the actions on a view, as the service would (wake -> active, sleep -> stopped)."""
    states = {n.name: n.state for n in view.nodes}
    for a in actions:
        if a.pool == view.name:
            states[a.node] = "active" if a.action == "wake" else "stopped"
    return PoolView(view.policy, tuple(NodeStatus(n.name, states[n.name]) for n in view.nodes))


# ---------------------------------------------------------------------------------------------
# Alg. 3 targets and bounds


def test_up_wakes_one_node_toward_the_model_target():
    _, acts = decide(PolicyState(), inputs(UP_CL, required=RequiredCounts(1, 3)), T)
    (a,) = acts
    assert (a.pool, a.node, a.action) == ("processing", "worker-1", "wake")
    assert (a.active_before, a.active_after) == (1, 2)     # one node per step, target is 3
    assert a.evidence["target"] == 3 and a.evidence["required"] == 3
    assert a.label is UP_CL and a.required == RequiredCounts(1, 3)
    assert "R_up^CL" in a.reason and not a.shadow


def test_up_never_goes_against_the_label_when_the_model_says_fewer():
    _, (a,) = decide(PolicyState(), inputs(UP_CL, required=RequiredCounts(1, 1)), T)
    assert a.action == "wake" and a.evidence["target"] == 2


def test_up_without_a_model_is_one_more():
    _, (a,) = decide(PolicyState(), inputs(UP_CC), T)
    assert (a.pool, a.node, a.evidence["target"]) == ("queue", "channel-1", 2)


def test_up_at_max_holds():
    st, acts = decide(PolicyState(), inputs(UP_CL, w=workers("active", "active", "active"),
                                            required=RequiredCounts(1, 3)), T)
    assert acts == [] and "at max_active 3" in st.holds[0].reason


def test_down_needs_the_delay_then_sleeps_toward_the_model_target():
    w = workers("active", "active", "active")
    st, acts = decide(PolicyState(), inputs(DOWN_CL, w=w, required=RequiredCounts(1, 1)), T)
    assert acts == [] and "scale-down pending" in st.holds[0].reason
    st, acts = decide(st, inputs(DOWN_CL, w=w, required=RequiredCounts(1, 1)), T + 60)
    assert acts == []
    st, (a,) = decide(st, inputs(DOWN_CL, w=w, required=RequiredCounts(1, 1)), T + 120)
    assert (a.action, a.active_before, a.active_after) == ("sleep", 3, 2)
    assert a.evidence["target"] == 1 and a.evidence["down_since"] == T


def test_down_never_goes_against_the_label_when_the_model_says_more():
    w = workers("active", "active", "stopped")
    st, _ = decide(PolicyState(), inputs(DOWN_CL, w=w, required=RequiredCounts(1, 3)), T)
    st, (a,) = decide(st, inputs(DOWN_CL, w=w, required=RequiredCounts(1, 3)), T + 120)
    assert a.action == "sleep" and a.evidence["target"] == 1
    assert a.evidence["model_agrees"] is False


def test_down_at_min_holds():
    st, _ = decide(PolicyState(), inputs(DOWN_CL), T)
    st, acts = decide(st, inputs(DOWN_CL), T + 500)
    assert acts == [] and "at min_active 1" in st.holds[0].reason


def test_label_zero_is_the_reliable_stage():
    st, acts = decide(PolicyState(), inputs(NONE, required=RequiredCounts(2, 3)), T)
    assert acts == [] and st.reliable and st.holds == ()


# ---------------------------------------------------------------------------------------------
# anti-flap


def test_cooldown_after_any_action():
    cfg = PolicyConfig(cooldown_s=60)
    w = workers("active", "stopped", "stopped")
    st, (a,) = decide(PolicyState(), inputs(UP_CL, w=w), T, cfg)
    w = apply(w, [a])
    st, acts = decide(st, inputs(UP_CL, w=w), T + 30, cfg)
    assert acts == [] and "cooldown" in st.holds[0].reason
    st, (b,) = decide(st, inputs(UP_CL, w=w), T + 60, cfg)
    assert b.node == "worker-2"
    # a scale-down right after a scale-up waits for the cooldown too
    cfg0 = PolicyConfig(cooldown_s=300, scale_down_delay_s=0)
    st, acts = decide(st, inputs(DOWN_CL, w=apply(w, [b])), T + 100, cfg0)
    assert acts == [] and "cooldown" in st.holds[0].reason


def test_cooldown_is_per_pool():
    st, (a,) = decide(PolicyState(), inputs(UP_CL), T)
    st, (b,) = decide(st, inputs(UP_CC, w=apply(inputs().pools["processing"], [a])), T + 1)
    assert b.pool == "queue"


def test_one_node_per_pool_per_step_but_both_pools_may_act():
    _, acts = decide(PolicyState(), inputs(UP_CL, UP_CC, required=RequiredCounts(2, 3)), T)
    assert sorted((a.pool, a.active_after) for a in acts) == [("processing", 2), ("queue", 2)]


def test_an_interrupted_down_request_restarts_the_delay():
    w = workers("active", "active", "stopped")
    st, _ = decide(PolicyState(), inputs(DOWN_CL, w=w), T)
    st, _ = decide(st, inputs(NONE, w=w), T + 100)
    st, acts = decide(st, inputs(DOWN_CL, w=w), T + 130)
    assert acts == []
    assert st.pools["processing"].down_since == T + 130


def test_up_beats_down_in_the_same_pool():
    w = workers("active", "active", "stopped")
    st, _ = decide(PolicyState(), inputs(DOWN_CL, w=w), T)
    st, (a,) = decide(st, inputs(DOWN_CL, UP_CL, w=w), T + 200)
    assert a.action == "wake" and st.pools["processing"].down_since is None


def test_no_scale_down_while_catching_up():
    w = workers("active", "active", "stopped")
    st, _ = decide(PolicyState(), inputs(DOWN_CL, w=w, lag=50_000), T)
    st, acts = decide(st, inputs(DOWN_CL, w=w, lag=50_000), T + 300)
    assert acts == [] and "catching up" in st.holds[0].reason
    # once caught up, the delay runs from then
    st, acts = decide(st, inputs(DOWN_CL, w=w, lag=100), T + 310)
    assert acts == []
    st, (a,) = decide(st, inputs(DOWN_CL, w=w, lag=100), T + 430)
    assert a.action == "sleep"


def test_no_flapping_on_an_oscillating_label_sequence():
    cfg = PolicyConfig(cooldown_s=60, scale_down_delay_s=120)
    w = workers("active", "stopped", "stopped")
    st, log = PolicyState(), []
    for i in range(60):                                  # 10 min, every 10 s: up, down, up ...
        label = UP_CL if i % 2 == 0 else DOWN_CL
        st, acts = decide(st, inputs(label, w=w, required=RequiredCounts(1, 3)), T + 10 * i, cfg)
        w = apply(w, acts)
        log += acts
    assert all(a.action == "wake" for a in log)          # a down never persisted 120 s
    assert len(log) == 2                                 # bounded by max_active, no reversals
    assert all(b.time - a.time >= 60 for a, b in pairwise(log))


# ---------------------------------------------------------------------------------------------
# which node


def test_wake_prefers_paused_then_stopped_then_lowest_name():
    w = workers("active", "stopped", "paused")
    _, (a,) = decide(PolicyState(), inputs(UP_CL, w=w), T)
    assert a.node == "worker-2" and a.evidence["node_state"] == "paused"
    assert wake_choice(workers("active", "stopped", "stopped")).name == "worker-1"
    assert wake_choice(workers("active", "active", "active")) is None


def test_sleep_takes_the_most_recently_woken():
    cfg = PolicyConfig(cooldown_s=0, scale_down_delay_s=0)
    w = workers("active", "stopped", "paused")
    st, (a,) = decide(PolicyState(), inputs(UP_CL, w=w), T, cfg)      # wakes worker-2 (paused)
    w = apply(w, [a])
    st, (b,) = decide(st, inputs(UP_CL, w=w), T + 1, cfg)              # then worker-1
    w = apply(w, [b])
    st, (c,) = decide(st, inputs(DOWN_CL, w=w), T + 2, cfg)
    assert (a.node, b.node, c.node) == ("worker-2", "worker-1", "worker-1")
    # without a record: the latest `since`, else the highest name
    view = PoolView(workers().policy, (NodeStatus("worker-0", "active", 5.0),
                                       NodeStatus("worker-1", "active", 50.0),
                                       NodeStatus("worker-2", "active", 10.0)))
    assert sleep_choice(view, PolicyState().pool("processing")).name == "worker-1"
    assert sleep_choice(workers("active", "active", "active"),
                        PolicyState().pool("processing")).name == "worker-2"


def test_the_home_channel_never_sleeps():
    cfg = PolicyConfig(cooldown_s=0, scale_down_delay_s=0)
    # channel-0 is home; pool bounds would even allow going to zero here
    c = PoolView(PoolPolicy("queue", "stop", 0, 2),
                 (NodeStatus("channel-0", "active"), NodeStatus("channel-1", "active")))
    assert c.home == "channel-0"
    st, (a,) = decide(PolicyState(), inputs(DOWN_CC, c=c), T, cfg)
    assert a.node == "channel-1"
    c = apply(c, [a])
    st, acts = decide(st, inputs(DOWN_CC, c=c), T + 10, cfg)
    assert acts == [] and "home channel" in st.holds[0].reason


# ---------------------------------------------------------------------------------------------
# effectiveness, shadow mode, outputs


def test_effectiveness_check_after_a_scale_up():
    cfg = PolicyConfig(cooldown_s=60)
    w = workers("active", "stopped", "stopped")
    st, (a,) = decide(PolicyState(), inputs(UP_CL, w=w, throughput={"processing": 700}), T, cfg)
    w = apply(w, [a])
    # still R_up after the cooldown, throughput flat: recorded as ineffective
    st, (b,) = decide(st, inputs(UP_CL, w=w, throughput={"processing": 710}), T + 60, cfg)
    eff = b.evidence["effectiveness"]
    assert eff == {"node": "worker-1", "woken_at": T, "throughput_before": 700,
                   "throughput_now": 710, "effective": False}
    # grew by more than 10 %: effective
    st2, _ = decide(PolicyState(), inputs(UP_CL, throughput={"processing": 700}), T, cfg)
    st2, acts = decide(st2, inputs(UP_CL, w=workers("active", "active", "active"),
                                   throughput={"processing": 1200}), T + 60, cfg)
    assert acts == [] and st2.holds[0].evidence["effectiveness"]["effective"] is True


def test_shadow_mode_marks_actions_and_keeps_the_cadence():
    cfg = PolicyConfig(shadow=True, cooldown_s=60)
    st, (a,) = decide(PolicyState(), inputs(UP_CL), T, cfg)
    assert a.shadow and a.to_log()["shadow"] is True
    assert a.to_point()["tags"]["shadow"] == "true"
    st, acts = decide(st, inputs(UP_CL), T + 10, cfg)    # nothing was realised, still cooling
    assert acts == []


def test_action_log_line_and_point():
    ins = inputs(UP_CL, required=RequiredCounts(1, 2), model_version=3, lag=1234.0,
                 explanation="processing: input_rate_last > 580.0 -> 2 workers",
                 evidence={"diagnosis_rule": "processing_behind"})
    _, (a,) = decide(PolicyState(), ins, T)
    line = json.loads(a.to_json())
    for key in ("pool", "node", "action", "reason", "label", "required", "active_before",
                "active_after", "evidence", "shadow"):
        assert key in line
    assert line["required"] == {"queue": 1, "processing": 2}
    assert line["evidence"]["rule_path"].startswith("processing:")
    assert line["evidence"]["model_version"] == 3
    assert line["evidence"]["diagnosis_rule"] == "processing_behind"
    assert line["evidence"]["lag"] == 1234.0
    point = a.to_point(latency_s=2.5)
    assert point["measurement"] == DECISION.name
    assert set(point["tags"]) <= set(DECISION.tags) and set(point["fields"]) <= set(DECISION.fields)
    assert point["fields"] == {"active_before": 1, "active_after": 2, "required": 2,
                               "latency_s": 2.5}


def test_decide_is_pure():
    st0 = PolicyState()
    ins = inputs(UP_CL)
    a = decide(st0, ins, T)
    b = decide(st0, ins, T)
    assert a == b and st0 == PolicyState()


def test_inputs_validation():
    with pytest.raises(ValueError, match=r"nodes\.worker-9\.state"):
        NodeStatus("worker-9", "asleep")
    with pytest.raises(ValueError, match=r"policy\.cooldown_s"):
        PolicyConfig(cooldown_s=-1)
    with pytest.raises(ValueError, match=r"pools\.queue\.home"):
        PoolView(PoolPolicy("queue", "stop", 1, 2), (NodeStatus("channel-0", "active"),),
                 home="channel-7")


def test_views_from_topology(topo):
    states = {"channel-0": "active", "channel-1": "stopped"}
    view = PoolView.from_topology(topo, "queue", states)
    assert view.home == "channel-0" and [n.name for n in view.dormant] == ["channel-1"]
    with pytest.raises(ValueError, match=r"states\.worker-0"):
        PoolView.from_topology(topo, "processing", states)


def test_observations_from_features():
    f = extract(MetricsWindow(start=T, end=T + 60))
    throughput, lag = observations(f)
    assert throughput == {"queue": 0.0, "processing": 0.0} and lag == 0.0


# ---------------------------------------------------------------------------------------------
# step size: Alg. 3's one node per step, or straight to the target (HPA / Flink)


def test_max_step_0_wakes_straight_to_the_model_target():
    cfg = PolicyConfig(max_step=0)
    w = workers("active", "stopped", "paused")
    st, acts = decide(PolicyState(), inputs(UP_CL, w=w, required=RequiredCounts(1, 3)), T, cfg)
    assert [(a.node, a.active_before, a.active_after) for a in acts] == [
        ("worker-2", 1, 2), ("worker-1", 2, 3)]          # paused first, then stopped
    assert st.pools["processing"].woken == ("worker-2", "worker-1")
    # ... and never past max_active or the dormant nodes there are
    _, acts = decide(PolicyState(), inputs(UP_CL, w=w, required=RequiredCounts(1, 9)), T, cfg)
    assert len(acts) == 2


def test_max_step_0_sleeps_straight_to_the_target_after_the_delay_newest_first():
    cfg = PolicyConfig(max_step=0, scale_down_delay_s=30)
    w = workers("active", "stopped", "stopped")
    st, ups = decide(PolicyState(), inputs(UP_CL, w=w, required=RequiredCounts(1, 3)), T, cfg)
    w = apply(w, ups)
    st, acts = decide(st, inputs(DOWN_CL, w=w, required=RequiredCounts(1, 1)), T + 100, cfg)
    assert acts == []                                     # the delay starts
    st, acts = decide(st, inputs(DOWN_CL, w=w, required=RequiredCounts(1, 1)), T + 131, cfg)
    assert [(a.node, a.action, a.active_after) for a in acts] == [
        ("worker-2", "sleep", 2), ("worker-1", "sleep", 1)]
    assert st.pools["processing"].woken == ()


def test_max_step_bounds_a_step_and_1_is_the_paper():
    w = workers("active", "stopped", "stopped")
    req = RequiredCounts(1, 3)
    _, acts = decide(PolicyState(), inputs(UP_CL, w=w, required=req), T, PolicyConfig(max_step=1))
    assert len(acts) == 1
    _, acts = decide(PolicyState(), inputs(UP_CL, w=w, required=req), T, PolicyConfig(max_step=2))
    assert len(acts) == 2
    with pytest.raises(ValueError, match=r"policy\.max_step"):
        PolicyConfig(max_step=-1)
