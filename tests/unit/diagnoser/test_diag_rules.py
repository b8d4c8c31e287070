"""rules.yaml loads, and every mistake in a rules file fails naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from diagnoser.labels import RcaLabel
from diagnoser.rules import DEFAULT_PATH, AllOf, RulesError, Signal, load_rules, parse_rules


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text())


def _error(raw: dict) -> str:
    with pytest.raises(RulesError) as exc:
        parse_rules(raw, "test.yaml")
    return str(exc.value)


def test_default_rules_cover_every_label(raw):
    rs = parse_rules(raw)
    assert {r.label for r in rs.rules} == set(RcaLabel) - {RcaLabel.NO_ACTION}
    assert all(r.for_s > 0 for r in rs.rules)
    assert rs.settings.cooldown_s >= 60            # at least the 60 s query window
    behind = rs.rule("processing_behind")
    assert isinstance(behind.when, AllOf) and behind.pool == "processing"
    assert rs.rule("queue_backlog").unless == ("processing_behind",)


def test_a_signal_without_exit_has_no_hysteresis():
    rs = parse_rules({"version": 1, "rules": [
        {"id": "r", "label": "up_cl", "for_s": 10,
         "when": {"metric": "node.cpu", "op": ">=", "enter": 85}}]})
    sig = rs.rules[0].when
    assert isinstance(sig, Signal) and sig.exit == sig.enter == 85
    assert (sig.over_time, sig.across, sig.missing) == ("mean", "max", False)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda r: r["rules"][3].update(for_s=0), "rules[3].for_s: must be > 0"),
    (lambda r: r["rules"][0].update(for_s=True), "rules[0].for_s: expected a finite number"),
    (lambda r: r["rules"][0].pop("for_s"), "rules[0].for_s: required field is missing"),
    (lambda r: r["rules"][1].update(keep_firing_for_s=-1),
     "rules[1].keep_firing_for_s: must be >= 0"),
    (lambda r: r["rules"][0].update(label="sideways"), "rules[0].label: must be one of"),
    (lambda r: r["rules"][0].update(label="none"), "rules[0].label: must be one of"),
    (lambda r: r["rules"][2].update(id=r["rules"][0]["id"]),
     "rules[2].id: duplicate id 'processing_behind', already rules[0]"),
    (lambda r: r["rules"][0].update(id="Bad Id"), "rules[0].id: must be lower-case"),
    (lambda r: r["rules"][2].update(unless=["nope"]), "rules[2].unless[0]: unknown rule id"),
    (lambda r: r["rules"][2].update(unless=["queue_backlog"]),
     "rules[2].unless[0]: a rule cannot be suppressed by itself"),
    (lambda r: r["rules"][0].update(severity="high"), "rules[0].severity: unknown field"),
    (lambda r: r["rules"][0].pop("when"), "rules[0].when: required field is missing"),
    (lambda r: r["rules"][1]["when"]["any"][0].update(metric="node.temperature"),
     "rules[1].when.any[0].metric: unknown metric 'node.temperature'"),
    (lambda r: r["rules"][1]["when"]["any"][0].update(exit=90),
     "rules[1].when.any[0].exit: must be <= enter (85) for op >="),
    (lambda r: r["rules"][3]["when"]["all"][0].update(exit=10),
     "rules[3].when.all[0].exit: must be >= enter (45) for op <="),
    (lambda r: r["rules"][0]["when"]["all"][1]["any"][0].update(op=">"),
     "rules[0].when.all[1].any[0].op: must be one of >=, <="),
    (lambda r: r["rules"][0]["when"]["all"][1]["any"][0].update(over_time="median"),
     "rules[0].when.all[1].any[0].over_time: must be one of"),
    (lambda r: r["rules"][0]["when"]["all"][0]["any"][0].update(across="avg"),
     "rules[0].when.all[0].any[0].across: must be one of"),
    (lambda r: r["rules"][0]["when"]["all"][0]["any"][1].update(pool="queue"),
     "rules[0].when.all[0].any[1].pool: only node.* and pool.* metrics belong to a pool"),
    (lambda r: r["rules"][0]["when"]["all"][0]["any"][1].update(missing="yes"),
     "rules[0].when.all[0].any[1].missing: expected true or false"),
    (lambda r: r["rules"][0]["when"].update(any=[]), "rules[0].when: a group has exactly one key"),
    (lambda r: r["rules"][1]["when"].update(any=[]),
     "rules[1].when.any: expected a non-empty list"),
    (lambda r: r["rules"][1].update(when=[1]), "rules[1].when: expected a mapping"),
    (lambda r: r.update(version=2), "version: must be 1"),
    (lambda r: r["engine"].update(max_gap_s=0), "engine.max_gap_s: must be > 0"),
    (lambda r: r["engine"].update(cooldown_s=30), "engine.cooldown_s: must be >= window_s (60)"),
    (lambda r: r["engine"].update(window_s=-1), "engine.window_s: must be > 0"),
    (lambda r: r["engine"].update(interval_s=120),
     "engine.interval_s: 120 is longer than window_s"),
    (lambda r: r["engine"].update(max_gap_s=10), "engine.max_gap_s: must be > interval_s (10)"),
    (lambda r: r["engine"].update(max_gap_s="1m"), "engine.max_gap_s: expected a finite number"),
    (lambda r: r.update(rules=[]), "rules: expected a non-empty list"),
    (lambda r: r.update(extra=1), "rules_file.extra: unknown field"),
])
def test_errors_name_the_offending_field(raw, mutate, expected):
    bad = copy.deepcopy(raw)
    mutate(bad)
    msg = _error(bad)
    assert expected in msg, msg
    assert "test.yaml" in msg


def test_every_error_is_reported_at_once(raw):
    raw["rules"][0]["for_s"] = 0
    raw["rules"][4]["keep_firing_for_s"] = -1
    msg = _error(raw)
    assert "rules[0].for_s" in msg and "rules[4].keep_firing_for_s" in msg


def test_loader_errors_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(RulesError, match="cannot read rules"):
        load_rules(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(broken)
    variant = tmp_path / "variant.yaml"
    variant.write_text(yaml.safe_dump({"version": 1, "rules": [
        {"id": "only", "label": "up_cc", "for_s": 5,
         "when": {"metric": "node.cpu", "op": ">=", "enter": 50}}]}))
    monkeypatch.setenv("VPP_DIAGNOSER_RULES", str(variant))
    assert [r.id for r in load_rules().rules] == ["only"]


def test_inputs_tell_the_service_what_to_query(raw):
    rs = parse_rules(raw)
    assert rs.settings.window_s == 60 and rs.settings.interval_s == 10
    assert rs.inputs() == {
        "processing_cluster": ("cpu", "memory"),
        "queuing_cluster": ("cpu", "memory"),
        "rabbitmq_queue": ("deliver_rate", "messages", "publish_rate"),
        "spark_stream": ("batch_duration_ms", "input_rate", "processed_rate"),
        "stream_lag": ("lag",),
    }
