"""The fault-injection bench without services: scoring of windows (TP/FP/FN per label class,
precision/recall, time to the first correct output), parsing of the diagnoser's log events,
the fault set built from the topology, and main() end to end with the live windows stubbed."""

from __future__ import annotations

import csv
import json

import pytest

from bench import fault_injection as fi
from bench import fig11_stragglers as fig11
from bench.fault_scoring import (
    LABEL_FIELDS,
    OUTCOME_FIELDS,
    Expect,
    LabelScore,
    Observation,
    Window,
    first_correct_s,
    per_fault,
    per_label,
    score_window,
)
from bench.faults import observations
from bench.report import read_summary
from infra.topology import load_topology

T0 = 1000.0


def _win(expected, observed=(), allowed=(), fault="f", repeat=1, end=T0 + 90) -> Window:
    return Window(fault, repeat, T0, end, tuple(expected),
                  tuple(Observation(T0 + dt, lab, node) for dt, lab, node in observed),
                  tuple(allowed))


def _by_label(w: Window) -> dict[str, tuple[int, int, int]]:
    return {o.label: (o.tp, o.fp, o.fn) for o in score_window(w)}


def test_the_expected_label_naming_the_right_node_is_a_true_positive():
    w = _win([Expect("up_cl", "worker-0")],
             [(40, "up_cl", "worker-0"), (45, "up_cl", "worker-0")])
    (out,) = score_window(w)
    assert (out.label, out.tp, out.fp, out.fn) == ("up_cl", 1, 0, 0)
    assert out.first_s == 40 and out.evaluations == 2 and out.verdict == "tp"
    assert first_correct_s(w) == 40


def test_the_right_label_naming_another_node_is_a_miss_and_a_false_alarm():
    w = _win([Expect("up_cl", "worker-0")], [(40, "up_cl", "worker-1")])
    assert _by_label(w) == {"up_cl": (0, 1, 1)}
    assert first_correct_s(w) is None


def test_a_right_and_a_wrong_node_in_one_window_score_both():
    w = _win([Expect("up_cl", "worker-0")], [(40, "up_cl", "worker-1"), (50, "up_cl", "worker-0")])
    (out,) = score_window(w)
    assert (out.tp, out.fp, out.fn) == (1, 1, 0)
    assert out.first_s == 50                     # the first *correct* one
    assert out.emitted_nodes == ("worker-0", "worker-1") and out.verdict == "tp+fp"


def test_silence_in_a_fault_window_is_a_miss_and_a_false_no_action():
    assert _by_label(_win([Expect("up_cc", "channel-0")])) == {"up_cc": (0, 0, 1),
                                                               "none": (0, 1, 0)}


def test_nominal_window_scores_no_action_and_any_scale_label_against_it():
    assert _by_label(_win([Expect("none")])) == {"none": (1, 0, 0)}
    noisy = _win([Expect("none")], [(30, "up_cl", "worker-0"), (35, "straggler", "worker-0")])
    assert _by_label(noisy) == {"up_cl": (0, 1, 0), "none": (0, 0, 1), "straggler": (0, 1, 0)}


def test_an_expectation_without_a_node_matches_any_node():
    w = _win([Expect("down_cl"), Expect("down_cc")],
             [(25, "down_cl", "worker-1"), (25, "down_cl", "worker-0"),
              (30, "down_cc", "channel-1")])
    assert _by_label(w) == {"down_cl": (1, 0, 0), "down_cc": (1, 0, 0)}
    assert first_correct_s(w) == 25


def test_allowed_outputs_are_neither_hits_nor_false_alarms():
    slow = "worker-2"
    allowed = (Expect("up_cl", slow), Expect("none"))
    w = _win([Expect("straggler", slow)], [(50, "straggler", slow), (55, "up_cl", slow)], allowed)
    outs = {o.label: o for o in score_window(w)}
    assert (outs["straggler"].tp, outs["up_cl"].fp) == (1, 0)
    assert outs["up_cl"].verdict == "allowed" and "none" not in outs
    quiet = _win([Expect("straggler", slow)], [], allowed)
    assert _by_label(quiet) == {"none": (0, 0, 0), "straggler": (0, 0, 1)}
    other = _win([Expect("straggler", slow)], [(50, "up_cl", "worker-0")], allowed)
    assert _by_label(other)["up_cl"] == (0, 1, 0)


def test_outputs_after_the_window_do_not_count():
    w = _win([Expect("up_cl", "worker-0")], [(95, "up_cl", "worker-0")], end=T0 + 90)
    assert _by_label(w) == {"up_cl": (0, 0, 1), "none": (0, 1, 0)}


def test_per_label_sums_windows_and_leaves_undefined_ratios_empty():
    windows = [
        _win([Expect("up_cl", "worker-0")], [(40, "up_cl", "worker-0")], repeat=1),
        _win([Expect("up_cl", "worker-0")], [], repeat=2),
        _win([Expect("none")], [(20, "up_cl", "worker-0")], fault="nominal"),
        _win([Expect("up_cc", "channel-0")], [], fault="flood"),
    ]
    scores = {s.label: s for s in per_label(o for w in windows for o in score_window(w))}
    assert (scores["up_cl"].tp, scores["up_cl"].fp, scores["up_cl"].fn) == (1, 1, 1)
    assert scores["up_cl"].precision == 0.5 and scores["up_cl"].recall == 0.5
    assert scores["up_cc"].precision is None and scores["up_cc"].recall == 0.0
    assert scores["none"].precision == 0.0 and scores["none"].recall == 0.0
    assert list(scores) == ["up_cl", "up_cc", "none"]        # LABELS order
    assert LabelScore("up_cl", 0, 0, 0).precision is None


def test_per_fault_counts_detections_and_takes_the_median_first_time():
    windows = [_win([Expect("up_cl", "w")], [(t, "up_cl", "w")], repeat=i)
               for i, t in enumerate((30, 50, 40), 1)]
    windows.append(_win([Expect("up_cl", "w")], [], repeat=4))
    (f,) = per_fault(windows)
    assert (f.fault, f.windows, f.detected) == ("f", 4, 3)
    assert f.median_first_s == 40


def test_rows_carry_the_csv_columns():
    w = _win([Expect("up_cl", "worker-0")], [(40, "up_cl", "worker-0")])
    assert tuple(score_window(w)[0].row()) == OUTCOME_FIELDS
    assert tuple(LabelScore("up_cl", 1, 0, 0).row()) == LABEL_FIELDS
    assert score_window(w)[0].row()["paper_label"] == "R_up^CL"


def test_an_unknown_label_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Expect("scale_everything")


def test_observations_from_diagnosis_events():
    events = [
        {"ts": 1.0, "event": "diagnosis", "labels": "0 (reliable)", "stragglers": []},
        {"ts": 6.0, "event": "diagnosis", "stragglers": [{"node": "worker-2", "method": "robust"}],
         "labels": [{"label": "up_cl", "rule": "processing_behind", "nodes": ["worker-2"]},
                    {"label": "down_cc", "rule": "queue_idle", "nodes": []}]},
    ]
    assert observations(events) == [
        Observation(6.0, "up_cl", "worker-2", "processing_behind"),
        Observation(6.0, "down_cc", None, "queue_idle"),
        Observation(6.0, "straggler", "worker-2", "robust"),
    ]


def test_the_fault_set_of_the_shipped_topology():
    specs = fi.faults(load_topology())
    assert list(specs) == ["flood", "nominal", "idle", "memory_pressure", "straggler",
                           "cpu_burner"]
    assert specs["cpu_burner"].burn == "worker-0"
    assert specs["cpu_burner"].expected == (Expect("up_cl", "worker-0"),)
    assert specs["flood"].expected == (Expect("up_cc", "channel-0"),) and not specs["flood"].job
    assert specs["straggler"].burn in specs["straggler"].wake
    assert specs["idle"].wake == ("worker-1", "channel-1")
    mem = specs["memory_pressure"]
    assert mem.hog == specs["straggler"].burn and mem.burn is None and mem.expected == ()
    assert Expect("straggler", mem.hog) in mem.allowed and mem.wake == specs["straggler"].wake


def test_main_writes_the_results_with_the_live_windows_stubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("VPP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("VPP_STATE_DIR", str(tmp_path / "state"))
    hits = {"flood": (40, "up_cc", "channel-0"), "cpu_burner": (50, "up_cl", "worker-1"),
            "idle": (30, "down_cl", "worker-1")}

    def fake_window(topo, platform, fault, repeat, rules, work, shared, quiet_since):
        assert "processing_behind" in rules.read_text()
        if fault.name == "straggler":
            return fi.Run(repeat, None, "RuntimeError: no executors")
        obs = (hits[fault.name],) if fault.name in hits else ()
        return fi.Run(repeat, _win(fault.expected, obs, fault.allowed, fault=fault.name,
                                   repeat=repeat), setup_s=5)

    class HealthyPlatform:
        def __init__(self, topo):
            pass

        def status(self):
            return []

    class NoJob:
        def __init__(self, *a):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(fi, "run_window", fake_window)
    monkeypatch.setattr(fi, "restore_initial", lambda *a: None)
    monkeypatch.setattr(fi, "Platform", HealthyPlatform)
    monkeypatch.setattr(fi, "SharedJob", NoJob)
    monkeypatch.setattr(fig11, "node_samples", lambda topo, start, end: [
        fig11.Sample(start + 1, "worker-2", 50.0, 91.0)])
    assert fi.main(["--quick"]) == 0
    out = tmp_path / "results" / "faults"
    rows = list(csv.DictReader((out / "faults.csv").open()))
    assert {(r["fault"], r["label"], r["verdict"]) for r in rows} == {
        ("flood", "up_cc", "tp"), ("nominal", "none", "tp"), ("idle", "down_cl", "tp"),
        ("idle", "down_cc", "fn"), ("cpu_burner", "up_cl", "fn+fp"),
        ("memory_pressure", "none", "allowed")}     # not scored: neither a TP nor an FP
    labels = {r["label"]: r for r in csv.DictReader((out / "labels.csv").open())}
    assert labels["up_cl"]["precision"] == "0.0" and labels["up_cc"]["recall"] == "1.0"
    doc = read_summary(out / "summary.json")
    assert doc["command"] == 'make bench-faults BENCH_ARGS="--quick"' and doc["quick"] is True
    assert doc["paper"] == {"precision": "n/a", "recall": "n/a"}
    assert doc["ours"]["recall"]["down_cc"] == 0.0
    assert doc["ours"]["windows detected"]["flood"] == "1/1"
    assert "straggler r1: RuntimeError: no executors" in doc["notes"]
    assert json.loads((out / "summary.json").read_text())["per_label"][0]["label"] == "up_cl"
    f11 = read_summary(tmp_path / "results" / "fig11" / "summary.json")   # the memory window
    assert f11["ours"]["memory_pressure"]["loaded node memory % (mean)"] == 91.0
    assert (tmp_path / "results" / "fig11" / "fig11.png").stat().st_size > 0


def test_main_refuses_a_platform_that_is_not_up(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    monkeypatch.setenv("VPP_RESULTS", str(tmp_path / "results"))
    down = SimpleNamespace(node=SimpleNamespace(name="channel-0", initial_state="active"),
                           health="down")
    monkeypatch.setattr(fi, "Platform", lambda topo: SimpleNamespace(status=lambda: [down]))
    monkeypatch.setattr(fi, "run_window", lambda *a: pytest.fail("a window ran"))
    assert fi.main(["--quick"]) == 2
    assert "channel-0 not healthy" in capsys.readouterr().err
    assert not (tmp_path / "results" / "faults").exists()


def test_main_stops_when_the_platform_goes_down_and_keeps_what_ran(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("VPP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("VPP_STATE_DIR", str(tmp_path / "state"))
    down = SimpleNamespace(node=SimpleNamespace(name="channel-0", initial_state="active"),
                           health="down")
    health = iter([[], [], [down]])        # pre-flight, after window 2, after window 3
    monkeypatch.setattr(fi, "Platform",
                        lambda topo: SimpleNamespace(status=lambda: next(health)))
    ran = []

    def fake_window(topo, platform, fault, repeat, *rest):
        ran.append(fault.name)
        if fault.name == "flood":
            return fi.Run(repeat, _win(fault.expected, [(40, "up_cc", "channel-0")],
                                       fault=fault.name))
        return fi.Run(repeat, None, "ProbableAuthenticationError: 403")

    monkeypatch.setattr(fi, "run_window", fake_window)
    monkeypatch.setattr(fi, "restore_initial", lambda *a: (_ for _ in ()).throw(OSError("x")))
    monkeypatch.setattr(fi, "SharedJob", lambda *a: SimpleNamespace(stop=lambda: None))
    assert fi.main(["--quick"]) == 0
    assert ran == ["flood", "nominal", "idle"]
    doc = read_summary(tmp_path / "results" / "faults" / "summary.json")
    assert "stopped after window 3 of 6: channel-0 not healthy" in doc["notes"]
    assert doc["ours"]["windows detected"] == {"flood": "1/1"}


def test_fig11_rows_count_the_evaluations_that_flagged_each_node():
    w = _win((), [(10, "straggler", "worker-2"), (15, "straggler", "worker-2"),
                  (15, "up_cl", "worker-2"), (20, "straggler", "worker-1")],
             fault="straggler")
    samples = [fig11.Sample(T0 + t, n, cpu, 40.0) for t in (5, 10)
               for n, cpu in (("worker-0", 30.0), ("worker-1", 40.0), ("worker-2", 98.0))]
    rows = fig11.node_rows(w, "worker-2", samples, n_evals=10)
    by = {r["node"]: r for r in rows}
    assert by["worker-2"]["flagged"] == 2 and by["worker-2"]["flagged_share"] == 0.2
    assert by["worker-2"]["loaded"] == 1 and by["worker-2"]["cpu_mean"] == 98.0
    assert by["worker-1"]["flagged"] == 1 and by["worker-0"]["flagged"] == 0
    (s,) = fig11.summarise(rows).values()
    assert s["loaded node cpu % (mean)"] == 98.0 and s["peer nodes cpu % (mean)"] == 35.0
    assert s["evaluations flagging the loaded node"] == 0.2
    assert s["evaluations flagging a peer node"] == 0.05
    assert s["windows with the loaded node flagged"] == 1
