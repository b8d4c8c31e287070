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
