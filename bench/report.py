"""Build ``results/REPORT.md`` from what the experiments left under ``results/``.

    python -m bench.report [--results DIR] [--quick]

DIR defaults to ``$VPP_RESULTS`` or ``results/`` at the repository root. ``--quick`` only labels
the report as a quick run (smaller sweeps, indicative numbers); it changes nothing else.

The contract between an experiment and this report
---------------------------------------------------
Every experiment writes its files into ``results/<exp>/`` and, last, ``results/<exp>/summary.json``
(through :func:`write_summary`), a JSON object::

    {
      "experiment": "fig12",                  # the folder name under results/
      "title": "Queue-level autoscaler",      # one line, shown as the section heading
      "paper": {"<metric>": 0.874 | "text"},  # what the paper reports (number or text); may be {}
      "ours":  {"<metric>": 0.91 | "text" | {"<label>": 0.9, ...}},   # what we measured
      "command": "make bench-autoscaler",     # how to reproduce it
      "quick": false,                         # true: a quick (reduced) run
      "started": "2026-12-01T10:50:07+00:00", # ISO 8601, when the experiment started
      "duration_s": 812.4,                    # how long it ran
      "notes": "markdown text",               # caveats, deviations from the paper, units
      "files": ["fig12.csv", "fig12.png"]     # relative to results/<exp>/, CSV first then PNG
    }

The report lines up ``paper`` and ``ours`` by metric name in one table ("metric | paper |
ours"): use the same key on both sides when the numbers are comparable, and a key on one side
only when there is nothing to compare with. A value in ``ours`` may be a flat mapping (e.g. one
number per pool: ``{"queue": 0.94, "processing": 0.92}``), shown as ``queue 0.94; processing
0.92``. Extra top-level keys are kept in the file and ignored here.

The report names the machine, then lists the experiments in a fixed order (:data:`EXPECTED`;
unknown ones follow alphabetically) with the metric table, the command, and links to the files
(PNGs are also shown inline); an expected experiment without a ``summary.json`` gets a "missing"
line (listing whatever files its folder does hold).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform as pyplatform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import cpu_model

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "summary.json"
REPORT = "REPORT.md"

# The experiments `make bench` is meant to produce, in report order, with a short description
# for the "missing" line.
EXPECTED: dict[str, str] = {
    "platform": "wake/sleep latency of dormant nodes (pause vs stop)",
    "fig7": "resource model: precision, recall, F1, accuracy",
    "fig8": "power model (Eq. 17-19): energy vs active node count",
    "fig9": "message rate and data size vs number of sensors",
    "queue": "one channel's capacity while a stream consumer drains it (capacity.yaml)",
    "fig10": "fixed cluster: delay and drops vs offered data rate",
    "stream": "streaming job: end-to-end latency, max sustained rate per worker count",
    "fig11": "stragglers under high CPU / memory utilisation",
    "fig12": "orchestrator: queue-level autoscaler",
    "fig13": "orchestrator: processing-level autoscaler",
    "policies": "scaling policies compared (decision tree vs baselines)",
    "table4": "overhead of monitoring and root-cause analyser",
    "table5": "dynamic power and energy per machine",
    "faults": "diagnoser: injected faults, precision and recall per label",
}

REQUIRED = ("experiment", "title", "paper", "ours", "command", "quick", "started", "duration_s",
            "notes", "files")


class SummaryError(ValueError):
    """A summary.json that does not follow the contract."""


def default_results() -> Path:
    return Path(os.environ.get("VPP_RESULTS") or ROOT / "results")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- writing ------------------------------------------------------------------------------------

def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays unwrapped, paths as text, NaN/inf as null."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    for attr in ("item", "tolist"):  # numpy scalar / array, without importing numpy
        if hasattr(obj, attr):
            return _jsonable(getattr(obj, attr)())
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    raise TypeError(f"not JSON-serialisable: {obj!r} ({type(obj).__name__})")


def write_summary(exp_dir: str | os.PathLike[str], **fields: Any) -> Path:
    """Write ``exp_dir/summary.json`` (atomically) following the contract of this module.

    ``title`` and ``command`` are required; the others default to: ``experiment`` the folder
    name, ``paper``/``ours`` ``{}``, ``quick`` False, ``started`` now, ``duration_s`` 0.0,
    ``notes`` "", ``files`` []. Values may be numpy scalars (they are unwrapped); non-finite
    floats become null. Returns the path written.
    """
    exp_dir = Path(exp_dir)
    missing = [k for k in ("title", "command") if not fields.get(k)]
    if missing:
        raise SummaryError(f"write_summary({exp_dir.name}): missing {', '.join(missing)}")
    doc: dict[str, Any] = {
        "experiment": exp_dir.name, "title": "", "paper": {}, "ours": {}, "command": "",
        "quick": False, "started": now_iso(), "duration_s": 0.0, "notes": "", "files": [],
    }
    doc.update(fields)
    for key in ("paper", "ours"):
        if not isinstance(doc[key], Mapping):
            raise SummaryError(f"{key} must be a mapping of metric -> value, not {doc[key]!r}")
    if isinstance(doc["files"], (str, os.PathLike)) or not isinstance(doc["files"], Sequence):
        raise SummaryError(f"files must be a list of names, not {doc['files']!r}")
    doc["files"] = [str(f) for f in doc["files"]]
    doc["quick"] = bool(doc["quick"])
    doc["duration_s"] = round(float(doc["duration_s"]), 3)
    exp_dir.mkdir(parents=True, exist_ok=True)
    path = exp_dir / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(doc), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_summary(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SummaryError(f"unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise SummaryError("not a JSON object")
    absent = [k for k in ("title", "paper", "ours", "command") if k not in doc]
    if absent:
        raise SummaryError(f"missing keys: {', '.join(absent)}")
    for key in ("paper", "ours"):
        if not isinstance(doc[key], dict):
            raise SummaryError(f"{key} is not an object")
    doc.setdefault("experiment", path.parent.name)
    doc.setdefault("files", [])
    doc.setdefault("notes", "")
    return doc


# -- the machine --------------------------------------------------------------------------------

def _run(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """CPU model, cores, memory (from /proc), kernel, OS, Docker, Python and pyspark versions.
    Docker is asked with the read-only ``docker version --format``."""
    cpu = cpu_model()
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    osname = pyplatform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    server = _run(["docker", "version", "--format", "{{.Server.Version}}"])
    client = _run(["docker", "version", "--format", "{{.Client.Version}}"])
    docker = (f"engine {server}, client {client}" if server
              else (f"client {client}, engine not answering" if client else "not available"))
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "memory": mem,
        "kernel": pyplatform.release(),
        "OS": osname,
        "Docker": docker,
        "Python": f"{pyplatform.python_version()} ({sys.executable})",
        "pyspark": _version("pyspark"),
    }


# -- formatting ---------------------------------------------------------------------------------

def fmt(value: Any) -> str:
    """One table cell: numbers rounded for reading, mappings as 'k v; k v', text escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {fmt(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def metric_rows(paper: Mapping[str, Any], ours: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Paper's metrics first in their order, then the ones only we report."""
    keys = list(paper) + [k for k in ours if k not in paper]
    return [(fmt(k), fmt(paper.get(k)), fmt(ours.get(k))) for k in keys]


def _files_present(exp_dir: Path) -> list[str]:
    return sorted(p.name for p in exp_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def _section(exp: str, doc: Mapping[str, Any], results: Path, quick: bool) -> list[str]:
    lines = [f"## {exp}: {fmt(doc.get('title'))}", ""]
    mode = "quick" if doc.get("quick") else "full"
    meta = [f"mode: {mode}"]
    if doc.get("started"):
        meta.append(f"started {doc['started']}")
    if isinstance(doc.get("duration_s"), (int, float)):
        d = float(doc["duration_s"])
        meta.append(f"ran {d:.0f} s" if d >= 10 else f"ran {d:.1f} s")
    lines.append("; ".join(meta) + ".")
    if bool(doc.get("quick")) != quick:
        lines.append(f"(This experiment is a {mode} run, the report a "
                     f"{'quick' if quick else 'full'} one.)")
    lines.append("")
    rows = metric_rows(doc.get("paper") or {}, doc.get("ours") or {})
    if rows:
        lines += [*_table(("metric", "paper", "ours"), rows), ""]
    else:
        lines += ["(no metrics in summary.json)", ""]
    lines += [f"Reproduce: `{doc.get('command')}`", ""]
    if doc.get("notes"):
        lines += [str(doc["notes"]).strip(), ""]
    links, images = [], []
    for name in doc.get("files") or []:
        rel = f"{exp}/{name}"
        if (results / exp / name).is_file():
            links.append(f"[{name}]({rel})")
            if name.lower().endswith((".png", ".svg", ".jpg")):
                images.append(f"![{exp} {name}]({rel})")
        else:
            links.append(f"{name} (missing)")
    if links:
        lines += ["Files: " + ", ".join(links), ""]
    for img in images:
        lines += [img, ""]
    return lines


def load_summaries(results: Path) -> dict[str, dict[str, Any] | SummaryError | None]:
    """exp -> summary, or the SummaryError of a broken one, or None for a folder without one.
    Every expected experiment is a key; unknown folders are keys only if they exist."""
    found: dict[str, dict[str, Any] | SummaryError | None] = {e: None for e in EXPECTED}
    if results.is_dir():
        for sub in sorted(results.iterdir()):
            if not sub.is_dir() or sub.name.startswith((".", "_")):
                continue
            path = sub / SUMMARY
            if path.is_file():
                try:
                    found[sub.name] = read_summary(path)
                except SummaryError as exc:
                    found[sub.name] = exc
            else:
                found.setdefault(sub.name, None)
    return found


def build_report(results: Path, *, quick: bool = False,
                 machine: Mapping[str, str] | None = None) -> str:
    results = Path(results)
    machine = machine if machine is not None else machine_info()
    summaries = load_summaries(results)
    order = list(EXPECTED) + sorted(k for k in summaries if k not in EXPECTED)

    lines = ["# Benchmark report", "",
             f"Generated {now_iso()} by `python -m bench.report"
             f"{' --quick' if quick else ''}` from `{results}`.", ""]
    if quick:
        lines += ["**Quick run**: reduced sweeps and durations; the numbers show the shape of each "
                  "result, not its final value. Run `make bench` without quick mode for those.", ""]
    lines += ["## Machine", "", *_table(("", ""), [(k, fmt(v)) for k, v in machine.items()]), ""]

    overview = []
    for exp in order:
        doc = summaries.get(exp)
        if isinstance(doc, dict):
            status = "quick" if doc.get("quick") else "full"
            overview.append((exp, fmt(doc.get("title")), status))
        elif isinstance(doc, SummaryError):
            overview.append((exp, EXPECTED.get(exp, ""), "broken summary.json"))
        elif exp in EXPECTED or (results / exp).is_dir():
            overview.append((exp, EXPECTED.get(exp, ""), "**missing**"))
    lines += ["## Experiments", "", *_table(("experiment", "what", "status"), overview), ""]

    for exp in order:
        doc = summaries.get(exp)
        if isinstance(doc, dict):
            lines += _section(exp, doc, results, quick)
            continue
        what = EXPECTED.get(exp, "")
        head = f"## {exp}: {what}" if what else f"## {exp}"
        if isinstance(doc, SummaryError):
            lines += [head, "", f"broken: `{exp}/{SUMMARY}` {doc}", ""]
            continue
        lines += [head, "", f"missing: no `{exp}/{SUMMARY}` (run `make bench`)."]
        if (results / exp).is_dir():
            present = _files_present(results / exp)
            if present:
                lines[-1] += " Files present: " + ", ".join(
                    f"[{n}]({exp}/{n})" for n in present) + "."
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: Path, *, quick: bool = False,
                 machine: Mapping[str, str] | None = None) -> Path:
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    text = build_report(results, quick=quick, machine=machine)
    path = results / REPORT
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report",
                                 description="Build results/REPORT.md from results/*/summary.json.")
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default: $VPP_RESULTS or results/)")
    ap.add_argument("--quick", action="store_true", help="label the report as a quick run")
    args = ap.parse_args(argv)
    results = args.results or default_results()
    path = write_report(results, quick=args.quick)
    summaries = load_summaries(results)
    done = sum(isinstance(v, dict) for v in summaries.values())
    missing = [k for k, v in summaries.items() if k in EXPECTED and not isinstance(v, dict)]
    print(f"wrote {path}: {done} experiment(s)"
          + (f"; missing: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
