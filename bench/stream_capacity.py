"""``make bench-stream``: the streaming job's capacity and latency (issue 4) and Fig. 10.

    python -m bench.stream_capacity [--quick] [--workers 1,2,3] [--rates 100,200,...]
                                    [--step-s 40] [--deadline-s 10] [--write-capacity]

For each number of active Spark workers (1, 2, 3; the others asleep) the full job (ingest, twin,
aggregates, default triggers) runs on a fresh HDFS root; after an unmeasured warm-up step (the
twin and aggregate queries start once raw data exists) a fleet offers a stepped rate: R
readings/s for ``--step-s``, one step after the other, each step's DERs a group of their own (so
no step's readings can be taken for another's re-sent duplicates). After each step the bench
waits, at most ``--catch-up-s``, until the job committed as many readings as the broker
confirmed; a step whose last readings were committed later than the deadline after the fleet
stopped ends that worker count's sweep (past capacity: every higher step would be too).

Each reading's **commit latency** is exact, not a batch summary: the raw table's file names
carry the micro-batch id (:func:`spark_jobs.commit.batch_prefix`) and the job logs when it
committed each batch, so latency = commit time of its batch - its event time (queueing delay
included). A step is **sustained** when the p95 of that latency is within ``--deadline-s``;
the **maximum sustained rate** of a worker count is the highest step sustained with every lower
step sustained too (resolution: the step size). Readings later than the deadline are Fig. 10's
"not processed within the deadline".

**End-to-end latency** (sensor event time -> twin state visible) at the nominal fleet (the first
step with one worker): for every twin row, the commit time of its twin batch minus the event
time of the DER's newest reading in it.

Writes ``results/stream/`` (steps.csv, capacity.csv, latency.png, summary.json) and
``results/fig10/`` (fig10.csv, fig10.png, summary.json). ``--write-capacity`` also writes the
measured one-worker capacity and the scaling efficiency into autoscaler/model/capacity.yaml
(retrain the model afterwards: ``make retrain``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from autoscaler.realise import restore_initial
from bench.common import results_dir, write_csv
from bench.report import write_summary
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.procs import Proc
from infra.state import ROOT, state_dir
from infra.topology import Topology, load_topology
from ingest.streams import stream_end
from ingest.topology import TELEMETRY_STREAM
from spark_jobs.audit import read_table
from spark_jobs.session import submit_env
from spark_jobs.submit import command

DER_TYPES = ("pv", "wind", "battery", "ev_charger")   # one group of each per step
DERS_PER_TYPE = 5
FULL_RATES = (100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500)
QUICK_RATES = (100, 300, 600)
CAPACITY_FILE = ROOT / "autoscaler" / "model" / "capacity.yaml"


# ---------------------------------------------------------------------------------------------
# pure parts


def step_scenario(group: str, rate: float, step_s: float) -> dict:
    """A fleet offering ``rate`` readings/s for ``step_s``: one group per DER type, the rate
    spread evenly over its DERs (interval 1 s, ``burst`` readings each)."""
    per_der = rate / (len(DER_TYPES) * DERS_PER_TYPE)
    burst = max(1, round(per_der))
    return {"name": group, "description": f"{rate:.0f} readings/s for {step_s:.0f} s",
            "seed": 7, "duration_s": step_s, "defaults": {"interval_s": 1.0},
            "phases": [{"at_s": 0, "note": f"{rate:.0f}/s", "add": [
                {"group": f"{group}{chr(ord('a') + i)}", "der_type": t,
                 "count": DERS_PER_TYPE, "burst": burst}
                for i, t in enumerate(DER_TYPES)]}]}


def step_rows(der_ids, group: str):
    """Mask of the DER ids belonging to a step's groups (``pv-w1s0a-003``)."""
    return der_ids.str.contains(rf"-{re.escape(group)}[a-z]-", regex=True)


def commit_times(job_log_lines: Iterable[str]) -> dict[tuple[str, int], float]:
    """(query, batch id) -> wall time (s) the job logged the batch as committed."""
    out: dict[tuple[str, int], float] = {}
    for line in job_log_lines:
        if '"event":"batch_committed"' not in line:
            continue
        try:
            e = json.loads(line)
            out[(str(e["query"]), int(e["batch_id"]))] = float(e["ts"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def committed_valid(job_log_lines: Iterable[str], since: float) -> int:
    """Valid readings the ingest query committed at or after ``since`` (wall time, s)."""
    n = 0
    for line in job_log_lines:
        if '"event":"batch_committed"' in line and '"query":"ingest"' in line:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if float(e.get("ts", 0)) >= since:
                n += int(e.get("valid", 0))
    return n


def quantile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: a reported latency is one that happened)."""
    if not xs:
        return None
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))])


@dataclass
class Step:
    workers: int
    rate: float                    # offered by the scenario, readings/s
    confirmed: int                 # confirmed by the broker
    offered_per_s: float           # confirmed / the fleet's wall time
    stored: int                    # of this step's readings in the raw table
    caught_up: bool                # the job committed them within --catch-up-s
    catch_up_s: float | None       # from the fleet's end until committed
    latency_p50_ms: float | None   # event time -> raw commit, per reading
    latency_p95_ms: float | None
    latency_max_ms: float | None
    late: int                      # readings committed later than the deadline
    sustained: bool = False


def judge(step: Step, deadline_ms: float) -> Step:
    step.sustained = (step.caught_up and step.stored == step.confirmed
                      and step.latency_p95_ms is not None and step.latency_p95_ms <= deadline_ms)
    return step


def max_sustained(steps: Sequence[Step]) -> float | None:
    """The highest rate sustained with every lower step sustained too."""
    best = None
    for s in sorted(steps, key=lambda s: s.rate):
        if not s.sustained:
            break
        best = s.offered_per_s
    return best


def scaling_efficiency(capacity: Mapping[int, float]) -> float | None:
    """What each added worker adds, as a share of one worker's capacity (mean over the added
    workers measured): capacity(n) = c1 * (1 + (n - 1) * eff)."""
    c1 = capacity.get(1)
    more = [(n, c) for n, c in capacity.items() if n > 1 and c is not None]
    if not c1 or not more:
        return None
    return sum((c / c1 - 1) / (n - 1) for n, c in more) / len(more)


def update_capacity_text(text: str, readings_per_s: float, efficiency: float | None,
                         command_line: str, day: str) -> str:
    """capacity.yaml with the processing pool's measured numbers and source, comments kept."""
    def in_section(section: str, key: str, value: str, body: str) -> str:
        pat = re.compile(rf"(^{section}:\n(?:[ #].*\n|\n)*?  {key}: )([^\n#]*?)(\s*(#.*)?)$", re.M)
        new, n = pat.subn(lambda m: m.group(1) + value + m.group(3), body, count=1)
        if n != 1:
            raise ValueError(f"capacity.yaml: {section}.{key} not found")
        return new

    text = in_section("processing", "readings_per_s", f"{readings_per_s:.0f}", text)
    if efficiency is not None:
        text = in_section("processing", "scaling_efficiency", f"{efficiency:.2f}", text)
    text = in_section("source", "kind", "measured", text)
    text = in_section("source", "command", json.dumps(command_line), text)
    text = in_section("source", "date", day, text)
    return in_section("source", "note", json.dumps(
        "processing measured by bench.stream_capacity; queue still provisional"), text)


FIG10_FIELDS = ("offered_per_s", "delay_p50_s", "delay_p95_s", "delay_max_s", "late_readings",
                "readings")


def fig10_rows(steps: Sequence[Step]) -> list[dict[str, float | int | None]]:
    return [{"offered_per_s": s.offered_per_s, "delay_p50_s": _s(s.latency_p50_ms),
             "delay_p95_s": _s(s.latency_p95_ms), "delay_max_s": _s(s.latency_max_ms),
             "late_readings": s.late, "readings": s.confirmed} for s in steps]


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


# ---------------------------------------------------------------------------------------------
# the live sweep


def _executors(topo: Topology) -> int:
    api = f"http://{topo.bind_host}:{topo.spark.driver_ui_port}/api/v1/applications"
    try:
        apps = requests.get(api, timeout=5).json()
        execs = requests.get(f"{api}/{apps[0]['id']}/executors", timeout=5).json()
    except (requests.RequestException, ValueError, IndexError, KeyError):
        return 0
    return sum(1 for e in execs if e.get("id") != "driver" and e.get("isActive"))


def _wait(what: str, timeout: float, done, job: Proc, job_log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if not job.running():
            raise RuntimeError(f"the stream job exited while waiting for {what}; see {job_log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def _step(work: Path, group: str, rate: float, step_s: float, job: Proc, job_log: Path,
          catch_up_s: float) -> tuple[int, float, bool, float | None]:
    """One fleet step: (confirmed, confirmed/s, committed within catch_up_s, seconds after the
    fleet's end until committed)."""
    scenario = work / f"{group}.yaml"
    scenario.write_text(json.dumps(step_scenario(group, rate, step_s)))
    summary = work / f"{group}.json"
    began = time.time()
    fleet = Proc("fleet", [sys.executable, "-m", "sensors_sim", "run", "--scenario",
                           str(scenario), "--summary", str(summary), "--no-metrics"],
                 work / "fleet.log")
    while fleet.running():
        time.sleep(1)
    total = json.loads(summary.read_text())["total"]
    confirmed, wall = int(total["confirmed"]), float(total["wall_s"])
    ended = time.monotonic()
    while time.monotonic() - ended < catch_up_s and job.running():
        if committed_valid(job_log.read_text(errors="replace").splitlines(), began) >= confirmed:
            return confirmed, confirmed / wall, True, time.monotonic() - ended
        time.sleep(0.5)
    return confirmed, confirmed / wall, False, None


def sweep(topo: Topology, workers: int, rates: Sequence[float], step_s: float,
          catch_up_s: float, deadline_ms: float, work: Path) -> tuple[list[Step], list[float]]:
    """One worker count: (steps, end-to-end twin latencies in ms of the first step)."""
    platform = Platform(topo)
    restore_initial(topo, platform)
    for node in topo.pool_nodes("processing")[1:workers]:
        platform.wake(node)
    work.mkdir(parents=True, exist_ok=True)
    root = f"/bench/stream-{workers}w-{uuid.uuid4().hex[:6]}"
    job_log = work / "job.log"
    job_log.write_text("")
    start = {"channel-0": stream_end(amqp_params(topo, "channel-0", "admin"), TELEMETRY_STREAM)}
    job = Proc("job", command(["--root", f"{topo.hdfs_url}{root}", "--starting-offsets",
                               json.dumps(start)]), job_log, env=submit_env())
    groups: list[tuple[float, str, int, float, bool, float | None]] = []
    try:
        _wait("the job to start", 240,
              lambda: '"event":"started"' in job_log.read_text(errors="replace"), job, job_log)
        _wait(f"{workers} active executors", 180, lambda: _executors(topo) >= workers, job,
              job_log)
        # Warm-up, not measured: the twin and aggregate queries start once the raw table has
        # data, and their first batches hold the worker's core for half a minute.
        warm = _step(work, f"w{workers}warm", rates[0], step_s, job, job_log, 60 + catch_up_s)
        print(f"    {workers} worker(s), warm-up at {rates[0]:.0f}/s: "
              + ("committed" if warm[2] else "NOT committed") + " (not measured)", flush=True)
        for k, rate in enumerate(rates):
            group = f"w{workers}s{k}"
            confirmed, offered, caught, took = _step(work, group, rate, step_s, job, job_log,
                                                     catch_up_s)
            groups.append((rate, group, confirmed, offered, caught, took))
            # The last readings of a step committed later than the deadline after the fleet
            # stopped: past capacity, and every higher step would be too.
            past = not caught or took > deadline_ms / 1000
            print(f"    {workers} worker(s), {rate:.0f}/s: confirmed {confirmed}, "
                  + (f"committed {took:.1f} s after the fleet" if caught
                     else f"not committed within {catch_up_s:.0f} s")
                  + (": past capacity, sweep ends" if past else ""), flush=True)
            if past:
                break
        # The twin runs on its own (slower) trigger: let it commit what ingest committed.
        settled = time.time()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and job.running() and not any(
                q == "twin" and ts > settled + 1 for (q, _b), ts in
                commit_times(job_log.read_text(errors="replace").splitlines()).items()):
            time.sleep(1)
    finally:
        job.stop(signal.SIGTERM)
    lines = job_log.read_text(errors="replace").splitlines()
    commits = commit_times(lines)
    raw = read_table(topo, f"{root}/raw", ["der_id", "ts_ms"], batch_column="batch")
    steps = []
    for rate, group, confirmed, offered, caught, took in groups:
        mine = raw[step_rows(raw["der_id"], group)] if len(raw) else raw
        lat = [commits[("ingest", int(b))] * 1000 - ts
               for b, ts in zip(mine["batch"], mine["ts_ms"], strict=True)
               if ("ingest", int(b)) in commits] if len(mine) else []
        steps.append(judge(Step(workers, rate, confirmed, round(offered, 1), len(mine), caught,
                                None if took is None else round(took, 1),
                                quantile(lat, 0.5), quantile(lat, 0.95),
                                max(lat) if lat else None,
                                sum(1 for x in lat if x > deadline_ms)), deadline_ms))
    twin_lat: list[float] = []
    if groups:
        twin = read_table(topo, f"{root}/twin", ["der_id", "last_ts_ms"], batch_column="batch")
        if len(twin):
            twin = twin[step_rows(twin["der_id"], groups[0][1])]
            twin_lat = [commits[("twin", int(b))] * 1000 - ts
                        for b, ts in zip(twin["batch"], twin["last_ts_ms"], strict=True)
                        if ts is not None and ("twin", int(b)) in commits]
    return steps, twin_lat


# ---------------------------------------------------------------------------------------------
# output


def _plots(out_stream: Path, out_fig10: Path, steps: list[Step], deadline_s: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = [s for s in steps if s.workers == 1]
    if one:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        xs = [s.offered_per_s for s in one]
        ax.plot(xs, [(s.latency_p50_ms or 0) / 1000 for s in one], "o-", label="delay p50")
        ax.plot(xs, [(s.latency_p95_ms or 0) / 1000 for s in one], "s--", label="delay p95")
        ax.axhline(deadline_s, color="grey", lw=0.8, ls=":", label=f"deadline {deadline_s:.0f} s")
        ax.set_xlabel("input rate, readings/s (1 worker)")
        ax.set_ylabel("event time -> committed, s")
        ax2 = ax.twinx()
        ax2.bar(xs, [s.late for s in one], width=max(10, min(xs) / 3), alpha=0.3, color="C3",
                label="readings past the deadline")
        ax2.set_ylabel("readings past the deadline")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out_fig10 / "fig10.png", dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for w in sorted({s.workers for s in steps}):
        mine = [s for s in steps if s.workers == w]
        ax.plot([s.offered_per_s for s in mine], [(s.latency_p95_ms or 0) / 1000 for s in mine],
                "o-", label=f"{w} worker(s), p95")
    ax.axhline(deadline_s, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("input rate, readings/s")
    ax.set_ylabel("event time -> committed p95, s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_stream / "latency.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_capacity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"1 and 2 workers, rates {QUICK_RATES}, 20 s steps")
    ap.add_argument("--workers", default=None, help="comma list (default 1,2,3)")
    ap.add_argument("--rates", default=None, help="comma list of readings/s, ascending")
    ap.add_argument("--step-s", type=float, default=None, help="seconds per step (default 40)")
    ap.add_argument("--catch-up-s", type=float, default=60.0,
                    help="wait at most this long after a step for its readings (default 60)")
    ap.add_argument("--deadline-s", type=float, default=10.0,
                    help="event time -> committed deadline (default 10 s)")
    ap.add_argument("--write-capacity", action="store_true",
                    help="write the measured processing capacity into "
                         "autoscaler/model/capacity.yaml")
    args = ap.parse_args(argv)
    topo = load_topology()
    n_max = len(topo.pool_nodes("processing"))
    try:
        workers = [int(x) for x in (args.workers or ("1,2" if args.quick else "1,2,3")).split(",")]
        rates = [float(x) for x in args.rates.split(",")] if args.rates else list(
            QUICK_RATES if args.quick else FULL_RATES)
    except ValueError:
        ap.error("--workers and --rates must be comma lists of numbers")
    if any(not 1 <= w <= n_max for w in workers):
        ap.error(f"--workers: each must be within 1..{n_max} (the processing pool)")
    if any(r <= 0 for r in rates) or rates != sorted(rates):
        ap.error("--rates: positive and ascending")
    step_s = args.step_s or (20.0 if args.quick else 40.0)
    if step_s < 10 or args.catch_up_s <= 0 or args.deadline_s <= 0:
        ap.error("--step-s must be >= 10, --catch-up-s and --deadline-s > 0")
    deadline_ms = args.deadline_s * 1000
    cmd = "make bench-stream" + (" BENCH_ARGS=--quick" if args.quick else "")
    t_start = time.monotonic()
    steps: list[Step] = []
    twin_lat: list[float] = []
    try:
        for w in workers:
            print(f"  {w} active worker(s): {len(rates)} steps of {step_s:.0f} s ...",
                  flush=True)
            got, lat = sweep(topo, w, rates, step_s, args.catch_up_s, deadline_ms,
                             state_dir() / "bench" / f"stream-{w}w")
            steps += got
            if w == workers[0]:
                twin_lat = lat
    finally:
        restore_initial(topo, Platform(topo))
    out, out10 = results_dir("stream"), results_dir("fig10")
    write_csv(out / "steps.csv", [asdict(s) for s in steps])
    capacity = {w: max_sustained([s for s in steps if s.workers == w]) for w in workers}
    write_csv(out / "capacity.csv", [{"workers": w, "max_sustained_per_s": c}
                                     for w, c in capacity.items()])
    one = [s for s in steps if s.workers == 1]
    write_csv(out10 / "fig10.csv", fig10_rows(one), FIG10_FIELDS)
    _plots(out, out10, steps, args.deadline_s)
    eff = scaling_efficiency({w: c for w, c in capacity.items() if c is not None})
    e2e50, e2e95 = quantile(twin_lat, 0.5), quantile(twin_lat, 0.95)
    first = steps[0] if steps else None
    write_summary(out, title="Streaming job: end-to-end latency and sustained readings/s per "
                             "worker count", command=cmd,
                  paper={"end-to-end latency": "not reported"},
                  ours={**{f"max sustained /s, {w} worker(s)": c for w, c in capacity.items()},
                        "scaling efficiency per added worker": None if eff is None
                        else round(eff, 2),
                        "end-to-end latency p50 ms (event -> twin visible)": e2e50,
                        "end-to-end latency p95 ms (event -> twin visible)": e2e95,
                        "nominal rate /s": None if first is None else first.offered_per_s},
                  quick=args.quick, duration_s=time.monotonic() - t_start,
                  notes=(f"Sustained = p95 of event time -> raw commit within "
                         f"{args.deadline_s:.0f} s and every confirmed reading committed "
                         f"within {args.catch_up_s:.0f} s of the step; steps of {step_s:.0f} s "
                         f"at {', '.join(f'{r:.0f}' for r in rates)} readings/s (the capacity "
                         "is the last step sustained: resolution = the step). Full job "
                         "(ingest + twin + aggregates), workers of 0.5 CPU each on a 2-core "
                         "machine shared with the broker, the fleet and the driver."),
                  files=["steps.csv", "capacity.csv", "latency.png"])
    write_summary(out10, title="Fig. 10: queueing delay and readings past the deadline "
                               "against input rate (1 worker)", command=cmd,
                  paper={"shape": "delay and late readings grow once the rate passes capacity"},
                  ours={**{f"delay p95 s at {s.offered_per_s:.0f}/s": _s(s.latency_p95_ms)
                           for s in one},
                        **{f"late at {s.offered_per_s:.0f}/s": s.late for s in one}},
                  quick=args.quick, duration_s=time.monotonic() - t_start,
                  notes=f"Deadline {args.deadline_s:.0f} s from event time to the committed "
                        "raw table, per reading.",
                  files=["fig10.csv", "fig10.png"])
    for s in steps:
        print(f"  {s.workers}w {s.offered_per_s:>7.1f}/s stored {s.stored}/{s.confirmed} "
              f"p50 {_s(s.latency_p50_ms)} s p95 {_s(s.latency_p95_ms)} s late {s.late} "
              f"{'sustained' if s.sustained else 'NOT sustained'}", flush=True)
    print(f"  max sustained: {capacity}; scaling efficiency {eff}; twin e2e p50 {e2e50} ms, "
          f"p95 {e2e95} ms", flush=True)
    if args.write_capacity:
        c1 = capacity.get(1)
        if not c1:
            print("--write-capacity: no sustained rate with 1 worker; capacity.yaml unchanged",
                  file=sys.stderr)
            return 1
        CAPACITY_FILE.write_text(update_capacity_text(
            CAPACITY_FILE.read_text(), c1, eff, cmd + " BENCH_ARGS=--write-capacity",
            dt.date.today().isoformat()))
        print(f"  wrote {CAPACITY_FILE}: processing.readings_per_s {c1:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
