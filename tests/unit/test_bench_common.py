"""Bench bookkeeping that must not lose earlier results: CSV round trip, and a run of some
autoscaler scenarios keeping the other scenarios' policy rows."""

from __future__ import annotations

from bench.autoscaler_bench import merge_policy_rows
from bench.common import read_csv, write_csv


def test_csv_round_trip_and_missing_file(tmp_path):
    assert read_csv(tmp_path / "none.csv") == []
    write_csv(tmp_path / "a.csv", [{"scenario": "s", "lost": 0}])
    assert read_csv(tmp_path / "a.csv") == [{"scenario": "s", "lost": "0"}]


def test_policy_rows_of_other_scenarios_survive_a_partial_run():
    earlier = [{"scenario": "fig13", "policy": "ours", "lost": "0"},
               {"scenario": "fig12", "policy": "ours", "lost": "9"}]
    now = [{"scenario": "fig12", "policy": "ours", "lost": 0},
           {"scenario": "fig12", "policy": "none", "lost": 5}]
    merged = merge_policy_rows(earlier, now)
    assert merged == [earlier[0], *now]


def test_time_to_reliable_waits_for_the_backlog_to_be_gone_for_the_rest_of_the_run():
    from bench.autoscaler_bench import time_to_reliable

    # Fig. 12 "ours": one low sample right after the surge, then a backlog for minutes
    lag = [(27.8, 0.0), (62.8, 48_234.0), (102.8, 416_262.0), (362.8, 11_981.0), (392.8, 0.0),
           (430.0, 0.0)]
    assert time_to_reliable(lag, surge_at=10) == 382.8
    assert time_to_reliable([(20.0, 0.0), (60.0, 500.0)], surge_at=10) == 0.0   # never behind
    assert time_to_reliable(lag[:4], surge_at=10) is None                       # still behind
    assert time_to_reliable(lag[:5], surge_at=10) == 382.8


def test_make_command_names_the_target_and_its_arguments():
    from bench.common import make_command

    assert make_command("bench-autoscaler", []) == "make bench-autoscaler"
    assert (make_command("bench-autoscaler", ["--scenarios", "fig12"])
            == "make bench-autoscaler BENCH_ARGS='--scenarios fig12'")
