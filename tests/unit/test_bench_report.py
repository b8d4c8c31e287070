"""bench.report (summary.json contract, REPORT.md), bench.fig7_model and the Eq. 17-19 power
model of bench.fig8_energy, on temporary results folders with tiny synthetic fixtures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import fig7_model, fig8_energy, report
from bench.fig8_energy import (
    build_grid,
    cluster_energy,
    energy_by_active_count,
    node_power,
    per_node,
    server_utilisation,
)

MACHINE = {"CPU": "Test CPU", "cores": "2", "memory": "4.0 GiB", "kernel": "6.0-test",
           "OS": "TestOS", "Docker": "not available", "Python": "3.11", "pyspark": "4.3.0"}


def _summary(root: Path, exp: str, **kw) -> Path:
    fields = {"title": f"title of {exp}", "command": f"make bench-{exp}", "quick": True,
              "started": "2026-01-01T00:00:00+00:00", "duration_s": 1.5, **kw}
    return report.write_summary(root / exp, **fields)


# -- summary.json -------------------------------------------------------------------------------

def test_write_summary_contract(tmp_path):
    path = report.write_summary(
        tmp_path / "fig12", title="Queue autoscaler", command="make bench-autoscaler",
        paper={"lost": "none after wake"},
        ours={"lost": np.int64(3), "ratio": np.float64(0.5), "nan": float("nan"),
              "per_pool": {"queue": np.float32(0.25)}},
        files=("fig12.csv", Path("fig12.png")), extra_key=[1, 2])
    doc = json.loads(path.read_text())
    assert set(report.REQUIRED) <= set(doc)
    assert doc["experiment"] == "fig12" and doc["quick"] is False
    assert doc["ours"] == {"lost": 3, "ratio": 0.5, "nan": None, "per_pool": {"queue": 0.25}}
    assert doc["files"] == ["fig12.csv", "fig12.png"]
    assert doc["extra_key"] == [1, 2]
    assert isinstance(doc["duration_s"], float) and doc["started"]
    assert not list((tmp_path / "fig12").glob("*.tmp"))
    assert report.read_summary(path)["title"] == "Queue autoscaler"


@pytest.mark.parametrize("bad", [{"command": "x"}, {"title": "x"},
                                 {"title": "x", "command": "y", "ours": [1]},
                                 {"title": "x", "command": "y", "files": "a.csv"}])
def test_write_summary_rejects(tmp_path, bad):
    with pytest.raises(report.SummaryError):
        report.write_summary(tmp_path / "e", **bad)


def test_fmt():
    assert report.fmt(None) == "—"
    assert report.fmt(0.93841) == "0.9384"
    assert report.fmt(123.456) == "123.5"
    assert report.fmt(12345.6) == "12,346"
    assert report.fmt(float("nan")) == "—"
    assert report.fmt(True) == "yes"
    assert report.fmt({"queue": 0.9, "processing": 0.85}) == "queue 0.9; processing 0.85"
    assert report.fmt("a|b\nc") == "a\\|b c"


# -- REPORT.md ----------------------------------------------------------------------------------

@pytest.fixture()
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    _summary(root, "fig12", paper={"lost after wake": 0, "wake s": "a few"},
             ours={"lost after wake": 0, "wake s": 1.06, "reversals": 2},
             files=["fig12.csv", "fig12.png", "gone.csv"], notes="Channel woken at 42 s.")
    (root / "fig12" / "fig12.csv").write_text("time_s,lag\n0,1\n")
    (root / "fig12" / "fig12.png").write_bytes(b"\x89PNG")
    _summary(root, "fig7", paper={"precision": 0.874}, ours={"precision": {"queue": 0.9375}},
             quick=False, files=["fig7.csv"])
    _summary(root, "zzz_extra", paper={}, ours={"x": 1})
    (root / "fig9").mkdir()
    (root / "fig9" / "summary.json").write_text("{not json")
    (root / "platform").mkdir()
    (root / "platform" / "wake_sleep.csv").write_text("node\n")
    return root


def test_report_order_tables_links_and_missing(results):
    text = report.build_report(results, quick=True, machine=MACHINE)
    assert "Test CPU" in text and "6.0-test" in text and "pyspark" in text
    assert "**Quick run**" in text
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    names = [h[3:].split(":")[0] for h in heads if h[3:] not in ("Machine", "Experiments")]
    assert names == [*report.EXPECTED, "zzz_extra"]
    assert "| metric | paper | ours |" in text
    assert "| precision | 0.874 | queue 0.9375 |" in text
    assert "| lost after wake | 0 | 0 |" in text
    assert "| reversals | — | 2 |" in text
    assert "Reproduce: `make bench-fig12`" in text
    assert "[fig12.csv](fig12/fig12.csv)" in text and "![fig12 fig12.png](fig12/fig12.png)" in text
    assert "gone.csv (missing)" in text
    assert "Channel woken at 42 s." in text
    # fig7 is a full run inside a quick report: said so
    fig7 = text.split("## fig7:")[1].split("\n## ")[0]
    assert "mode: full" in fig7 and "full run, the report a quick one" in fig7
    for exp in ("fig8", "fig10", "fig11", "fig13", "policies", "table4", "table5", "faults"):
        section = text.split(f"## {exp}:")[1].split("\n## ")[0]
        assert f"missing: no `{exp}/summary.json`" in section
    platform = text.split("## platform:")[1].split("\n## ")[0]
    assert "missing" in platform and "[wake_sleep.csv](platform/wake_sleep.csv)" in platform
    assert "broken: `fig9/summary.json` unreadable" in text


def test_report_main_writes_file(results, monkeypatch, capsys):
    monkeypatch.setattr(report, "machine_info", lambda: MACHINE)
    assert report.main(["--results", str(results)]) == 0
    text = (results / "REPORT.md").read_text()
    assert text.startswith("# Benchmark report") and "**Quick run**" not in text
    out = capsys.readouterr().out
    assert "missing:" in out and "fig8" in out


def test_report_on_empty_folder(tmp_path):
    text = report.build_report(tmp_path / "nothing", machine=MACHINE)
    assert text.count("missing: no `") == len(report.EXPECTED)


def test_machine_info_without_docker(monkeypatch):
    monkeypatch.setattr(report, "_run", lambda cmd: "")
    info = report.machine_info()
    assert info["Docker"] == "not available"
    assert {"CPU", "cores", "memory", "kernel", "Python", "pyspark"} <= set(info)
    assert info["memory"].endswith("GiB")


# -- Fig. 7 -------------------------------------------------------------------------------------

def _card(artifacts: Path) -> None:
    pool = {"accuracy": 0.9, "precision_weighted": 0.91, "recall_weighted": 0.9,
            "f1_weighted": 0.905, "precision_macro": 0.8, "recall_macro": 0.81, "f1_macro": 0.8,
            "under_provisioned": 0.05, "over_provisioned": 0.05, "classes": [1, 2],
            "confusion": [[8, 1], [1, 10]]}
    card = {"version": 3, "pools": {"queue": [1, 2]},
            "data": {"source": "synthetic"}, "capacity": {"source": {"kind": "provisional"}},
            "evaluation": {"protocol": "GroupKFold", "runs": 2, "rows": 20,
                           "model": {"queue": pool, "both_correct": 0.9},
                           "baselines": {"threshold": {"queue": {**pool, "accuracy": 0.5},
                                                       "both_correct": 0.5}}}}
    artifacts.mkdir()
    (artifacts / "model-v3.json").write_text(json.dumps(card))
    (artifacts / "latest.json").write_text(json.dumps({"version": 3, "artifact": "model-v3.joblib",
                                                       "card": "model-v3.json"}))


def test_fig7_from_card(tmp_path):
    _card(tmp_path / "artifacts")
    res = tmp_path / "results"
    assert fig7_model.main(["--results", str(res), "--model-dir", str(tmp_path / "artifacts")]) == 0
    out = res / "fig7"
    rows = list(csv.DictReader((out / "fig7.csv").open()))
    got = {(r["model"], r["pool"], r["metric"]): float(r["value"]) for r in rows}
    assert got[("decision_tree", "queue", "precision")] == 0.91
    assert got[("decision_tree", "queue", "f1_macro")] == 0.8
    assert got[("threshold", "queue", "accuracy")] == 0.5
    assert got[("decision_tree", "both", "accuracy")] == 0.9
    conf = list(csv.DictReader((out / "fig7_confusion.csv").open()))
    assert len(conf) == 8 and sum(int(r["count"]) for r in conf) == 40
    for name in ("fig7.png", "fig7_confusion_queue.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / "summary.json").read_text())
    assert doc["paper"] == {"precision": 0.874, "recall": 0.913, "f1": 0.912, "accuracy": 0.927}
    assert doc["ours"]["accuracy"] == {"queue": 0.9}
    assert "provisional" in doc["notes"]
    assert all((out / f).is_file() for f in doc["files"])


def test_fig7_reads_the_shipped_card():
    card, path = fig7_model.load_card(fig7_model.ARTIFACTS)
    rows = fig7_model.metric_rows(card)
    assert {r["pool"] for r in rows} >= {"queue", "processing"}
    assert all(0 <= r["value"] <= 1 for r in rows)
    assert path.name.startswith("model-v")


# -- the power model (Eq. 17-19) ----------------------------------------------------------------

def test_node_power_is_eq18():
    p_max = 70.0
    for u in (0.0, 0.25, 0.5, 1.0):
        assert node_power(u, 0.7 * p_max, p_max) == pytest.approx(0.7 * p_max + 0.3 * p_max * u)
    assert node_power(0.0) == pytest.approx(fig8_energy.P_IDLE_W) == pytest.approx(49.0)
    assert node_power(1.0) == pytest.approx(70.0)
    assert node_power(1.7) == node_power(1.0) and node_power(-1) == node_power(0.0)
    arr = node_power(np.array([0.0, 1.0]), 10.0, 20.0)
    assert arr.tolist() == [10.0, 20.0]
    with pytest.raises(ValueError):
        node_power(0.5, 80.0, 70.0)


def test_server_utilisation_is_eq17():
    assert server_utilisation([0.5, 0.25], 1.0) == 0.75
    assert server_utilisation([1.0, 1.0], 4.0, hosted=[1, 0]) == 0.25
    assert server_utilisation([3.0], 2.0) == 1.0
    with pytest.raises(ValueError):
        server_utilisation([1.0], 0.0)


def test_cluster_energy_is_eq19():
    t = [0.0, 50.0, 100.0]
    # two nodes at constant utilisation: sum of power x time
    utils = np.array([[0.0, 1.0]] * 3)
    assert cluster_energy(t, utils, p_idle=50, p_max=100) == pytest.approx((50 + 100) * 100)
    # a linear ramp 0 -> 1: the trapezoid is exact
    assert cluster_energy([0, 10], [0.0, 1.0], p_idle=0, p_max=10) == pytest.approx(50.0)
    # a sleeping node draws p_sleep
    active = np.array([[True, False]] * 3)
    assert cluster_energy(t, utils, active, p_idle=50, p_max=100) == pytest.approx(50 * 100)
    assert cluster_energy(t, utils, active, p_idle=50, p_max=100, p_sleep=5) == \
        pytest.approx(55 * 100)
    assert cluster_energy([0.0], [0.5]) == 0.0


def _util_rows(step: float = 10.0) -> list[dict]:
    """worker-1 always active at 50 %; worker-2 active from t=100 at 100 %; 200 s."""
    rows = []
    for i in range(21):
        t = i * step
        rows.append({"time_s": t, "node": "worker-1", "pool": "processing", "cpu_pct": 50.0,
                     "active": True})
        rows.append({"time_s": t, "node": "worker-2", "pool": "processing",
                     "cpu_pct": 100.0 if t >= 100 else 0.0, "active": t >= 100})
        rows.append({"time_s": t, "node": "channel-1", "pool": "queue", "cpu_pct": 120.0,
                     "active": True})
    return rows


def test_energy_by_active_count_adds_up():
    grid = build_grid(_util_rows())
    rows = energy_by_active_count(grid)
    assert [r["active_nodes"] for r in rows] == [2, 3]
    assert sum(r["duration_s"] for r in rows) == pytest.approx(200.0)
    total = cluster_energy(grid.times, grid.util, grid.active)
    assert sum(r["energy_j"] for r in rows) == pytest.approx(total, abs=0.1)
    assert rows[1]["mean_power_w"] > rows[0]["mean_power_w"]
    # channel-1's 120 % is clipped: 70 W; worker-1 at 50 %: 59.5 W; plus the trapezoid's half
    # of worker-2 waking at the end of the last 2-node interval [90, 100]: 70 W x 10 s / 2
    assert rows[0]["mean_power_w"] == pytest.approx(70 + 59.5 + 350 / 100, abs=0.01)
    proc = energy_by_active_count(grid.select("processing"))
    assert [r["active_nodes"] for r in proc] == [1, 2]


def test_grid_node_that_stops_reporting_is_asleep():
    rows = [r for r in _util_rows() if not (r["node"] == "channel-1" and r["time_s"] > 50)]
    grid = build_grid(rows)
    j = grid.nodes.index("channel-1")
    assert grid.active[grid.times <= 50, j].all()
    assert not grid.active[grid.times >= 70, j].any()


def test_per_node_table():
    nodes = {r["node"]: r for r in per_node(build_grid(_util_rows()))}
    assert nodes["worker-1"]["active_s"] == pytest.approx(200.0)
    assert nodes["worker-1"]["energy_j"] == pytest.approx(59.5 * 200)
    assert nodes["worker-2"]["active_s"] == pytest.approx(100.0)
    assert nodes["worker-2"]["max_power_w"] == pytest.approx(70.0)


def _write_util(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fig8_energy.COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "active": int(r["active"])})


def test_fig8_cli_without_input_writes_nothing(tmp_path, capsys):
    assert fig8_energy.main(["--results", str(tmp_path)]) == 0
    assert "not found" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_fig8_cli_end_to_end(tmp_path, monkeypatch):
    _write_util(tmp_path / "fig8" / "utilisation.csv", _util_rows())
    assert fig8_energy.main(["--results", str(tmp_path), "--quick"]) == 0
    energy = list(csv.DictReader((tmp_path / "fig8" / "fig8_energy.csv").open()))
    assert {r["pool"] for r in energy} == {"all", "processing", "queue"}
    doc = json.loads((tmp_path / "fig8" / "summary.json").read_text())
    assert doc["quick"] is True and doc["ours"]["energy vs node count"] == "increases"
    assert doc["p_max_w"] == 70.0 and math.isclose(doc["p_idle_w"], 49.0)
    assert all((tmp_path / "fig8" / f).is_file() for f in doc["files"])
    t5 = json.loads((tmp_path / "table5" / "summary.json").read_text())
    assert t5["paper"]["dynamic power per node"] == "55-70 W"
    assert t5["ours"]["energy vs makespan"] == "more time, more energy"
    assert (tmp_path / "table5" / "table5.png").is_file()
    monkeypatch.setattr(report, "machine_info", lambda: MACHINE)
    text = report.build_report(tmp_path, quick=True, machine=MACHINE)
    assert "| energy vs node count | increases | increases |" in text
    assert "## table5: Dynamic power" in text
    # No stream sweep in this folder: execution time says where it would come from.
    assert doc["ours"]["execution time vs node count"].startswith("not measured here")
    assert doc["ours"]["straggler frequency vs node count"].startswith("not measured here")


def test_fig8_execution_time_comes_from_the_stream_sweep(tmp_path):
    _write_util(tmp_path / "fig8" / "utilisation.csv", _util_rows())
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "capacity.csv").write_text(
        "workers,max_sustained_per_s,batch_median_s\n1,1530.9,12.1\n2,2361.2,8.3\n"
        "3,2569.0,\n")   # a count whose saturation step had no duration is left out
    assert fig8_energy.main(["--results", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "fig8" / "summary.json").read_text())["ours"]
    assert ours["execution time vs node count"] == "decreases"
    assert ours["batch duration while saturated (s)"] == {"1 workers": 12.1, "2 workers": 8.3}


def test_fig8_straggler_frequency_comes_from_the_stream_sweep(tmp_path):
    _write_util(tmp_path / "fig8" / "utilisation.csv", _util_rows())
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "stragglers.csv").write_text(
        "workers,tasks,autodiagn_share\n1,900,0.08\n2,1200,0.05\n3,1500,\n")
    assert fig8_energy.main(["--results", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "fig8" / "summary.json").read_text())["ours"]
    assert ours["straggler frequency vs node count"] == "decreases"
    assert ours["straggler share of tasks (AutoDiagn rule)"] == {"1 workers": 0.08,
                                                                 "2 workers": 0.05}


def test_execution_time_by_workers_sorts_and_skips_bad_rows():
    rows = [{"workers": "3", "batch_median_s": "6.6"}, {"workers": "1", "batch_median_s": "12"},
            {"workers": "2", "batch_median_s": ""}, {"workers": "x", "batch_median_s": "1"}]
    assert fig8_energy.by_workers(rows, "batch_median_s") == {1: 12.0, 3: 6.6}
