"""The demo's status view and profile handling, without any service."""

from __future__ import annotations

import yaml

from demo.__main__ import FULL, SHORT, phase_at, scenario_path
from demo.view import Snapshot, one_line, render
from diagnoser.rules import load_rules
from infra.topology import load_topology
from sensors_sim.scenario import load_scenario


def _snap(**kw) -> Snapshot:
    base = dict(elapsed_s=42.0, phase="overload",
                states={"channel-0": "active", "channel-1": "stopped", "worker-0": "active",
                        "worker-1": "active", "worker-2": "stopped"},
                publish_rate={"channel-0": 812.4}, lag={"channel-0": 12000.0},
                input_rate=640.0, processed_rate=655.0, batch_ms=1800.0, label="up_cl",
                label_rule="processing_behind", action="wake worker-1 (done, 9.8 s)",
                twin_gen_w={"pv": 12500.0, "wind": 0.0}, twin_storage_wh=54000.0)
    base.update(kw)
    return Snapshot(**base)


def test_render_shows_rates_depth_nodes_label_action_and_twin():
    text = "\n".join(render(_snap(), load_topology()))
    assert "in     640 /s" in text and "processed     655 /s" in text
    assert "channel-0  active   publish     812 /s  queue depth (stream lag)  12,000" in text
    assert "processing active 2/3: worker-0, worker-1   dormant: worker-2" in text
    assert "RCA label: R_up^CL (up_cl) by rule processing_behind" in text
    assert "orchestrator: wake worker-1 (done, 9.8 s)" in text
    assert "pv 12.5 kW" in text and "wind" not in text.split("twin:")[1].split(";")[0]
    assert "storage 54.0 kWh" in text


def test_render_copes_with_nothing_measured_yet():
    text = "\n".join(render(_snap(publish_rate={}, lag={}, input_rate=None, processed_rate=None,
                                  batch_ms=None, label=None, label_rule=None, action=None,
                                  twin_gen_w={}, twin_storage_wh=None), load_topology()))
    assert "no action yet" in text and "RCA label: -" in text and "storage -" in text


def test_one_line_counts_active_nodes_per_pool():
    line = one_line(_snap())
    assert "channels=1 workers=2" in line and "label=up_cl" in line


def test_phase_follows_the_scenario_timeline():
    phases = [(0, "base"), (15, "overload"), (95, "relax")]
    assert [phase_at(phases, t) for t in (0, 14.9, 15, 200)] == ["base", "base", "overload",
                                                                 "relax"]


def test_short_profile_writes_valid_rules_and_scenario(tmp_path):
    rules = load_rules(SHORT.run.rules_file(tmp_path / "rules.yaml"))
    assert rules.settings.window_s == 30
    held = {r.id: r.for_s for r in rules.rules}
    assert held["processing_idle"] == 20
    sc = load_scenario(scenario_path(SHORT, tmp_path / "s.yaml"))
    assert sc.duration_s == 110 and [p.note for p in sc.phases] == ["2 DERs", "3 more DERs",
                                                                    "3 DERs off"]
    assert yaml.safe_load((tmp_path / "s.yaml").read_text())["name"] == "fig13_processing_level"
    assert scenario_path(FULL, tmp_path / "f.yaml") == "demo"   # the shipped scenario
