"""The short Fig. 12 / Fig. 13 runs shared by the integration test and ``make bench-autoscaler``:
the DER scenario, the rule hold times and the streaming job's queries. Sized for this 2-core
machine: one 0.5-CPU Spark worker runs the full job at ~370 readings/s (big batches), one
0.5-CPU broker publishing 3,000 readings/s averages ~50 % of its limit (measured in this
repository's runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.state import ROOT


@dataclass(frozen=True)
class Run:
    name: str
    phases: list[dict[str, Any]]
    duration_s: float
    surge_at_s: float
    relax_at_s: float
    hold_s: dict[str, float]                     # rules.yaml for_s overrides
    job_args: tuple[str, ...]
    wakes: str                                   # the node the orchestrator should wake
    rule_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    def scenario_file(self, out: Path) -> Path:
        out.write_text(yaml.safe_dump({"name": self.name, "description": "short", "seed": 5,
                                       "duration_s": self.duration_s,
                                       "defaults": {"interval_s": 1.0},
                                       "phases": self.phases}))
        return out

    def rules_file(self, out: Path) -> Path:
        """The shipped rules with short windows and these hold times and thresholds."""
        return short_rules(out, self.hold_s, self.rule_thresholds)


def short_rules(out: Path, hold_s: dict[str, float],
                thresholds: dict[str, dict[str, float]] | None = None) -> Path:
    """diagnoser/rules.yaml with a 30-s window, 5-s steps and these hold times (``for_s`` per
    rule id) and enter/exit thresholds, written to ``out``: what the live tests and benches run
    (rules are data, a run may tune them)."""
    raw = yaml.safe_load((ROOT / "diagnoser" / "rules.yaml").read_text())
    raw["engine"].update(window_s=30, interval_s=5, cooldown_s=30, max_gap_s=30)
    for rule in raw["rules"]:
        if rule["id"] in hold_s:
            rule["for_s"] = hold_s[rule["id"]]
        if rule["id"] in (thresholds or {}):
            rule["when"]["any"][0].update(thresholds[rule["id"]])
    out.write_text(yaml.safe_dump(raw))
    return out


# Queue level: 5 DERs within one channel's capacity, then 2 more push channel-0 hot for 80 s:
# channel_hot fires ~45 s into the surge (30-s window mean past 60 %, then a 10-s hold) and a
# stopped broker takes ~15 s to wake, so a shorter surge ends before channel-1 carries anything.
# A broker publishing 3,000 readings/s averages ~50 % of its 0.5-CPU limit here (measured), so
# 4,000/s with channel_hot entering at 60 % keeps the flood short enough for one Spark worker to
# catch up within a test; processing labels are off.
FIG12 = Run(
    "fig12_queue_level",
    [{"at_s": 0, "note": "5 DERs", "add": [
        {"group": "base", "der_type": "pv", "count": 5, "burst": 20}]},
     {"at_s": 10, "note": "2 more DERs", "add": [
         {"group": "surge", "der_type": "ev_charger", "count": 2, "burst": 2000}]},
     {"at_s": 90, "note": "surge over", "remove": [{"group": "surge"}]}],
    105, 10, 90,
    {"channel_hot": 10, "queue_backlog": 10, "queue_idle": 15, "processing_idle": 600,
     "processing_behind": 600},
    ("--queries", "ingest", "--max-rows-per-trigger", "20000"), "channel-1",
    {"channel_hot": {"enter": 60, "exit": 50}})

# Processing level: 2 DER groups, 3 more exceed one worker, then they leave.
FIG13 = Run(
    "fig13_processing_level",
    [{"at_s": 0, "note": "2 DERs", "add": [
        {"group": "base", "der_type": "pv", "count": 2, "burst": 20}]},
     {"at_s": 10, "note": "3 more DERs", "add": [
         {"group": "extra", "der_type": "wind", "count": 3, "burst": 150}]},
     {"at_s": 90, "note": "3 DERs off", "remove": [{"group": "extra", "count": 3}]}],
    110, 10, 90,
    {"processing_behind": 15, "processing_idle": 20, "channel_hot": 600, "queue_backlog": 600,
     "queue_idle": 600},
    (), "worker-1")

RUNS = {"fig12": FIG12, "fig13": FIG13}
