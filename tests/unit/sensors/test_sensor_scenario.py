"""sensors_sim.scenario: shipped scenarios have the paper's shapes; bad files name the field."""

from __future__ import annotations

import copy

import pytest

from sensors_sim.scenario import (
    ScenarioError,
    active_at,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
    timeline,
)


def test_shipped_scenarios_load():
    assert {"queue_level", "processing_level", "demo"} <= set(shipped_scenarios())
    for name in shipped_scenarios():
        sc = load_scenario(name)
        assert sc.name == name and sc.duration_s > sc.phases[-1].at_s


def test_queue_level_is_five_then_seven_on_one_channel():
    sc = load_scenario("queue_level")
    steps = timeline(sc)
    assert [len(s.active) for s in steps] == [5, 7]
    assert steps[1].rate_per_s > 3 * steps[0].rate_per_s
    assert {d.channel for d in steps[1].active} == {"channel-0"}
    assert len(active_at(sc, 0)) == 5 and len(active_at(sc, 119.9)) == 5
    assert len(active_at(sc, 120)) == 7


def test_processing_level_is_two_then_five_then_three():
    sc = load_scenario("processing_level")
    steps = timeline(sc)
    assert [len(s.active) for s in steps] == [2, 5, 3]
    assert len(steps[2].removed) == 2
    assert steps[0].rate_per_s < steps[2].rate_per_s < steps[1].rate_per_s
    ids = {d.der_id for d in active_at(sc, 400)}
    assert ids == {d.der_id for d in steps[2].active}


def test_demo_overloads_then_relaxes():
    steps = timeline(load_scenario("demo"))
    rates = [s.rate_per_s for s in steps]
    assert rates[1] > 5 * rates[0] and rates[2] == rates[0]


def test_rate_scale_scales_every_rate_and_ids_and_seeds_are_stable():
    sc = load_scenario("queue_level")
    half = sc.with_rate_scale(0.5)
    assert timeline(half)[1].rate_per_s == pytest.approx(timeline(sc)[1].rate_per_s / 2)
    a = sorted(active_at(sc, 200), key=lambda d: d.der_id)
    b = sorted(active_at(load_scenario("queue_level"), 200), key=lambda d: d.der_id)
    assert [(d.der_id, d.seed) for d in a] == [(d.der_id, d.seed) for d in b]
    assert a[0].der_id.startswith(("bat-", "ev-", "hydro-", "pv-", "wind-"))


GOOD = {
    "name": "t", "duration_s": 100, "defaults": {"interval_s": 1.0},
    "phases": [
        {"at_s": 0, "add": [{"group": "a", "der_type": "pv", "count": 2}]},
        {"at_s": 30, "add": [{"group": "b", "der_type": "battery", "burst": 5}]},
        {"at_s": 60, "remove": ["b", {"group": "a", "count": 1}]},
    ],
}


def _bad(path: list, value) -> dict:
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DEL:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DEL = object()

BAD = [
    (["phases", 2, "at_s"], 10, "phases[2].at_s: must be >= previous phase (30)"),
    (["phases", 0, "add", 0, "der_type"], "nuclear",
     "phases[0].add[0].der_type: unknown der_type 'nuclear'"),
    (["phases", 0, "add", 0, "count"], 0, "phases[0].add[0].count: must be >= 1 (got 0)"),
    (["phases", 1, "add", 0, "burst"], 0, "phases[1].add[0].burst: must be >= 1 (got 0)"),
    (["phases", 1, "add", 0, "interval_s"], -1, "phases[1].add[0].interval_s: must be > 0"),
    (["phases", 1, "add", 0, "group"], "a", "phases[1].add[0].group: 'a' already used"),
    (["phases", 1, "add", 0, "group"], "B-1", "phases[1].add[0].group: 'B-1' does not match"),
    (["phases", 1, "add", 0, "colour"], "red", "phases[1].add[0].colour: unknown field"),
    (["phases", 1, "add", 0, "config"], {"rated_kw": 5},
     "phases[1].add[0].config.rated_kw: not a field of BatteryConfig"),
    (["phases", 1, "add", 0, "config"], {"soc_min_pct": 99.0},
     "phases[1].add[0].config: BatteryConfig.soc_min_pct: must be < soc_max_pct"),
    (["phases", 2, "remove", 0], "zzz", "phases[2].remove[0]: group 'zzz' has no active DERs"),
    (["phases", 2, "remove", 1, "count"], 3,
     "phases[2].remove[1].count: 3 above the 2 active in 'a'"),
    (["phases", 2, "at_s"], 100, "phases[2].at_s: must be < duration_s (100)"),
    (["phases", 0, "at_s"], "soon", "phases[0].at_s: expected number, got 'soon'"),
    (["duration_s"], _DEL, "duration_s: required field is missing"),
    (["rate_scale"], 0, "rate_scale: must be > 0 (got 0)"),
    (["phases"], [], "phases: must list at least one phase"),
    (["speed"], 3, "speed: unknown field"),
    (["defaults", "burst"], 1.5, "defaults.burst: expected int, got 1.5"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[m.split(":")[0] for *_, m in BAD])
def test_invalid_scenarios_name_the_field(path, value, message):
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(_bad(path, value), "test.yaml")
    assert any(e.startswith(message) for e in ei.value.errors), ei.value.errors
    assert "test.yaml" in str(ei.value)


def test_all_errors_are_reported_at_once():
    doc = _bad(["phases", 0, "add", 0, "der_type"], "nuclear")
    doc["phases"][2]["at_s"] = 10
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(doc)
    assert len(ei.value.errors) >= 2


def test_good_scenario_semantics():
    sc = parse_scenario(GOOD)
    assert {d.der_id for d in active_at(sc, 0)} == {"pv-a-000", "pv-a-001"}
    assert len(active_at(sc, 30)) == 3
    assert {d.der_id for d in active_at(sc, 60)} == {"pv-a-000"}   # last member removed first
    (b,) = [d for d in active_at(sc, 30) if d.group == "b"]
    assert b.rate_per_s() == 5.0 and b.interval_s == 1.0


def test_missing_file_lists_the_shipped_scenarios(tmp_path):
    with pytest.raises(ScenarioError, match=r"shipped scenarios: .*queue_level"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match=r"not valid YAML"):
        load_scenario(bad)
