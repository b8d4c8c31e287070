"""Every notebook under notebooks/ runs headless (nbclient + ipykernel) against a synthetic
quick-mode results folder (``VPP_RESULTS``) without a cell error, and against an empty one by
skipping each section with "no results yet: run make bench".

The kernel is this interpreter (the project venv): a kernelspec written to a temporary folder
names ``sys.executable`` explicitly, so nothing has to be registered beforehand."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from bench import (
    fault_scoring,
    fig7_model,
    fig8_energy,
    fig11_stragglers,
    report,
    stream_capacity,
)
from bench.common import write_csv

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_model_fig7.ipynb", "02_pipeline_fig9_fig10.ipynb",
            "03_diagnoser_fig11_table4.ipynb", "04_autoscaler_fig12_fig13.ipynb",
            "05_energy_fig8.ipynb"]
SKIP_LINE = "no results yet: run make bench"
KERNEL = "vpp-test-venv"


def _csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _timeline(pool_wakes_at: float, policy: str) -> list[dict]:
    rows = []
    for t in range(0, 120, 5):
        rate = 2000 if t < 40 else 5000
        extra = 1 + (t >= pool_wakes_at)
        rows.append({"time_s": t, "policy": policy, "queue_active": extra,
                     "processing_active": extra, "publish_rate": rate,
                     "input_rate": min(rate, 3500 * extra),
                     "processed_rate": min(rate, 3000 * extra),
                     "lag": max(0, (rate - 3000 * extra) * 5), "queue_cpu_max": 60 + 10 * (t > 40),
                     "processing_cpu_max": 70, "batch_ms": 900 + 100 * (t > 40)})
    return rows


def make_results(root: Path) -> Path:
    """A quick-mode results folder with every CSV the notebooks read, tiny and synthetic; fig7
    and fig8 are produced by the real benches (the shipped model card, a synthetic trace)."""
    fig7_model.main(["--results", str(root), "--quick"])
    util = []
    for i in range(25):
        t = 5.0 * i
        for n in range(3):
            active = n < 1 + (t >= 40) + (t >= 80)
            util.append({"time_s": t, "node": f"worker-{n + 1}", "pool": "processing",
                         "cpu_pct": 80.0 / (1 + (t >= 40) + (t >= 80)) if active else 0.0,
                         "active": int(active)})
        util.append({"time_s": t, "node": "channel-1", "pool": "queue", "cpu_pct": 35.0,
                     "active": 1})
    _csv(root / "fig8" / "utilisation.csv", util)
    fig8_energy.main(["--results", str(root), "--quick"])

    # The columns the benches write (bench.ingest_fig9.run_point, bench.stream_capacity).
    _csv(root / "fig9" / "fig9.csv", [
        {"ders": d, "interval_s": 10.0, "offered_per_s": d / 10, "generated": d * 4,
         "confirmed": d * 4, "confirmed_per_s": d / 10 * 0.99, "dropped": 0, "unconfirmed": 0,
         "max_schedule_lag_ms": 50 + d / 100, "gateway_cpu_pct_of_core": 5 + d / 1000}
        for d in (10, 100, 1000, 10000)])
    steps = [stream_capacity.judge(stream_capacity.Step(
        w, r, r * 40, r * 0.99, r * 40, True, 2.0, 1500 + max(0, r - 250 * w) * 40,
        3000 + max(0, r - 250 * w) * 80, 5000 + max(0, r - 250 * w) * 90,
        max(0, r - 250 * w) * 20), 10_000) for w in (1, 2) for r in (100, 300, 600)]
    _csv(root / "stream" / "steps.csv", [asdict(s) for s in steps])
    _csv(root / "stream" / "capacity.csv", [
        {"workers": w, "max_sustained_per_s": 700.0 * w,
         "max_within_deadline_per_s": stream_capacity.max_within_deadline(
             [s for s in steps if s.workers == w])} for w in (1, 2)])
    (root / "fig10").mkdir(parents=True, exist_ok=True)
    write_csv(root / "fig10" / "fig10.csv", stream_capacity.fig10_rows(
        [s for s in steps if s.workers == 1]), stream_capacity.FIG10_FIELDS)
    _csv(root / "table4" / "table4.csv", [
        {"component": "monitor agent", "cpu_pct_of_core": 1.2, "mem_mb": 40, "mem_pct": 0.9,
         "samples": 60},
        {"component": "diagnoser", "cpu_pct_of_core": 2.1, "mem_mb": 70, "mem_pct": 1.5,
         "samples": 60}])
    (root / "fig11").mkdir(parents=True, exist_ok=True)
    write_csv(root / "fig11" / "fig11_timeline.csv", [
        {"fault": f, "repeat": 1, "t_s": t, "node": n, "cpu": 30 + t * (n == "worker-2"),
         "memory": 40 + t * (n == "worker-2") / 2}
        for f in fig11_stragglers.FAULTS for t in range(0, 60, 10)
        for n in ("worker-0", "worker-2")], fig11_stragglers.TIMELINE_FIELDS)
    write_csv(root / "fig11" / "fig11_stragglers.csv", [
        {"fault": "straggler", "repeat": 1, "t_s": 41.0, "node": "worker-2",
         "method": "stage_relative"}], fig11_stragglers.FLAG_FIELDS)
    write_csv(root / "fig11" / "fig11.csv", [
        {"fault": "straggler", "repeat": 1, "resource": "cpu", "node": n, "loaded": int(hot),
         "cpu_mean": 99.0 if hot else 30.0, "memory_mean": 40.0, "evaluations": 18,
         "flagged": 10 * hot, "flagged_share": 0.556 * hot}
        for n, hot in (("worker-0", False), ("worker-2", True))], fig11_stragglers.NODE_FIELDS)
    _csv(root / "fig12" / "fig12_timeline.csv",
         _timeline(45, "decision_tree") + _timeline(70, "threshold"))
    _csv(root / "fig13" / "fig13_timeline.csv", _timeline(42, "decision_tree"))
    _csv(root / "policies" / "policies.csv", [
        {"scenario": s, "policy": p, "lost": lost, "time_to_reliable_s": 20 + lost,
         "under_provisioned_s": lost / 2, "node_seconds": 300 + lost, "reversals": lost % 3}
        for s in ("step", "bursts") for p, lost in (("decision_tree", 0), ("threshold", 40))])
    windows = [fault_scoring.Window(f, 1, 0.0, 90.0, (fault_scoring.Expect(lab, node),),
                                    (fault_scoring.Observation(t, lab, node),))
               for f, lab, node, t in (("cpu_burner", "up_cl", "worker-0", 41.0),
                                       ("flood", "up_cc", "channel-0", 56.0),
                                       ("idle", "down_cl", None, 95.0))]
    outcomes = [o for w in windows for o in fault_scoring.score_window(w)]
    (root / "faults").mkdir(parents=True, exist_ok=True)
    write_csv(root / "faults" / "faults.csv", [o.row() for o in outcomes],
              fault_scoring.OUTCOME_FIELDS)
    write_csv(root / "faults" / "labels.csv",
              [s.row() for s in fault_scoring.per_label(outcomes)], fault_scoring.LABEL_FIELDS)
    for exp in ("fig9", "fig10", "stream", "fig11", "fig12", "fig13", "policies", "table4",
                "faults"):
        report.write_summary(root / exp, title=f"synthetic {exp}", command="make bench",
                             quick=True, paper={"m": 1.0}, ours={"m": 0.9},
                             files=sorted(p.name for p in (root / exp).glob("*.csv")))
    report.write_report(root, quick=True, machine={"CPU": "synthetic"})
    return root


@pytest.fixture(scope="module")
def synthetic_results(tmp_path_factory) -> Path:
    return make_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    kernels = tmp_path_factory.mktemp("kernels")
    spec = kernels / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "project venv (tests)", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


@pytest.fixture()
def jupyter_env(tmp_path, monkeypatch):
    # Keep the kernel's runtime files and IPython profile out of the user's home.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws PNGs
    monkeypatch.delenv("VPP_RESULTS", raising=False)


def run_notebook(path: Path, results: Path, specs: KernelSpecManager,
                 monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("VPP_RESULTS", str(results))
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=120, startup_timeout=60, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_notebooks_present_and_stripped():
    assert [p.name for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        assert "VPP_RESULTS" in nb.cells[1].source


def test_synthetic_results_follow_the_contract(synthetic_results):
    for exp in ("fig7", "fig8", "table5", "fig12"):
        doc = report.read_summary(synthetic_results / exp / "summary.json")
        assert doc["quick"] is True
        assert all((synthetic_results / exp / f).is_file() for f in doc["files"])
    text = (synthetic_results / "REPORT.md").read_text()
    assert "missing: no" in text  # platform has no summary in the synthetic folder
    assert "## fig8: Energy vs active node count" in text


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_on_results(name, synthetic_results, kernel_specs, jupyter_env,
                                  monkeypatch):
    nb = run_notebook(ROOT / "notebooks" / name, synthetic_results, kernel_specs, monkeypatch)
    assert not _errors(nb)
    text = _text(nb)
    assert SKIP_LINE not in text, f"{name} skipped a section although its CSV exists"
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= 2, f"{name} drew {figures} figure(s)"
    assert str(synthetic_results.resolve()) in text


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_skips_without_results(name, tmp_path, kernel_specs, jupyter_env, monkeypatch):
    empty = tmp_path / "no-results"
    empty.mkdir()
    nb = run_notebook(ROOT / "notebooks" / name, empty, kernel_specs, monkeypatch)
    assert not _errors(nb)
    text = _text(nb)
    assert SKIP_LINE in text
    assert not any("image/png" in o.get("data", {}) for c in nb.cells
                   for o in c.get("outputs", []) if c.cell_type == "code"
                   and "Eq. 18" not in c.source)


def test_kernel_is_this_interpreter(kernel_specs):
    assert kernel_specs.get_kernel_spec(KERNEL).argv[0] == sys.executable


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_on_the_committed_results(name, kernel_specs, jupyter_env, monkeypatch):
    """The synthetic folder follows the benches' columns by hand; this catches any drift: every
    notebook also runs on what `make bench` really left in results/ (sections whose CSV is not
    there yet skip)."""
    real = ROOT / "results"
    if not real.is_dir():
        pytest.skip("no results/ folder in this checkout")
    nb = run_notebook(ROOT / "notebooks" / name, real, kernel_specs, monkeypatch)
    assert not _errors(nb), _errors(nb)
