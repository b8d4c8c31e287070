"""Simulator: determinism, physical sanity, monitor-shaped output, workloads and schedules."""

from __future__ import annotations

import pytest
from as_support import fixed_capacity

from autoscaler.features import extract
from autoscaler.model.dataset import History
from autoscaler.model.simulate import (
    Schedule,
    SimConfig,
    Workload,
    from_scenario,
    perturb,
    random_schedule,
    shaped,
    simulate,
)
from diagnoser.window import build_window
from monitor.schema import PROCESSING, QUEUE, QUEUING, STREAM_LAG, STREAM_PROGRESS
from sensors_sim.scenario import load_scenario

CAP = fixed_capacity()
S1 = CAP.processing.total(1)


def const(rate: float, seconds: int = 300) -> Workload:
    return Workload("const", (rate,) * seconds)


def test_same_seed_same_points_other_seed_other_points():
    wl = perturb(shaped("bursts", duration_s=300, base=300, peak=2000, seed=3), seed=3)
    sched = random_schedule(300, seed=3)
    a = simulate(wl, sched, CAP, seed=11)
    b = simulate(wl, sched, CAP, seed=11)
    c = simulate(wl, sched, CAP, seed=12)
    assert a.points == b.points and a.trace == b.trace
    assert a.points != c.points
    assert perturb(wl, seed=1) == perturb(wl, seed=1) != perturb(wl, seed=2)


@pytest.mark.parametrize("share", [0.2, 0.5, 0.8, 0.95])
def test_below_capacity_nothing_piles_up(share):
    run = simulate(const(share * S1), Schedule.fixed(1, 1), CAP, seed=1)
    tr = run.trace
    assert max(tr.ingress_backlog) == 0 and run.lost == 0
    # the stream holds the running batch and what arrived since: a few triggers' worth,
    # and no more at the end than after the first minute
    rate, trigger = share * S1, SimConfig().trigger_s
    early, late = tr.stream_backlog[30:90], tr.stream_backlog[-60:]
    assert max(late) <= 3 * rate * trigger
    assert max(late) <= max(early) + 1e-6


@pytest.mark.parametrize("factor", [1.5, 2.0, 3.0])
def test_above_processing_capacity_the_lag_grows(factor):
    run = simulate(const(factor * S1), Schedule.fixed(1, 1), CAP, seed=1)
    lag = run.trace.stream_backlog
    assert lag[-1] > lag[100] > lag[10]
    assert max(run.trace.ingress_backlog) == 0          # the channel is not the limit


def test_above_channel_capacity_the_gateways_hold_and_then_lose():
    run = simulate(const(2 * CAP.queue.readings_per_s), Schedule.fixed(1, 3), CAP, seed=1,
                   config=SimConfig(publisher_buffer=200_000))
    ing = run.trace.ingress_backlog
    assert ing[50] == pytest.approx(50 * CAP.queue.readings_per_s, rel=0.05)
    assert max(ing) == 200_000 and run.lost > 0
    two = simulate(const(1.5 * CAP.queue.readings_per_s), Schedule.fixed(2, 3), CAP, seed=1)
    assert max(two.trace.ingress_backlog) == 0 and two.lost == 0


def test_a_woken_worker_adds_capacity_after_its_wake_time():
    rate = 1.6 * S1                         # above one worker's ceiling, below two
    sched = Schedule(((0.0, 1, 1), (120.0, 1, 2)))
    run = simulate(const(rate, 400), sched, CAP, seed=2)
    lag = run.trace.stream_backlog
    wake = SimConfig().wake_s["processing"]
    assert lag[119] > lag[60]                            # behind with one worker
    assert lag[int(120 + wake) - 2] >= lag[119]          # still booting: no help yet
    assert lag[399] < lag[int(120 + wake)] / 4           # two workers drain it


def test_points_have_the_monitor_shape():
    run = simulate(const(1000, 120), Schedule.fixed(1, 2), CAP, seed=5)
    names = {p["measurement"] for p in run.points}
    assert names == {PROCESSING.name, QUEUING.name, QUEUE.name, STREAM_LAG.name,
                     STREAM_PROGRESS.name}
    for p in run.points:
        schema = {m.name: m for m in (PROCESSING, QUEUING, QUEUE, STREAM_LAG,
                                      STREAM_PROGRESS)}[p["measurement"]]
        assert set(p["fields"]) <= set(schema.fields) and set(p["tags"]) <= set(schema.tags)
        if p["measurement"] in (PROCESSING.name, QUEUING.name):
            assert 0 <= p["fields"]["cpu"] <= 100
    reporting = {p["tags"]["node"] for p in run.points if p["measurement"] == PROCESSING.name}
    assert reporting == {"worker-0", "worker-1"}        # the dormant worker-2 sends nothing
    w = build_window(run.points, active={"queue": 1, "processing": 2})
    assert len(w.nodes) == 12 * 3 and not w.rejected


def test_same_feature_code_on_simulated_history():
    run = simulate(const(1.5 * S1, 200), Schedule.fixed(1, 1), CAP, seed=5)
    h = History.from_points(run.points)
    t = run.start + 180
    f = extract(h.window(t - 60, t, run.active_at(t)), now=t)
    assert f["publish_rate_mean"] == pytest.approx(1.5 * S1, rel=0.01)
    assert f["stream_lag_slope"] > 0 and f["processing_cpu_max_mean"] > 85
    assert f["batch_duration_ms_mean"] > 1000 * SimConfig().trigger_s   # batches overrun


def test_cpu_follows_load():
    def cpu(rate: float) -> float:
        run = simulate(const(rate, 120), Schedule.fixed(1, 1), CAP, seed=1)
        h = History.from_points(run.points)
        t = run.start + 110
        return extract(h.window(t - 60, t, {"queue": 1, "processing": 1}))[
            "processing_cpu_mean_mean"]
    assert cpu(100) < cpu(400) < cpu(650)


def test_workload_from_scenario_follows_its_timeline():
    wl = from_scenario(load_scenario("queue_level"))
    assert wl.duration_s == 480
    assert wl.rate_at(0) == pytest.approx(500) and wl.rate_at(119) == pytest.approx(500)
    assert wl.rate_at(120) == pytest.approx(3500)
    assert from_scenario(load_scenario("queue_level"), rate_scale=2).rate_at(0) == 1000


def test_shapes_stay_between_base_and_peak():
    for kind in ("step", "step_down", "ramp", "wave", "bursts", "steps"):
        wl = shaped(kind, duration_s=300, base=100, peak=900, seed=4)
        assert min(wl.rates) >= 100 - 1e-9 and max(wl.rates) <= 900 + 1e-9
    with pytest.raises(ValueError, match="shape"):
        shaped("zigzag", duration_s=10, base=1, peak=2, seed=0)


def test_schedule_validation_and_lookup():
    s = Schedule(((0.0, 1, 1), (100.0, 2, 1), (200.0, 2, 3)))
    assert s.at(0) == (1, 1) and s.at(150) == (2, 1) and s.at(1e9) == (2, 3)
    with pytest.raises(ValueError, match="at_s 0"):
        Schedule(((5.0, 1, 1),))
    with pytest.raises(ValueError, match=r"changes\[1\]"):
        Schedule(((0.0, 1, 1), (10.0, 0, 1)))
    rs = random_schedule(1000, seed=1)
    assert all(1 <= q <= 2 and 1 <= p <= 3 for _, q, p in rs.changes)
