"""Engine semantics on a one-rule engine (hottest worker's latest CPU), one sample per step:
for_s, hysteresis, keep_firing_for_s, continuity, cooldown, min_active, purity."""

from __future__ import annotations

import pytest
from diag_traces import T0, cpu_rule_engine, cpu_window, flips, step_cpu

from diagnoser.labels import RcaLabel
from diagnoser.window import MetricsWindow

UP, NONE = RcaLabel.UP_PROCESSING, RcaLabel.NO_ACTION


def test_for_s_must_hold_continuously_before_firing():
    engine = cpu_rule_engine(for_s=30)
    _, out = step_cpu(engine, [90, 90, 90, 90, 90])
    # true at 0, 10, 20 (pending) and fires at 30 s: held for exactly for_s
    assert out == [NONE, NONE, NONE, UP, UP]


def test_for_s_clock_restarts_when_the_condition_breaks():
    engine = cpu_rule_engine(for_s=30, exit=85)   # no hysteresis: 70 breaks the hold
    _, out = step_cpu(engine, [90, 90, 90, 70, 90, 90, 90, 90])
    assert out == [NONE, NONE, NONE, NONE, NONE, NONE, NONE, UP]


def test_pending_is_visible_in_the_state():
    engine = cpu_rule_engine(for_s=30)
    st, _ = step_cpu(engine, [90, 90])
    assert st.pending() == ("cpu",) and st.firing() == ()
    assert st.rule("cpu").pending_since == T0


def test_hysteresis_value_oscillating_around_enter_does_not_flip_the_label():
    engine = cpu_rule_engine(for_s=30, enter=85, exit=75)
    values = [86, 84] * 20          # around the enter threshold, always above exit
    _, out = step_cpu(engine, values)
    assert out[3] is UP              # the first 86 latched; 84 >= exit keeps the hold
    assert flips(out[3:]) == 0


def test_without_hysteresis_the_same_oscillation_never_settles():
    # The contrast: exit == enter, so every 84 breaks the hold and for_s never completes.
    engine = cpu_rule_engine(for_s=30, enter=85, exit=85)
    _, out = step_cpu(engine, [86, 84] * 20)
    assert set(out) == {NONE}


def test_latched_rule_holds_between_exit_and_enter_but_idle_rule_does_not_enter():
    engine = cpu_rule_engine(for_s=10, enter=85, exit=75)
    _, out = step_cpu(engine, [80, 80, 80])
    assert out == [NONE, NONE, NONE]          # 80 < enter: never enters
    _, out = step_cpu(engine, [90, 90, 80, 80, 76, 74])
    assert out == [NONE, UP, UP, UP, UP, NONE]   # holds until below exit (keep = 0)


def test_keep_firing_for_s_bridges_short_dips_and_then_resolves():
    engine = cpu_rule_engine(for_s=20, keep=30, enter=85, exit=75)
    st, out = step_cpu(engine, [90, 90, 90, 50, 50, 50, 50, 50])
    # fires at 20 s; the condition fails from 30 s; keeps firing while now - 30 < 30
    assert out == [NONE, NONE, UP, UP, UP, UP, NONE, NONE]
    assert st.rule("cpu") == st.rule("missing")   # back to idle


def test_keep_firing_episode_continues_when_the_condition_returns():
    engine = cpu_rule_engine(for_s=20, keep=30)
    st, out = step_cpu(engine, [90, 90, 90, 50, 50, 90, 90, 50, 50, 50, 50])
    assert out[2:] == [UP] * 8 + [NONE]
    # one episode: same firing_since throughout, no new for_s wait after the dip
    assert st.rule("cpu").firing_since is None
    engine2 = cpu_rule_engine(for_s=20, keep=30)
    st2, _ = step_cpu(engine2, [90, 90, 90, 50, 50, 90])
    assert st2.rule("cpu").firing_since == T0 + 20


def test_an_evaluation_gap_longer_than_max_gap_restarts_the_clocks():
    engine = cpu_rule_engine(for_s=30, max_gap_s=30)
    st, out = step_cpu(engine, [90, 90, 90])
    assert out == [NONE] * 3 and st.rule("cpu").pending_since == T0
    later = T0 + 20 + 45          # 45 s without an evaluation
    st, diags = engine.evaluate(st, cpu_window(later, 90), later)
    assert diags[0].label is NONE and st.rule("cpu").pending_since == later


def test_time_must_not_run_backwards():
    engine = cpu_rule_engine()
    st, _ = step_cpu(engine, [90, 90])
    with pytest.raises(ValueError, match="before the previous evaluation"):
        engine.evaluate(st, cpu_window(T0, 90), T0)


def test_active_count_change_resets_the_pool_and_holds_it_quiet_for_cooldown():
    engine = cpu_rule_engine(for_s=20, keep=60, cooldown_s=40)
    st, out = step_cpu(engine, [90, 90, 90], active=1)
    assert out[-1] is UP
    # the orchestrator woke a worker: the old episode ends at once, despite keep_firing
    st, out = step_cpu(engine, [90] * 9, active=2, state=st, start=T0 + 30)
    cooldown_ends = T0 + 30 + 40
    # quiet until the cooldown ends (30..60 s), then a fresh for_s (70, 80 pending, 90 fires)
    assert out == [NONE] * 6 + [UP] * 3
    assert st.rule("cpu").firing_since == cooldown_ends + 20


def test_scale_down_never_fires_at_min_active():
    engine = cpu_rule_engine(for_s=30, label="down_cl", op="<=", enter=20, exit=30)
    st, out = step_cpu(engine, [5] * 60, active=1)     # min_active of processing is 1
    assert set(out) == {NONE}
    assert st.pending() == ()                           # the clock did not even run
    st, out = step_cpu(engine, [5] * 5, active=2)
    assert out == [NONE, NONE, NONE, RcaLabel.DOWN_PROCESSING, RcaLabel.DOWN_PROCESSING]


def test_scale_down_evidence_names_the_min_active_guard():
    engine = cpu_rule_engine(for_s=10, label="down_cl", op="<=", enter=20, exit=30)
    st, _ = step_cpu(engine, [5, 5], active=3)
    st, diags = engine.evaluate(st, cpu_window(T0 + 20, 5, active=3), T0 + 20)
    guard = [e for e in diags[0].evidence if e.metric == "pool.active"]
    assert guard and guard[0].threshold == 1 and guard[0].observed == 3 and guard[0].satisfied


def test_evaluate_is_pure_and_deterministic():
    engine = cpu_rule_engine(for_s=20, keep=20)
    values = [90, 90, 90, 60, 90, 50, 50, 50]
    st_a, out_a = step_cpu(engine, values)
    st_b, out_b = step_cpu(engine, values)
    assert out_a == out_b and st_a == st_b
    before = engine.initial_state()
    engine.evaluate(before, cpu_window(T0, 90), T0)
    assert before == engine.initial_state()             # the input state is not mutated


def test_no_data_does_not_fire():
    engine = cpu_rule_engine(for_s=10)
    st = engine.initial_state()
    for i in range(5):
        now = T0 + 10 * i
        st, diags = engine.evaluate(st, MetricsWindow(now - 60, now,
                                                      active={"processing": 2}), now)
        assert [d.label for d in diags] == [NONE]
        assert diags[0].rule == "none"
