"""``make retrain``: train the resource model from real history in InfluxDB.

    python -m autoscaler.retrain --since 2h            # the last two hours
    python -m autoscaler.retrain --start 2026-12-01T10:00:00Z --end 2026-12-01T12:00:00Z

Reads the model's input measurements (``autoscaler.features.INPUTS``) over the range, keeps the
telemetry queues only, writes the exported points next to the artifacts (``--export``) so the
training is reproducible, then trains, evaluates on held-out runs and writes the next
versioned artifact + model card and moves ``latest.json`` to it. A running orchestrator picks
the new model up at its next step.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from autoscaler.features import INPUTS
from autoscaler.model.capacity import CapacityError, load_capacity
from autoscaler.model.train import POINTER, model_dir, summary, train_from_points
from diagnoser.service import telemetry_or_other
from infra.topology import load_topology
from monitor import history

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--since must look like 90m, 2h or 1d, got {text!r}")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO time like 2026-12-01T10:00:00Z, "
                                         f"got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autoscaler.retrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rng = ap.add_mutually_exclusive_group(required=True)
    rng.add_argument("--since", type=parse_duration, help="this much history up to now")
    rng.add_argument("--start", type=parse_time, help="ISO start (with --end)")
    ap.add_argument("--end", type=parse_time, help="ISO end (default: now)")
    ap.add_argument("--out", type=Path, default=None, help="artifacts dir (default: shipped)")
    ap.add_argument("--export", type=Path, default=None,
                    help="write the exported points here as JSONL (default: next to the model)")
    ap.add_argument("--dry-run", action="store_true", help="evaluate only, write no model")
    args = ap.parse_args(argv)
    end = args.end or time.time()
    start = end - args.since if args.since is not None else args.start
    if start >= end:
        ap.error("--start must be before --end")
    topo = load_topology()
    try:
        cap = load_capacity()
    except CapacityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    print(f"reading history {datetime.fromtimestamp(start).isoformat()} .. "
          f"{datetime.fromtimestamp(end).isoformat()} from InfluxDB", flush=True)
    points = [p for p in history.fetch(topo, INPUTS, int(start * 1e9), int(end * 1e9))
              if telemetry_or_other(p)]
    print(f"{len(points)} points in {time.monotonic() - t0:.1f} s", flush=True)
    out = None if args.dry_run else (args.out or model_dir())
    export = args.export or ((out or Path(".")) / f"history-{int(start)}-{int(end)}.jsonl")
    export.write_text("".join(json.dumps(p) + "\n" for p in points))
    try:
        report = train_from_points(points, topology=topo, capacity=cap, out_dir=out,
                                   time_unit="ns",
                                   source={"influxdb": topo.influx_url, "start": start,
                                           "end": end, "export": str(export)})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(report.card))
    if report.artifact is not None:
        print(f"wrote {report.artifact} and {report.artifact.parent / POINTER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
