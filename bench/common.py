"""Shared bench plumbing: results folder, machine description, medians, markdown tables."""

from __future__ import annotations

import csv
import os
import platform as pyplatform
import shlex
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def results_dir(name: str) -> Path:
    path = Path(os.environ.get("VPP_RESULTS", ROOT / "results")) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def machine() -> str:
    cpu = cpu_model()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {pyplatform.system()} "
            f"{pyplatform.release()}, Docker engine {docker or '?'}")


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def write_csv(path: Path, rows: Sequence[Mapping[str, object]],
              fields: Sequence[str] | None = None) -> None:
    """Rows as CSV; without ``fields`` the first row's keys (and nothing written if empty)."""
    if not rows and fields is None:
        return
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields if fields is not None else rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV this module wrote (empty when the file does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def make_command(target: str, args: Sequence[str]) -> str:
    """How to reproduce a bench run: its make target with the arguments it was given."""
    return f"make {target}" + (f" BENCH_ARGS={shlex.quote(shlex.join(args))}" if args else "")
