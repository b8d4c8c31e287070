"""Pure parts of the streaming capacity bench: step scenarios, commit log parsing, per-reading
latency quantiles, the deadline rule, the saturated throughput, the twin's first-visible
latency and the capacity.yaml rewrite."""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import pytest

from autoscaler.model.capacity import load_capacity
from bench.common import read_csv, write_csv
from bench.stream_capacity import (
    CAPACITY_FILE,
    Capacity,
    Step,
    backlogged,
    batch_counts,
    batch_durations,
    capacity_rows,
    commit_latencies,
    commit_times,
    committed_valid,
    downstream_committed,
    fig10_rows,
    judge,
    make_command,
    max_within_deadline,
    quantile,
    scaling_efficiency,
    step_rows,
    step_scenario,
    throughput,
    update_capacity_text,
    visible_latencies,
    write_capacity,
)
from sensors_sim.scenario import load_scenario


def _step(rate: float, p95: float | None, caught: bool = True, stored: int = 100,
          kind: str = "step") -> Step:
    return Step(1, rate, 100, rate, stored, caught, 1.0 if caught else None, p95, p95, p95, 0,
                kind=kind)


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
    # ... nor the saturation step's (w1sat) those of a sweep step, or the other way round.
    ids = pd.Series(["pv-w1sata-000", "pv-w1s0a-000"])
    assert list(step_rows(ids, "w1sat")) == [True, False]
    assert list(step_rows(ids, "w1s0")) == [False, True]


def test_commit_log_parsing_ignores_other_lines():
    lines = ['{"ts":10.5,"event":"batch_committed","query":"ingest","batch_id":3,"valid":7}',
             "26/12/01 INFO something else",
             '{"ts":11.0,"event":"batch_committed","query":"twin","batch_id":3,"updated":2}',
             '{"ts":12.0,"event":"batch_committed","query":"ingest","batch_id":4,"valid":5}',
             '{"ts":12.5,"event":"batch_committed","query":"ingest"']   # torn last line
    assert commit_times(lines) == {("ingest", 3): 10.5, ("twin", 3): 11.0, ("ingest", 4): 12.0}
    assert committed_valid(lines, 0) == 12
    assert committed_valid(lines, 11) == 5


def test_downstream_committed_needs_a_twin_and_an_aggregates_batch_after_the_moment():
    commits = {("ingest", 3): 10.0, ("twin", 0): 9.0, ("aggregates", 0): 11.0}
    # The twin's only batch is older than the moment: its first batch of the data is ahead.
    assert not downstream_committed(commits, since=10.0)
    assert downstream_committed({**commits, ("twin", 1): 12.0}, since=10.0)
    # Ingest batches never count for the downstream queries.
    assert not downstream_committed({("ingest", 4): 20.0, ("twin", 1): 20.0}, since=10.0)


def test_quantile_is_nearest_rank():
    xs = list(range(1, 101))
    assert quantile(xs, 0.5) == 50 and quantile(xs, 0.95) == 95 and quantile(xs, 1.0) == 100
    assert quantile([], 0.5) is None and quantile([7.0], 0.95) == 7.0


def test_within_deadline_needs_p95_within_it_everything_stored_and_caught_up():
    assert judge(_step(100, 4_000), 10_000).within_deadline
    assert not judge(_step(100, 12_000), 10_000).within_deadline
    assert not judge(_step(100, 4_000, caught=False), 10_000).within_deadline
    assert not judge(_step(100, 4_000, stored=99), 10_000).within_deadline
    assert not judge(_step(100, None), 10_000).within_deadline


def test_max_within_deadline_stops_at_the_first_failed_step_and_ignores_saturation():
    steps = [judge(_step(r, p), 10_000) for r, p in
             ((100, 2_000), (200, 3_000), (300, 20_000), (400, 5_000))]
    assert max_within_deadline(steps) == 200
    # The per-batch latency floor: even the first step misses it -> None, not 0.
    assert max_within_deadline([judge(_step(100, 20_000), 10_000)]) is None
    sat = judge(_step(3000, 1_000, kind="saturation"), 10_000)
    assert max_within_deadline([judge(_step(100, 2_000), 10_000), sat]) == 100
    assert max_within_deadline([sat]) is None


def test_commit_latencies_and_batch_counts_join_rows_with_the_commit_log():
    commits = {("ingest", 1): 100.0, ("ingest", 2): 130.0, ("twin", 3): 999.0}
    # Per reading: its batch and event time (ms); batch 3 is not in the ingest log.
    assert commit_latencies([1, 2, 3], [95_000, 100_000, 0], commits) == [5_000, 30_000]
    assert batch_counts([2, 1, 1, 2, 2, 3], commits) == [(100.0, 2), (130.0, 3)]
    assert batch_counts([], commits) == []


def test_throughput_leaves_out_the_first_batch():
    # First batch committed at 10 s (its start unknown); then 6,000 + 9,000 readings by 40 s.
    batches = [(25.0, 6_000), (10.0, 1_500), (40.0, 9_000)]
    assert throughput(batches) == pytest.approx(15_000 / 30)
    assert batch_durations(batches) == [15.0, 15.0]
    assert throughput([(10.0, 1_500)]) is None and throughput([]) is None
    assert throughput([(10.0, 5), (10.0, 7)]) is None     # no time between them
    assert batch_durations([(1.0, 5)]) == []


def test_backlogged_only_when_clearly_below_the_offered_rate():
    assert backlogged(1_000, 2_500)
    assert not backlogged(2_400, 2_500)       # kept up: the rate is only a lower bound
    assert not backlogged(None, 2_500)


def test_twin_latency_counts_each_state_when_it_first_became_visible():
    # DER a's state (event 1,000 ms) shown at 3 s and again at 70 s (its staleness timeout).
    rows = [("a", 1_000, 3.0), ("b", 2_000, 4.5), ("a", 1_000, 70.0), ("a", 5_000, 6.0)]
    assert sorted(visible_latencies(rows)) == [1_000, 2_000, 2_500]
    assert visible_latencies([]) == []


def test_fig10_rows_count_unstored_readings_and_keep_the_kind():
    s = Step(1, 3000, 100, 2900.0, 90, False, None, 20_000, 40_000, 50_000, 80,
             kind="saturation")
    (row,) = fig10_rows([s])
    assert row["kind"] == "saturation" and row["not_stored"] == 10
    assert row["late_readings"] == 80 and row["delay_p95_s"] == 40.0


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


def test_capacity_csv_round_trip_then_written_from_it(tmp_path):
    caps = [Capacity(1, 1530.9, None, 2973.7, 89983, 89983, 5, 12.1, True, True),
            Capacity(2, 2361.2, 500.0, 2973.7, 89807, 89807, 5, 8.3, True, True),
            Capacity(3, None, None, 2967.5, 10, 9, 1, None, False, False)]
    write_csv(tmp_path / "capacity.csv", [asdict(c) for c in caps])
    assert capacity_rows(read_csv(tmp_path / "capacity.csv")) == caps
    path = tmp_path / "capacity.yaml"
    path.write_text(CAPACITY_FILE.read_text())
    assert write_capacity(caps, "make bench-stream", "2026-12-02", path) is None
    cap = load_capacity(path)
    assert cap.processing.readings_per_s == 1531          # rounded by the rewrite
    assert cap.processing.scaling_efficiency == pytest.approx(2361.2 / 1530.9 - 1, abs=0.005)
    # Not backlogged with one worker: a lower bound, so the file is left alone.
    before = path.read_text()
    lower = [Capacity(1, 900.0, None, 1000.0, 10, 10, 3, 1.0, True, False)]
    assert write_capacity(lower, "x", "2026-12-02", path) == \
        "no backlogged throughput with 1 worker"
    assert path.read_text() == before


def test_make_command_names_the_arguments_given():
    assert make_command([]) == "make bench-stream"
    assert make_command(["--quick"]) == "make bench-stream BENCH_ARGS=--quick"
    assert (make_command(["--quick", "--workers", "1,2,3"])
            == "make bench-stream BENCH_ARGS='--quick --workers 1,2,3'")
