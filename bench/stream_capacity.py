"""``make bench-stream``: the streaming job's throughput capacity, its latency against a
deadline (issue 4) and Fig. 10.

    python -m bench.stream_capacity [--quick] [--workers 1,2,3] [--rates 100,200,...]
                                    [--step-s 40] [--catch-up-s 60] [--deadline-s 10]
                                    [--saturate-rate 3000] [--saturate-s 30]
                                    [--saturate-wait-s 300] [--write-capacity]
    python -m bench.stream_capacity --write-capacity --from-results

For each number of active Spark workers (1, 2, 3; the others asleep) the full job (ingest, twin,
aggregates, default triggers) runs on a fresh HDFS root. After an unmeasured warm-up step (the
twin and aggregate queries start once raw data exists) a fleet offers two things, each step's
DERs a group of their own (so no step's readings can be taken for another's re-sent duplicates):

**Deadline sweep (Fig. 10).** A stepped rate: R readings/s for ``--step-s``, one step after the
other. After each step the bench waits, at most ``--catch-up-s``, until the job committed as
many readings as the broker confirmed. Missing the deadline does not end the sweep; a step whose
readings are not all committed within ``--catch-up-s`` after the fleet stopped (the job is
falling behind: real overload) does. Each reading's **commit latency** is exact, not a batch
summary: the raw table's file names carry the micro-batch id
(:func:`spark_jobs.commit.batch_prefix`) and the job logs when it committed each batch, so
latency = commit time of its batch - its event time (queueing delay included). A step is
**within the deadline** when the p95 of that latency is within ``--deadline-s`` and everything
was committed; the **maximum rate within the deadline** of a worker count is the highest step
within it with every lower step within it too (resolution: the step size; None when even the
first step misses it). Readings later than the deadline, or never stored, are Fig. 10's "not
processed within the deadline".

**Throughput capacity ("max sustained").** Once the sweep's readings are committed, one
saturation step offers ``--saturate-rate`` (well above capacity) for ``--saturate-s``, so the
job always has a backlog, and the bench waits (at most ``--saturate-wait-s``; then what was
committed counts and the step is marked incomplete) until everything is committed. From the
ingest batches that carried that step's readings (their count per batch from the raw table,
their commit times from the log): capacity = the readings of every batch but the first / (last
commit - first commit) (:func:`throughput`); also the median batch duration while saturated.
This is the capacity the autoscaler's model needs: readings/s the job processes, whatever the
latency of one batch.

**End-to-end latency** (sensor event time -> twin state visible) at the nominal fleet (the first
step with the first worker count): for every DER state the twin published, the commit time of
the first twin batch that showed it minus the event time of the DER's newest reading in it.

**Stragglers (Fig. 8)**: the collector's Spark task samples of each worker count's measured
part, judged by the diagnoser's detectors (:mod:`bench.straggler_rate`).

Writes ``results/stream/`` (steps.csv, capacity.csv, stragglers.csv, latency.png, summary.json) and
``results/fig10/`` (fig10.csv, fig10.png, summary.json). ``--write-capacity`` also writes the
measured one-worker throughput capacity and the scaling efficiency into
autoscaler/model/capacity.yaml (retrain the model afterwards: ``make retrain``);
``--from-results`` does that from the last sweep's ``results/stream/`` without sweeping again.
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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import requests

from autoscaler.realise import restore_initial
from bench.capacity_file import CAPACITY_FILE, update_pool
from bench.common import make_command as common_make_command
from bench.common import read_csv, results_dir, write_csv
from bench.report import write_summary
from bench.straggler_rate import FIELDS as STRAGGLER_FIELDS
from bench.straggler_rate import straggler_rate, task_samples
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.procs import Proc
from infra.state import state_dir
from infra.topology import Topology, load_topology
from ingest.streams import stream_end
from ingest.topology import TELEMETRY_STREAM
from spark_jobs.audit import read_table
from spark_jobs.session import submit_env
from spark_jobs.submit import command

DER_TYPES = ("pv", "wind", "battery", "ev_charger")   # one group of each per step
DERS_PER_TYPE = 5
FULL_RATES = (100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500)
QUICK_RATES = (100, 400, 1000)
FULL_SATURATE = (3000.0, 30.0)    # readings/s, seconds
QUICK_SATURATE = (2500.0, 20.0)
# The saturation step measured a backlogged job only if the job processed clearly less than
# was offered; otherwise its rate is a lower bound of the capacity.
BACKLOG_SHARE = 0.9
DOWNSTREAM_QUERIES = ("twin", "aggregates")


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


def downstream_committed(commits: Mapping[tuple[str, int], float], since: float,
                         queries: Sequence[str] = DOWNSTREAM_QUERIES) -> bool:
    """Every query reading the raw table committed a batch at or after ``since`` (wall time,
    s): its first batches, which hold the executors longest, are behind it."""
    return all(any(q == query and t >= since for (q, _), t in commits.items())
               for query in queries)


def quantile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: a reported latency is one that happened)."""
    if not xs:
        return None
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))])


def commit_latencies(batch_ids: Iterable[int], ts_ms: Iterable[float],
                     commits: Mapping[tuple[str, int], float]) -> list[float]:
    """Per reading (its ingest batch, its event time in ms): commit time - event time, ms.
    Readings of a batch the log does not name are left out."""
    return [commits[("ingest", int(b))] * 1000 - ts
            for b, ts in zip(batch_ids, ts_ms, strict=True) if ("ingest", int(b)) in commits]


def batch_counts(batch_ids: Iterable[int], commits: Mapping[tuple[str, int], float]
                 ) -> list[tuple[float, int]]:
    """(commit time s, readings) per ingest batch among ``batch_ids`` (one id per reading),
    in commit order; batches the log does not name are left out."""
    n = Counter(int(b) for b in batch_ids)
    return sorted((commits[("ingest", b)], k) for b, k in n.items() if ("ingest", b) in commits)


def throughput(batches: Sequence[tuple[float, int]]) -> float | None:
    """Readings/s a backlogged job processed, from (commit time s, readings) per batch: the
    readings of every batch but the first over the time from the first commit to the last (the
    first batch started on whatever had arrived, its own start is unknown). None with fewer
    than 2 batches."""
    b = sorted(batches)
    if len(b) < 2 or b[-1][0] <= b[0][0]:
        return None
    return sum(n for _, n in b[1:]) / (b[-1][0] - b[0][0])


def batch_durations(batches: Sequence[tuple[float, int]]) -> list[float]:
    """Seconds between consecutive commits: a backlogged job's batch durations."""
    ts = sorted(t for t, _ in batches)
    return [b - a for a, b in pairwise(ts)]


def backlogged(rate: float | None, offered_per_s: float) -> bool:
    """The job processed clearly less than was offered, so it always had a backlog."""
    return rate is not None and rate < BACKLOG_SHARE * offered_per_s


def visible_latencies(rows: Iterable[tuple[str, float, float]]) -> list[float]:
    """Per DER state (der_id, newest event time ms, commit time s of a twin batch showing it):
    commit time of the first twin batch that showed it - the event time, ms. A state shown
    again later (a staleness timeout re-publishes it) counts once, when it became visible."""
    first: dict[tuple[str, float], float] = {}
    for der, ts, commit in rows:
        key = (der, ts)
        first[key] = min(commit, first.get(key, commit))
    return [c * 1000 - ts for (_der, ts), c in first.items()]


@dataclass
class Step:
    workers: int
    rate: float                    # offered by the scenario, readings/s
    confirmed: int                 # confirmed by the broker
    offered_per_s: float           # confirmed / the fleet's wall time
    stored: int                    # of this step's readings in the raw table
    caught_up: bool                # the job committed them within the wait
    catch_up_s: float | None       # from the fleet's end until committed
    latency_p50_ms: float | None   # event time -> raw commit, per reading
    latency_p95_ms: float | None
    latency_max_ms: float | None
    late: int                      # readings committed later than the deadline
    within_deadline: bool = False
    kind: str = "step"             # step (deadline sweep) | saturation


def judge(step: Step, deadline_ms: float) -> Step:
    step.within_deadline = (step.caught_up and step.stored == step.confirmed
                            and step.latency_p95_ms is not None
                            and step.latency_p95_ms <= deadline_ms)
    return step


def max_within_deadline(steps: Sequence[Step]) -> float | None:
    """The highest sweep rate within the deadline with every lower step within it too."""
    best = None
    for s in sorted((s for s in steps if s.kind == "step"), key=lambda s: s.rate):
        if not s.within_deadline:
            break
        best = s.offered_per_s
    return best


@dataclass
class Capacity:
    workers: int
    max_sustained_per_s: float | None        # throughput of the backlogged job
    max_within_deadline_per_s: float | None  # highest sweep step within the deadline
    saturate_offered_per_s: float
    saturate_confirmed: int
    saturate_committed: int
    saturate_batches: int
    batch_median_s: float | None             # while saturated
    complete: bool                           # all committed within --saturate-wait-s
    backlogged: bool                         # processed < BACKLOG_SHARE x offered


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
    return update_pool(text, "processing", readings_per_s, efficiency, command_line, day)


def capacity_rows(rows: Iterable[Mapping[str, str]]) -> list[Capacity]:
    """capacity.csv back into :class:`Capacity` rows (empty cell = None)."""
    def cell(v: str, kind: type) -> object:
        if v == "":
            return None
        if kind is bool:
            if v not in ("True", "False"):
                raise ValueError(f"capacity.csv: expected True/False, got {v!r}")
            return v == "True"
        return kind(v)

    kinds = {"workers": int, "saturate_confirmed": int, "saturate_committed": int,
             "saturate_batches": int, "complete": bool, "backlogged": bool}
    return [Capacity(**{k: cell(r[k], kinds.get(k, float))  # type: ignore[arg-type]
                        for k in Capacity.__dataclass_fields__}) for r in rows]


def write_capacity(caps: Sequence[Capacity], command_line: str, day: str,
                   path: Path | None = None) -> str | None:
    """Write the one-worker throughput and the scaling efficiency of ``caps`` into capacity.yaml;
    the reason when the sweep cannot say (then the file is left as it is)."""
    path = path or CAPACITY_FILE
    c1 = next((c for c in caps if c.workers == 1), None)
    if c1 is None or c1.max_sustained_per_s is None or not c1.backlogged:
        return "no backlogged throughput with 1 worker"
    eff = scaling_efficiency({c.workers: c.max_sustained_per_s for c in caps
                              if c.max_sustained_per_s is not None})
    path.write_text(update_capacity_text(path.read_text(), c1.max_sustained_per_s, eff,
                                         command_line, day))
    return None


FIG10_FIELDS = ("kind", "offered_per_s", "delay_p50_s", "delay_p95_s", "delay_max_s",
                "late_readings", "not_stored", "readings")


def fig10_rows(steps: Sequence[Step]) -> list[dict[str, float | int | str | None]]:
    return [{"kind": s.kind, "offered_per_s": s.offered_per_s,
             "delay_p50_s": _s(s.latency_p50_ms), "delay_p95_s": _s(s.latency_p95_ms),
             "delay_max_s": _s(s.latency_max_ms), "late_readings": s.late,
             "not_stored": max(0, s.confirmed - s.stored), "readings": s.confirmed}
            for s in steps]


def make_command(args: Sequence[str]) -> str:
    """How to reproduce a run with these arguments."""
    return common_make_command("bench-stream", args)


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


# ---------------------------------------------------------------------------------------------
# the live sweep


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]
    step_s: float
    catch_up_s: float
    deadline_ms: float
    saturate_rate: float
    saturate_s: float
    saturate_wait_s: float


def _executors(topo: Topology) -> int:
    api = f"http://{topo.bind_host}:{topo.spark.driver_ui_port}/api/v1/applications"
    try:
        apps = requests.get(api, timeout=5).json()
        execs = requests.get(f"{api}/{apps[0]['id']}/executors", timeout=5).json()
    except (requests.RequestException, ValueError, IndexError, KeyError):
        return 0
    return sum(1 for e in execs if e.get("id") != "driver" and e.get("isActive"))


def _wait(what: str, timeout: float, done, job: Proc, job_log: Path) -> None:
    if _until(done, timeout, job, job_log, what) is None:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _fleet(work: Path, group: str, rate: float, seconds: float) -> tuple[int, float, float]:
    """One fleet step: (confirmed, confirmed/s, wall time it began)."""
    scenario = work / f"{group}.yaml"
    scenario.write_text(json.dumps(step_scenario(group, rate, seconds)))
    summary = work / f"{group}.json"
    began = time.time()
    fleet = Proc("fleet", [sys.executable, "-m", "sensors_sim", "run", "--scenario",
                           str(scenario), "--summary", str(summary), "--no-metrics"],
                 work / "fleet.log")
    while fleet.running():
        time.sleep(1)
    total = json.loads(summary.read_text())["total"]
    confirmed, wall = int(total["confirmed"]), float(total["wall_s"])
    return confirmed, confirmed / wall, began


def _until(done, timeout: float, job: Proc, job_log: Path, what: str = "its commits"
           ) -> float | None:
    """Seconds until ``done()``, or None if not within ``timeout``; raises if the job exits."""
    t0 = time.monotonic()
    while not done():
        if not job.running():
            raise RuntimeError(f"the stream job exited while waiting for {what}; see {job_log}")
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(0.5)
    return time.monotonic() - t0


def _committed(job: Proc, job_log: Path, n: int, since: float, timeout: float) -> float | None:
    """Seconds until the ingest query committed ``n`` valid readings in batches committed at
    or after ``since`` (wall time), or None if not within ``timeout``."""
    return _until(lambda: committed_valid(job_log.read_text(errors="replace").splitlines(),
                                          since) >= n, timeout, job, job_log)


@dataclass(frozen=True)
class _Ran:
    kind: str
    rate: float
    group: str
    confirmed: int
    offered_per_s: float
    took: float | None


def _measured(r: _Ran, workers: int, raw, commits, deadline_ms: float) -> Step:
    mine = raw[step_rows(raw["der_id"], r.group)] if len(raw) else raw
    lat = commit_latencies(mine["batch"], mine["ts_ms"], commits) if len(mine) else []
    return judge(Step(workers, r.rate, r.confirmed, round(r.offered_per_s, 1), len(mine),
                      r.took is not None, None if r.took is None else round(r.took, 1),
                      quantile(lat, 0.5), quantile(lat, 0.95), max(lat) if lat else None,
                      sum(1 for x in lat if x > deadline_ms), kind=r.kind), deadline_ms)


def sweep(topo: Topology, workers: int, plan: Plan, work: Path
          ) -> tuple[list[Step], Capacity, list[float], tuple[float, float]]:
    """One worker count: (sweep steps then the saturation step, the throughput capacity,
    end-to-end twin latencies in ms of the first step, the measured part's epoch-s span)."""
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
    ran: list[_Ran] = []
    measured_from: float | None = None

    def say(text: str) -> None:
        print(f"    {workers} worker(s), {text}", flush=True)

    try:
        _wait("the job to start", 240,
              lambda: '"event":"started"' in job_log.read_text(errors="replace"), job, job_log)
        _wait(f"{workers} active executors", 180, lambda: _executors(topo) >= workers, job,
              job_log)
        # Warm-up, not measured: the twin and aggregate queries start once the raw table has
        # data, and their first batches hold the worker's core for half a minute.
        total, t_first = 0, time.time()
        confirmed, _, began = _fleet(work, f"w{workers}warm", plan.rates[0], plan.step_s)
        total += confirmed
        took = _committed(job, job_log, confirmed, began, 60 + plan.catch_up_s)
        # The twin and aggregate queries start on the raw table's first data; until each has
        # committed a batch of the warm-up, the first measured step would pay for their start.
        stored_at = time.time()
        downstream = _until(lambda: downstream_committed(
            commit_times(job_log.read_text(errors="replace").splitlines()), stored_at),
            60 + plan.catch_up_s, job, job_log)
        say(f"warm-up at {plan.rates[0]:.0f}/s: "
            + ("committed" if took is not None else "NOT committed")
            + (f", twin and aggregates {downstream:.1f} s later" if downstream is not None
               else ", twin or aggregates NOT committed") + " (not measured)")
        first_done = None
        measured_from = time.time()   # Fig. 8's stragglers: the steps and the saturation only
        for k, rate in enumerate(plan.rates):
            group = f"w{workers}s{k}"
            confirmed, offered, began = _fleet(work, group, rate, plan.step_s)
            total += confirmed
            took = _committed(job, job_log, confirmed, began, plan.catch_up_s)
            ran.append(_Ran("step", rate, group, confirmed, offered, took))
            first_done = first_done or time.time()
            # Not all committed within --catch-up-s: the job falls behind (real overload),
            # and every higher step would too. A missed deadline alone goes on.
            say(f"{rate:.0f}/s: confirmed {confirmed}, "
                + (f"committed {took:.1f} s after the fleet" if took is not None
                   else f"not committed within {plan.catch_up_s:.0f} s: overloaded, "
                        "sweep ends"))
            if took is None:
                break
        # Saturation: start on an empty backlog, so that its batches hold its readings only.
        drained = _committed(job, job_log, total, t_first, plan.saturate_wait_s)
        if drained is None:
            say(f"the sweep's backlog was not committed within {plan.saturate_wait_s:.0f} s; "
                "the saturation step starts on it")
        group = f"w{workers}sat"
        confirmed, offered, began = _fleet(work, group, plan.saturate_rate, plan.saturate_s)
        took = _committed(job, job_log, confirmed, began, plan.saturate_wait_s)
        ran.append(_Ran("saturation", plan.saturate_rate, group, confirmed, offered, took))
        say(f"saturation at {offered:.0f}/s: confirmed {confirmed}, "
            + (f"committed {took:.1f} s after the fleet" if took is not None
               else f"NOT all committed within {plan.saturate_wait_s:.0f} s (incomplete)"))
        # The end-to-end latency needs the twin to have shown the first step: it has, unless
        # its (slower) trigger never fired since.
        deadline = time.monotonic() + 60
        while first_done and time.monotonic() < deadline and job.running() and not any(
                q == "twin" and ts > first_done for (q, _b), ts in
                commit_times(job_log.read_text(errors="replace").splitlines()).items()):
            time.sleep(1)
    finally:
        job.stop(signal.SIGTERM)
    span = (measured_from or time.time(), time.time())
    commits = commit_times(job_log.read_text(errors="replace").splitlines())
    raw = read_table(topo, f"{root}/raw", ["der_id", "ts_ms"], batch_column="batch")
    steps = [_measured(r, workers, raw, commits, plan.deadline_ms) for r in ran]
    sat = ran[-1] if ran and ran[-1].kind == "saturation" else None
    batches: list[tuple[float, int]] = []
    if sat is not None and len(raw):
        mine = raw[step_rows(raw["der_id"], sat.group)]
        batches = batch_counts(mine["batch"], commits)
    rate = throughput(batches)
    capacity = Capacity(
        workers, None if rate is None else round(rate, 1),
        max_within_deadline([s for s in steps if s.kind == "step"]),
        0.0 if sat is None else round(sat.offered_per_s, 1),
        0 if sat is None else sat.confirmed, sum(n for _, n in batches), len(batches),
        None if not batches else _round(quantile(batch_durations(batches), 0.5)),
        sat is not None and sat.took is not None,
        sat is not None and backlogged(rate, sat.offered_per_s))
    twin_lat: list[float] = []
    if ran:
        twin = read_table(topo, f"{root}/twin", ["der_id", "last_ts_ms"], batch_column="batch")
        if len(twin):
            twin = twin[step_rows(twin["der_id"], ran[0].group)]
            twin_lat = visible_latencies(
                (d, ts, commits[("twin", int(b))])
                for d, ts, b in zip(twin["der_id"], twin["last_ts_ms"], twin["batch"],
                                    strict=True)
                if ts is not None and not math.isnan(ts) and ("twin", int(b)) in commits)
    return steps, capacity, twin_lat, span


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


# ---------------------------------------------------------------------------------------------
# output


def _plots(out_stream: Path, out_fig10: Path, steps: list[Step], deadline_s: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = [s for s in steps if s.workers == 1]
    if one:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        sweep_ = [s for s in one if s.kind == "step"]
        sat = [s for s in one if s.kind == "saturation"]
        xs = [s.offered_per_s for s in sweep_]
        ax.plot(xs, [(s.latency_p50_ms or 0) / 1000 for s in sweep_], "o-", label="delay p50")
        ax.plot(xs, [(s.latency_p95_ms or 0) / 1000 for s in sweep_], "s--", label="delay p95")
        if sat:
            ax.plot([s.offered_per_s for s in sat], [(s.latency_p95_ms or 0) / 1000 for s in sat],
                    "kx", ms=9, label="delay p95, saturation step")
        ax.axhline(deadline_s, color="grey", lw=0.8, ls=":", label=f"deadline {deadline_s:.0f} s")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("input rate, readings/s (1 worker)")
        ax.set_ylabel("event time -> committed, s")
        ax2 = ax.twinx()
        allx = [s.offered_per_s for s in one]
        ax2.bar(allx, [100 * (s.late + max(0, s.confirmed - s.stored)) / max(1, s.confirmed)
                       for s in one], width=max(10, min(allx) / 3), alpha=0.3, color="C3")
        ax2.set_ylabel("% of readings not processed within the deadline")
        ax2.set_ylim(0, 105)
        ax.set_zorder(ax2.get_zorder() + 1)   # the delay lines in front of the bars
        ax.patch.set_visible(False)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_fig10 / "fig10.png", dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for w in sorted({s.workers for s in steps}):
        mine = [s for s in steps if s.workers == w]
        ax.plot([s.offered_per_s for s in mine], [(s.latency_p95_ms or 0) / 1000 for s in mine],
                "o-", label=f"{w} worker(s), p95 (last point: saturation step)")
    ax.axhline(deadline_s, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("input rate, readings/s")
    ax.set_ylabel("event time -> committed p95, s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_stream / "latency.png", dpi=110)
    plt.close(fig)


def _flags(c: Capacity) -> str:
    out = []
    if not c.complete:
        out.append("incomplete (not all committed within the wait; committed batches counted)")
    if c.max_sustained_per_s is not None and not c.backlogged:
        out.append("not backlogged (processed >= 90 % of offered): a lower bound")
    if c.max_sustained_per_s is None:
        out.append("fewer than 2 batches: no rate")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_capacity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"1 and 2 workers, rates {QUICK_RATES}, 20 s steps, saturation "
                         f"{QUICK_SATURATE[0]:.0f}/s for {QUICK_SATURATE[1]:.0f} s")
    ap.add_argument("--workers", default=None, help="comma list (default 1,2,3)")
    ap.add_argument("--rates", default=None, help="comma list of readings/s, ascending")
    ap.add_argument("--step-s", type=float, default=None, help="seconds per step (default 40)")
    ap.add_argument("--catch-up-s", type=float, default=60.0,
                    help="wait at most this long after a step for its readings; a step not "
                         "committed by then ends the sweep (default 60)")
    ap.add_argument("--deadline-s", type=float, default=10.0,
                    help="event time -> committed deadline (default 10 s)")
    ap.add_argument("--saturate-rate", type=float, default=None,
                    help=f"readings/s of the saturation step (default {FULL_SATURATE[0]:.0f})")
    ap.add_argument("--saturate-s", type=float, default=None,
                    help=f"seconds of the saturation step (default {FULL_SATURATE[1]:.0f})")
    ap.add_argument("--saturate-wait-s", type=float, default=300.0,
                    help="wait at most this long for the saturation step (and the sweep's "
                         "backlog before it) to be committed (default 300)")
    ap.add_argument("--write-capacity", action="store_true",
                    help="write the measured processing capacity into "
                         "autoscaler/model/capacity.yaml")
    ap.add_argument("--from-results", action="store_true",
                    help="with --write-capacity: take the numbers from the last sweep's "
                         "results/stream/ (capacity.csv, summary.json) instead of sweeping")
    args = ap.parse_args(argv)
    if args.from_results:
        if not args.write_capacity:
            ap.error("--from-results: only with --write-capacity")
        return _capacity_from_results()
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
    if not rates or any(r <= 0 for r in rates) or rates != sorted(rates):
        ap.error("--rates: positive and ascending")
    step_s = args.step_s or (20.0 if args.quick else 40.0)
    sat_rate, sat_s = QUICK_SATURATE if args.quick else FULL_SATURATE
    sat_rate, sat_s = args.saturate_rate or sat_rate, args.saturate_s or sat_s
    if step_s < 10 or sat_s < 10 or args.catch_up_s <= 0 or args.deadline_s <= 0 \
            or sat_rate <= 0 or args.saturate_wait_s <= 0:
        ap.error("--step-s and --saturate-s must be >= 10; --catch-up-s, --deadline-s, "
                 "--saturate-rate and --saturate-wait-s > 0")
    plan = Plan(tuple(rates), step_s, args.catch_up_s, args.deadline_s * 1000, sat_rate, sat_s,
                args.saturate_wait_s)
    given = list(sys.argv[1:] if argv is None else argv)
    cmd = make_command([a for a in given if a != "--write-capacity"])
    t_start = time.monotonic()
    steps: list[Step] = []
    caps: list[Capacity] = []
    twin_lat: list[float] = []
    spans: dict[int, tuple[float, float]] = {}
    try:
        for w in workers:
            print(f"  {w} active worker(s): up to {len(rates)} steps of {step_s:.0f} s, then "
                  f"{sat_rate:.0f}/s for {sat_s:.0f} s ...", flush=True)
            got, cap, lat, spans[w] = sweep(topo, w, plan,
                                            state_dir() / "bench" / f"stream-{w}w")
            steps += got
            caps.append(cap)
            if w == workers[0]:
                twin_lat = lat
    finally:
        restore_initial(topo, Platform(topo))
    out, out10 = results_dir("stream"), results_dir("fig10")
    write_csv(out / "steps.csv", [asdict(s) for s in steps])
    write_csv(out / "capacity.csv", [asdict(c) for c in caps])
    # Fig. 8's straggler frequency: the collector's task samples of each measured sweep.
    stragglers = [straggler_rate(w, task_samples(topo, *span)) for w, span in spans.items()]
    write_csv(out / "stragglers.csv", [r.as_row() for r in stragglers], STRAGGLER_FIELDS)
    one = [s for s in steps if s.workers == 1]
    write_csv(out10 / "fig10.csv", fig10_rows(one), FIG10_FIELDS)
    _plots(out, out10, steps, args.deadline_s)
    sustained = {c.workers: c.max_sustained_per_s for c in caps}
    eff = scaling_efficiency({w: c for w, c in sustained.items() if c is not None})
    e2e50, e2e95 = quantile(twin_lat, 0.5), quantile(twin_lat, 0.95)
    first = steps[0] if steps else None
    dl = f"{args.deadline_s:.0f} s"
    none_text = f"none: p95 above {dl} at every step"
    flags = "; ".join(f"{c.workers} worker(s): {f}" for c in caps if (f := _flags(c)))
    definitions = (
        f"**max sustained** = throughput capacity: readings/s the backlogged job processed in "
        f"a saturation step ({sat_rate:.0f}/s offered for {sat_s:.0f} s, then up to "
        f"{args.saturate_wait_s:.0f} s to commit it): the readings of its ingest batches but "
        f"the first over first-to-last batch commit; **max rate within the {dl} deadline** = "
        f"highest step of the sweep ({', '.join(f'{r:.0f}' for r in rates)} readings/s, "
        f"{step_s:.0f} s each) whose per-reading p95 of event time -> raw commit was within "
        f"{dl} with everything committed, every lower step too (none when even the first step "
        f"misses it). The sweep goes on past a missed deadline and ends at the first step not "
        f"committed within {args.catch_up_s:.0f} s after its fleet stopped (overload).")
    write_summary(out, title="Streaming job: throughput capacity and latency per worker count",
                  command=cmd, paper={"end-to-end latency": "not reported"},
                  ours={**{f"max sustained /s, {w} worker(s)": c for w, c in sustained.items()},
                        **{f"max rate within {dl} deadline, {c.workers} worker(s)":
                           none_text if c.max_within_deadline_per_s is None
                           else c.max_within_deadline_per_s for c in caps},
                        "batch duration median s while saturated":
                            {f"{c.workers} worker(s)": c.batch_median_s for c in caps},
                        "scaling efficiency per added worker": None if eff is None
                        else round(eff, 2),
                        "end-to-end latency p50 ms (event -> twin visible)": e2e50,
                        "end-to-end latency p95 ms (event -> twin visible)": e2e95,
                        "nominal rate /s": None if first is None else first.offered_per_s,
                        "straggler share of tasks (AutoDiagn rule)":
                            {f"{r.workers} worker(s)": r.autodiagn_share for r in stragglers},
                        "straggler share of tasks (median + 3 MAD)":
                            {f"{r.workers} worker(s)": r.robust_share for r in stragglers}},
                  quick=args.quick, duration_s=time.monotonic() - t_start,
                  notes=(definitions + (f" Flags: {flags}." if flags else "")
                         + " Full job (ingest + twin + aggregates, default triggers), workers "
                           "of 0.5 CPU each on a 2-core machine shared with the broker, the "
                           "fleet and the driver."),
                  files=["steps.csv", "capacity.csv", "stragglers.csv", "latency.png"])
    c1 = next((c for c in caps if c.workers == 1), None)
    write_summary(out10, title="Fig. 10: queueing delay and readings not processed within the "
                               "deadline against input rate (1 worker)", command=cmd,
                  paper={"shape": "delay and late readings grow once the rate passes capacity"},
                  ours={**{f"delay p95 s at {s.offered_per_s:.0f}/s"
                           + (" (saturation)" if s.kind == "saturation" else ""):
                           _s(s.latency_p95_ms) for s in one},
                        **{f"not within deadline at {s.offered_per_s:.0f}/s"
                           + (" (saturation)" if s.kind == "saturation" else ""):
                           s.late + max(0, s.confirmed - s.stored) for s in one},
                        "max sustained /s (throughput)": None if c1 is None
                        else c1.max_sustained_per_s},
                  quick=args.quick, duration_s=time.monotonic() - t_start,
                  notes=f"Deadline {dl} from event time to the committed raw table, per "
                        f"reading; not within the deadline = committed later or not stored. "
                        f"Sweep steps of {step_s:.0f} s, then the saturation step "
                        f"({sat_s:.0f} s, far past capacity).",
                  files=["fig10.csv", "fig10.png"])
    for s in steps:
        print(f"  {s.workers}w {s.kind:<10} {s.offered_per_s:>7.1f}/s stored "
              f"{s.stored}/{s.confirmed} p50 {_s(s.latency_p50_ms)} s p95 "
              f"{_s(s.latency_p95_ms)} s late {s.late} "
              f"{'within' if s.within_deadline else 'NOT within'} the deadline", flush=True)
    for c in caps:
        within = c.max_within_deadline_per_s
        print(f"  {c.workers} worker(s): max sustained (throughput) {c.max_sustained_per_s}/s "
              f"over {c.saturate_batches} batches (median {c.batch_median_s} s, "
              f"{c.saturate_committed}/{c.saturate_confirmed} committed); max rate within "
              f"the deadline: {none_text if within is None else f'{within}/s'}"
              + (f" [{f}]" if (f := _flags(c)) else ""), flush=True)
    for r in stragglers:
        print(f"  {r.workers} worker(s): {r.tasks} tasks in {r.windows} windows, stragglers "
              f"{r.autodiagn_tasks} (AutoDiagn rule), {r.robust_tasks} (median + 3 MAD), "
              f"windows with a straggling worker {r.node_windows}", flush=True)
    print(f"  scaling efficiency {eff}; twin e2e p50 {e2e50} ms, p95 {e2e95} ms", flush=True)
    if args.write_capacity:
        why = write_capacity(caps, make_command(given), dt.date.today().isoformat())
        if why:
            print(f"--write-capacity: {why}; capacity.yaml unchanged", file=sys.stderr)
            return 1
        print(f"  wrote {CAPACITY_FILE}", flush=True)
    return 0


def _capacity_from_results() -> int:
    out = results_dir("stream")
    try:
        caps = capacity_rows(read_csv(out / "capacity.csv"))
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"--from-results: cannot read {out} ({exc}); run make bench-stream first",
              file=sys.stderr)
        return 1
    # The sweep's own command reproduces the numbers; its date is when they were measured.
    command_line = f"{summary['command']} (written by --write-capacity --from-results)"
    why = write_capacity(caps, command_line, str(summary.get("started", ""))[:10]
                         or dt.date.today().isoformat())
    if why:
        print(f"--from-results: {why} in {out}; capacity.yaml unchanged", file=sys.stderr)
        return 1
    print(f"wrote {CAPACITY_FILE} from {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
