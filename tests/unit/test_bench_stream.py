"""Pure parts of the streaming capacity bench: step scenarios, commit log parsing, per-reading
latency quantiles, the sustained rule and the capacity.yaml rewrite."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from autoscaler.model.capacity import load_capacity
from bench.stream_capacity import (
    CAPACITY_FILE,
    Step,
    commit_times,
    committed_valid,
    judge,
    max_sustained,
    quantile,
    scaling_efficiency,
    step_rows,
    step_scenario,
    update_capacity_text,
)
from sensors_sim.scenario import load_scenario


def _step(rate: float, p95: float | None, caught: bool = True, stored: int = 100) -> Step:
    return Step(1, rate, 100, rate, stored, caught, 1.0 if caught else None, p95, p95, p95, 0)


def test_step_scenario_offers_the_rate_and_loads(tmp_path):
    raw = step_scenario("w1s0", 400, 30)
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(raw))
    scn = load_scenario(str(path))
    assert scn.duration_s == 30
    groups = scn.phases[0].add
    members = [m for g in groups for m in g.members(scn.seed)]
    assert sum(m.rate_per_s() for m in members) == pytest.approx(400)
    assert {m.der_type for m in members} == {"pv", "wind", "battery", "ev_charger"}
    # How the bench finds a step's rows: step 1's mask does not take step 10's DERs.
    ids = pd.Series([m.der_id for m in members] + ["pv-w1s10a-000", "pv-w1s1a-000"])
    assert list(step_rows(ids, "w1s0")) == [True] * len(members) + [False, False]
    assert list(step_rows(ids, "w1s1")) == [False] * len(members) + [False, True]


def test_commit_log_parsing_ignores_other_lines():
    lines = ['{"ts":10.5,"event":"batch_committed","query":"ingest","batch_id":3,"valid":7}',
             "26/12/01 INFO something else",
             '{"ts":11.0,"event":"batch_committed","query":"twin","batch_id":3,"updated":2}',
             '{"ts":12.0,"event":"batch_committed","query":"ingest","batch_id":4,"valid":5}',
             '{"ts":12.5,"event":"batch_committed","query":"ingest"']   # torn last line
    assert commit_times(lines) == {("ingest", 3): 10.5, ("twin", 3): 11.0, ("ingest", 4): 12.0}
    assert committed_valid(lines, 0) == 12
    assert committed_valid(lines, 11) == 5


def test_quantile_is_nearest_rank():
    xs = list(range(1, 101))
    assert quantile(xs, 0.5) == 50 and quantile(xs, 0.95) == 95 and quantile(xs, 1.0) == 100
    assert quantile([], 0.5) is None and quantile([7.0], 0.95) == 7.0


def test_sustained_needs_latency_within_deadline_everything_stored_and_caught_up():
    assert judge(_step(100, 4_000), 10_000).sustained
    assert not judge(_step(100, 12_000), 10_000).sustained
    assert not judge(_step(100, 4_000, caught=False), 10_000).sustained
    assert not judge(_step(100, 4_000, stored=99), 10_000).sustained
    assert not judge(_step(100, None), 10_000).sustained


def test_max_sustained_stops_at_the_first_failed_step():
    steps = [judge(_step(r, p), 10_000) for r, p in
             ((100, 2_000), (200, 3_000), (300, 20_000), (400, 5_000))]
    assert max_sustained(steps) == 200
    assert max_sustained([judge(_step(100, 20_000), 10_000)]) is None


def test_scaling_efficiency():
    assert scaling_efficiency({1: 200, 2: 360, 3: 520}) == pytest.approx((0.8 + 0.8) / 2)
    assert scaling_efficiency({1: 200}) is None
    assert scaling_efficiency({2: 300}) is None


def test_capacity_rewrite_keeps_comments_and_loads_as_measured(tmp_path):
    text = CAPACITY_FILE.read_text()
    new = update_capacity_text(text, 240, 0.75, "make bench-stream", "2026-12-01")
    assert new.count("#") == text.count("#")
    path = tmp_path / "capacity.yaml"
    path.write_text(new)
    cap = load_capacity(path)
    assert cap.source.kind == "measured" and cap.source.date == "2026-12-01"
    assert cap.processing.readings_per_s == 240
    assert cap.processing.scaling_efficiency == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"processing\.readings_per_s"):
        update_capacity_text("processing:\n  cpus: 1\n", 1, None, "x", "2026-12-01")
