"""``make bench-ingest``: Fig. 9, confirmed publishing rate against the number of DERs.

    python -m bench.ingest_fig9 [--quick] [--ders 10,100,1000,10000] [--seconds 40]

Each point runs ``python -m sensors_sim run --ders N --interval 10`` (one reading per DER every
10 s, the paper's sensor rate) for ``--seconds`` against the live channel-0 and reads the fleet's
summary: readings generated, confirmed by the broker, dropped (buffer overflow) and the largest
schedule lag (how late the slowest reading left). The gateway's CPU comes from the child's
rusage. Fig. 9 of the paper shows the message rate growing linearly with the sensors; the
summary reports the slope and the worst deviation from a line through the origin.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from bench.common import results_dir, write_csv
from bench.report import write_summary
from infra.state import ROOT, state_dir

INTERVAL_S = 10.0


def run_point(ders: int, seconds: float) -> dict[str, object]:
    summary = state_dir() / "bench" / f"fig9-{ders}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "sensors_sim", "run", "--ders", str(ders),
                    "--interval", str(INTERVAL_S), "--duration", str(seconds), "--no-metrics",
                    "--summary", str(summary)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 180)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = json.loads(summary.read_text())["total"]
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run_s = float(total["wall_s"])
    return {"ders": ders, "interval_s": INTERVAL_S, "offered_per_s": ders / INTERVAL_S,
            "generated": total["generated"], "confirmed": total["confirmed"],
            "confirmed_per_s": round(total["confirmed"] / run_s, 2),
            "dropped": total["dropped_overflow"], "unconfirmed": total["unconfirmed_at_exit"],
            "max_schedule_lag_ms": total["max_schedule_lag_ms"],
            "gateway_cpu_pct_of_core": round(100 * cpu_s / wall, 1)}


def linearity(rows: list[dict[str, object]]) -> tuple[float, float]:
    """Slope of confirmed/s over DERs (least squares through 0) and the worst relative
    deviation of a point from that line."""
    xs = [float(r["ders"]) for r in rows]
    ys = [float(r["confirmed_per_s"]) for r in rows]
    slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    worst = max(abs(y - slope * x) / (slope * x) for x, y in zip(xs, ys, strict=True))
    return slope, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest_fig9", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 and 1,000 DERs, 20 s each")
    ap.add_argument("--ders", default=None, help="comma list (default 10,100,1000,10000)")
    ap.add_argument("--seconds", type=float, default=None, help="per point (default 40)")
    args = ap.parse_args(argv)
    try:
        counts = [int(x) for x in (args.ders or ("10,1000" if args.quick
                                                 else "10,100,1000,10000")).split(",")]
    except ValueError:
        ap.error(f"--ders must be a comma list of integers, got {args.ders!r}")
    if any(c < 1 for c in counts):
        ap.error("--ders: every count must be >= 1")
    seconds = args.seconds or (20.0 if args.quick else 40.0)
    t_start = time.monotonic()
    rows = []
    for n in counts:
        print(f"  {n} DERs for {seconds:.0f} s ...", flush=True)
        rows.append(run_point(n, seconds))
        print(f"    {rows[-1]}", flush=True)
    out = results_dir("fig9")
    write_csv(out / "fig9.csv", rows)
    slope, worst = linearity(rows)
    _plot(out, rows, slope)
    write_summary(out, title="Fig. 9: confirmed readings/s against number of DERs",
                  command="make bench-ingest" + (" BENCH_ARGS=--quick" if args.quick else ""),
                  paper={"shape": "linear in the number of sensors"},
                  ours={"slope readings/s per DER": round(slope, 4),
                        "worst deviation from linear": round(worst, 3),
                        "dropped": sum(int(r["dropped"]) for r in rows),
                        **{f"confirmed/s at {r['ders']} DERs": r["confirmed_per_s"]
                           for r in rows},
                        **{f"gateway CPU % at {r['ders']} DERs": r["gateway_cpu_pct_of_core"]
                           for r in rows}},
                  quick=args.quick, duration_s=time.monotonic() - t_start,
                  notes=f"One reading per DER every {INTERVAL_S:.0f} s; one gateway process, "
                        "one AMQP connection, confirms pipelined.",
                  files=["fig9.csv", "fig9.png"])
    return 0


def _plot(out, rows, slope) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["ders"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [r["confirmed_per_s"] for r in rows], "o-", label="confirmed/s")
    ax.plot(xs, [slope * x for x in xs], "--", label=f"linear, {slope:.3f}/s per DER")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("DERs (1 reading / 10 s each)")
    ax.set_ylabel("readings/s confirmed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fig9.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
