"""``make bench-faults``: inject faults on the live platform and score the diagnoser's labels.

    python -m bench.fault_injection [--quick] [--repeats N] [--faults a,b,...]

Every *window* starts from the topology's initial state, sets up what its fault needs (the
streaming job, woken nodes), waits until the diagnoser's query window no longer reaches back
into the previous window, then starts a fresh ``python -m diagnoser`` (its own ``--name``, no
/metrics; the rules of ``diagnoser/rules.yaml`` with the short windows and hold times of
:data:`HOLD_S`, the same for every fault) and injects the fault for a fixed time. Everything the
diagnoser emitted in that time is scored (:mod:`bench.fault_scoring`), and everything the window
started is undone whatever happens (burner killed by pid, fleet and diagnoser stopped, woken
nodes asleep again); Ctrl-C and SIGTERM unwind the same way.

The windows that need Spark share one streaming job per repeat (``ingest`` from the stream's
end, warmed up under the nominal load before the first of them): a fresh job's first batches
take tens of seconds, a transient of the bench rather than a fault. The flood runs before the
job starts (no consumer, as in the integration test), and the windows that leave the job behind
come last. The job and its scratch HDFS folder go at the end of the repeat.

Faults (expected output in brackets):

* ``cpu_burner``: a busy loop in the active worker's container under a 1,500 readings/s load
  [R_up^CL naming that worker];
* ``flood``: 7,000 readings/s into the home channel, no consumer [R_up^CC naming it];
* ``idle``: a dormant worker and channel woken, an idle streaming job [R_down^CL and R_down^CC
  once the hold time has passed];
* ``nominal``: 200 readings/s into the initial platform [no scale label: 0];
* ``straggler``: three workers, a busy loop in one of them, 300 readings/s [that worker
  flagged as a straggler; R_up^CL naming it or no label are not wrong];
* ``memory_pressure``: three workers, one's resident memory filled to 90 % of its limit,
  300 readings/s [not scored: whether memory pressure makes a straggler is what Fig. 11b asks].

Writes ``results/faults/``: ``faults.csv`` (a row per window and label class), ``labels.csv``
(precision and recall per label class), ``summary.json``; and ``results/fig11/`` from the two
straggler windows (:mod:`bench.fig11_stragglers`). Logs of each window under
``.state/bench/faults/``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from autoscaler.realise import restore_initial
from bench import fig11_stragglers
from bench.common import md_table, results_dir, write_csv
from bench.fault_scoring import (
    LABEL_FIELDS,
    NONE,
    OUTCOME_FIELDS,
    PAPER_NAMES,
    STRAGGLER,
    Expect,
    FaultScore,
    LabelScore,
    Outcome,
    Window,
    per_fault,
    per_label,
    score_window,
)
from bench.faults import (
    BUSY_WORKER_LOAD,
    FLOOD_LOAD,
    NOMINAL_LOAD,
    DiagnoserProc,
    cpu_burner,
    memory_hog,
    woken,
)
from bench.live import Fleet, Job, hdfs_scratch, latest_job, wait_for
from bench.report import now_iso, write_summary
from bench.scenarios import short_rules
from infra.health import alive_workers
from infra.platform import Platform
from infra.state import state_dir
from infra.topology import Topology, load_topology
from ingest.topology import home_channel

# Hold times (for_s) of every rule in every window: those of the diagnoser's integration tests.
HOLD_S = {"processing_behind": 15, "channel_hot": 15, "queue_backlog": 15,
          "processing_idle": 20, "queue_idle": 20}
QUERY_WINDOW_S = 30      # short_rules' window_s: how far back the diagnoser's first query reaches
STRAGGLER_LOAD = ("--ders", "300", "--interval", "1")
JOB_ARGS = ("--max-rows-per-trigger", "3000")   # as in the diagnoser's burner test
WARM_UP_TIMEOUT_S = 240
# Run order within a repeat: the flood has no consumer, so it goes before the job starts; the
# windows that leave the job behind (slow tasks, backlog) come last.
SPEC_ORDER = ("flood", "nominal", "idle", "memory_pressure", "straggler", "cpu_burner")


@dataclass(frozen=True)
class Fault:
    """One fault: what a window sets up and injects, for how long, and what it should yield."""

    name: str                                # --faults and the CSVs' `fault` column
    what: str                                # one line for the notes
    window_s: float                          # how long the fault lasts and is watched
    expected: tuple[Expect, ...]             # outputs it should yield
    allowed: tuple[Expect, ...] = ()         # outputs that are not wrong for it either
    job: bool = False                        # needs the streaming job
    wake: tuple[str, ...] = ()               # dormant nodes awake for the window
    load: tuple[str, ...] | None = None      # fleet arguments (the window adds --duration)
    burn: str | None = None                  # node whose container runs a busy loop
    hog: str | None = None                   # node whose container's memory is filled


def faults(topo: Topology) -> dict[str, Fault]:
    """The fault set on this topology, in run order (the straggler needs three workers)."""
    worker = next(n.name for n in topo.pool_nodes("processing") if n.initial_state == "active")
    spare_workers = [n.name for n in topo.pool_nodes("processing")
                     if n.initial_state == "dormant"]
    spare_channels = [n.name for n in topo.pool_nodes("queue") if n.initial_state == "dormant"]
    channel = home_channel(topo).name
    out = {
        "flood": Fault("flood", f"7,000 readings/s into {channel}, no consumer", 90,
                       (Expect("up_cc", channel),), load=FLOOD_LOAD),
        "nominal": Fault("nominal", "200 readings/s, no fault", 60, (Expect(NONE),),
                         job=True, load=NOMINAL_LOAD),
        "cpu_burner": Fault("cpu_burner", f"busy loop on {worker} under 1,500 readings/s", 90,
                            (Expect("up_cl", worker),), job=True, load=BUSY_WORKER_LOAD,
                            burn=worker),
    }
    if spare_workers and spare_channels:
        out["idle"] = Fault("idle", f"{spare_workers[0]} and {spare_channels[0]} awake, idle "
                                    "job", 75, (Expect("down_cl"), Expect("down_cc")), job=True,
                            wake=(spare_workers[0], spare_channels[0]))
    if len(spare_workers) >= 2:
        slow = spare_workers[1]
        out["straggler"] = Fault(
            "straggler", f"3 workers, busy loop on {slow}, 300 readings/s", 90,
            (Expect(STRAGGLER, slow),), (Expect("up_cl", slow), Expect(NONE)), job=True,
            wake=tuple(spare_workers[:2]), load=STRAGGLER_LOAD, burn=slow)
        # Fig. 11b: not scored (whether memory pressure makes a straggler is the question),
        # so nothing is expected and its outputs on the loaded node are not wrong.
        out["memory_pressure"] = Fault(
            "memory_pressure", f"3 workers, {slow}'s memory filled to 90 % of its limit, "
            "300 readings/s", 90, (),
            (Expect(STRAGGLER, slow), Expect("up_cl", slow), Expect(NONE)), job=True,
            wake=tuple(spare_workers[:2]), load=STRAGGLER_LOAD, hog=slow)
    return {k: out[k] for k in SPEC_ORDER if k in out}


class SharedJob:
    """One streaming job (``ingest`` from the stream's end) for the windows that need one,
    started and warmed up on first use, restarted if it died, stopped before a window without
    it: a fresh job's first batches take tens of seconds (executor and Python worker start),
    which is a transient of the bench, not a fault."""

    def __init__(self, topo: Topology, work: Path) -> None:
        self.topo = topo
        self.work = work
        self.job: Job | None = None
        self.stack = contextlib.ExitStack()
        self.starts = 0

    def ensure(self) -> Job:
        if self.job is not None and self.job.proc.poll() is None:
            return self.job
        self.stop()
        self.starts += 1
        try:
            path = self.stack.enter_context(hdfs_scratch(self.topo, "/bench/faults"))
            job = latest_job(self.topo, f"{self.topo.hdfs_url}{path}", *JOB_ARGS)
            self.stack.callback(self._close, job, self.work / f"job-{self.starts}.log")
            fleet = Fleet([*NOMINAL_LOAD, "--duration", str(WARM_UP_TIMEOUT_S)],
                          self.work / f"warm-up-{self.starts}.json")
            try:
                job.wait_for(lambda: self._warm(job), WARM_UP_TIMEOUT_S, "the job's warm-up",
                             every=1)
            finally:
                fleet.stop()
        except BaseException:
            self.stop()
            raise
        self.job = job
        return job

    @staticmethod
    def _close(job: Job, log: Path) -> None:
        job.stop()
        log.write_text("".join(job.output))

    @staticmethod
    def _warm(job: Job) -> bool:
        """Two batches with data, the first of them at least a query window ago: its slow
        progress report is out of the diagnoser's first query."""
        done = [e["ts"] for e in job.events if e.get("event") == "batch_committed"
                and e.get("query") == "ingest" and e.get("valid", 0) > 0]
        return len(done) >= 2 and time.time() - done[0] >= QUERY_WINDOW_S

    def stop(self) -> None:
        self.stack.close()
        self.job = None


def wait_executors(topo: Topology, workers: tuple[str, ...], timeout: float = 90) -> None:
    """Until each of ``workers`` runs an executor (of the one application)."""
    ports = {topo.node(w).ports["rpc"] for w in workers}
    wait_for(lambda: ports <= {w.get("port") for w in alive_workers(topo)
                               if int(w.get("coresused") or 0) > 0},  # type: ignore[arg-type]
             timeout, f"executors on {', '.join(workers)}")


@dataclass
class Run:
    repeat: int
    window: Window | None
    error: str = ""
    setup_s: float = 0.0
    evaluations: int = 0     # diagnoser evaluations in the window


def run_window(topo: Topology, platform: Platform, fault: Fault, repeat: int, rules: Path,
               work: Path, shared: SharedJob, quiet_since: float) -> Run:
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*.log"):
        old.unlink()
    t_setup = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            restore_initial(topo, platform)
            job = shared.ensure() if fault.job else None
            if not fault.job:
                shared.stop()
            if fault.wake:
                stack.enter_context(woken(platform, *fault.wake))
                awake_workers = tuple(n for n in fault.wake
                                      if topo.node(n).pool == "processing")
                if job is not None and awake_workers:
                    wait_executors(topo, awake_workers)
            # The diagnoser's first query must not see the previous window's fault.
            time.sleep(max(0.0, quiet_since + QUERY_WINDOW_S - time.time()))
            setup_s = time.monotonic() - t_setup
            diag = DiagnoserProc(rules, interval=5.0, log=work / "diagnoser.log",
                                 name=f"faults-{fault.name}-{uuid.uuid4().hex[:6]}")
            stack.callback(diag.stop)
            t0 = time.time()
            if fault.load is not None:
                fleet = Fleet([*fault.load, "--duration", str(fault.window_s)],
                              work / "fleet.json")
                stack.callback(fleet.stop)
            if fault.burn is not None:
                stack.enter_context(cpu_burner(topo, fault.burn, fault.window_s + 15))
            if fault.hog is not None:
                stack.enter_context(memory_hog(topo, fault.hog, fault.window_s + 15))
            while time.time() < t0 + fault.window_s:
                if not diag.alive():
                    raise RuntimeError(f"the diagnoser exited ({diag.proc.returncode}); see "
                                       f"{work / 'diagnoser.log'}")
                if job is not None and job.proc.poll() is not None:
                    raise RuntimeError("the streaming job exited; see its log under "
                                       f"{shared.work}")
                time.sleep(1)
            end = time.time()
            return Run(repeat, Window(fault.name, repeat, t0, end, fault.expected,
                                      tuple(diag.observations()), fault.allowed), setup_s=setup_s,
                       evaluations=sum(1 for e in diag.events if e["ts"] <= end))
        except Exception as exc:  # the window is not scored; the others still run
            return Run(repeat, None, f"{type(exc).__name__}: {exc}"[:400])


def unhealthy(platform: Platform) -> list[str]:
    """The topology's initially active nodes that do not answer their health probe."""
    return [r.node.name for r in platform.status()
            if r.node.initial_state == "active" and r.health != "ok"]


def expectation(expected: tuple[Expect, ...]) -> str:
    return ", ".join(e.describe() for e in expected) or "not scored (Fig. 11)"


def progress_line(i: int, n: int, fault: Fault, run: Run) -> str:
    head = f"[{i}/{n}] {fault.name} r{run.repeat}"
    if run.window is None:
        return f"{head}: failed ({run.error})"
    w = run.window
    parts = []
    for o in score_window(w):
        if o.label == NONE and not o.expected and not o.fp:
            continue
        who = f"@{','.join(o.emitted_nodes)}" if o.emitted_nodes else ""
        when = f" {o.first_s:.0f} s" if o.first_s is not None else ""
        parts.append(f"{o.label}{who} {o.verdict}{when}")
    return (f"{head}: {w.end - w.start:.0f} s after {run.setup_s:.0f} s set-up; "
            f"expected {expectation(w.expected)}; "
            f"got {'; '.join(parts) or 'nothing'}")


def label_table(scores: list[LabelScore]) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    return md_table(("label", "paper", "TP", "FP", "FN", "precision", "recall"),
                    [(s.label, PAPER_NAMES[s.label], s.tp, s.fp, s.fn, fmt(s.precision),
                      fmt(s.recall)) for s in scores])


def fault_table(scores: list[FaultScore], specs: dict[str, Fault]) -> str:
    return md_table(("fault", "injected", "expected", "windows detected",
                     "first correct output s (median)"),
                    [(f.fault, specs[f.fault].what,
                      expectation(specs[f.fault].expected),
                      f"{f.detected}/{f.windows}",
                      "n/a" if f.median_first_s is None else f"{f.median_first_s:.0f}")
                     for f in scores])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fault_injection", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat of each fault")
    ap.add_argument("--repeats", type=int, default=None,
                    help="windows per fault (default 3; 1 with --quick)")
    ap.add_argument("--faults", default=None, help=f"comma list of {','.join(SPEC_ORDER)}")
    args = ap.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        ap.error(f"--repeats must be at least 1, got {repeats}")
    topo = load_topology()
    specs = faults(topo)
    chosen = (args.faults or ",".join(specs)).split(",")
    for name in chosen:
        if name not in specs:
            ap.error(f"--faults: unknown {name!r} (on this topology: {', '.join(specs)})")
    left_out = [n for n in SPEC_ORDER if n not in specs]

    # SIGTERM (make interrupted) unwinds like Ctrl-C, so every window cleans up after itself.
    def _term(_sig, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    platform = Platform(topo)
    if bad := unhealthy(platform):
        print(f"error: the platform is not up ({', '.join(bad)} not healthy): make up",
              file=sys.stderr)
        return 2
    work = state_dir() / "bench" / "faults"
    work.mkdir(parents=True, exist_ok=True)
    rules = short_rules(work / "rules.yaml", HOLD_S)
    t_start, started = time.monotonic(), now_iso()
    plan = [(r, specs[n]) for r in range(1, repeats + 1) for n in chosen]
    runs: list[tuple[Fault, Run]] = []
    aborted = ""
    quiet_since = time.time() - QUERY_WINDOW_S
    shared = SharedJob(topo, work)
    try:
        for i, (repeat, fault) in enumerate(plan, 1):
            if i > 1 and repeat != plan[i - 2][0]:
                shared.stop()   # each repeat with a fresh job
            run = run_window(topo, platform, fault, repeat, rules,
                             work / f"{fault.name}-r{repeat}", shared, quiet_since)
            print(progress_line(i, len(plan), fault, run), flush=True)
            quiet_since = time.time()
            runs.append((fault, run))
            if run.window is None and (bad := unhealthy(platform)):
                aborted = (f"stopped after window {i} of {len(plan)}: "
                           f"{', '.join(bad)} not healthy")
                print(aborted, flush=True)
                break
    finally:
        shared.stop()
        try:
            restore_initial(topo, platform)
        except Exception as exc:  # the results so far are still written
            print(f"warning: could not restore the initial state: {exc!r}"[:300], flush=True)

    windows = [r.window for _, r in runs if r.window is not None]
    outcomes: list[Outcome] = [o for w in windows for o in score_window(w)]
    labels = per_label(outcomes)
    by_fault = per_fault(windows)
    out = results_dir("faults")
    write_csv(out / "faults.csv", [o.row() for o in outcomes], OUTCOME_FIELDS)
    write_csv(out / "labels.csv", [s.row() for s in labels], LABEL_FIELDS)
    failed = [f"{f.name} r{r.repeat}: {r.error}" for f, r in runs if r.window is None]
    notes = [
        f"{len(windows)} windows ({repeats} per fault) of {len(chosen)} faults on the live "
        f"platform; every rule's hold time shortened ("
        + ", ".join(f"{k} {v} s" for k, v in HOLD_S.items()) + f") with a {QUERY_WINDOW_S}-s "
        "query window and 5-s evaluations (`bench.scenarios.short_rules`), the same rules in "
        "every window. A window scores every output its own diagnoser emitted from its start "
        "to the end of the fault; `none` = the window emitted no scale label at all.",
        label_table(labels),
        fault_table(by_fault, specs),
        "`first correct output` is from the injection to the first output that met an "
        "expectation; `none` has no time (it is judged at the end of the window).",
        "Stragglers: the diagnoser flags a task whose duration (per record) exceeds its "
        "stage's median by 3 robust spreads (1.48 MAD, at least 10 % of the median) among at "
        "least 5 tasks of the stage; a node whose processing rate is 3 spreads below the "
        "median of at least 3 nodes (records per busy second; tasks per busy second as soon "
        "as any task read no input records, e.g. a shuffle task); or a node whose tasks take "
        "more than 1.5 times its peers' typical share of the same stages' medians (stages of "
        "at least 100 ms on two or more nodes). The straggler windows run three workers so "
        "that the node rules can apply; `memory_pressure` is not scored, it feeds Fig. 11b "
        "(results/fig11/).",
        "Precision and recall of the resource model (paper Fig. 7: 0.874 / 0.913) score the "
        "decision tree, not Alg. 2; the paper gives no precision or recall for its diagnoser.",
    ]
    if left_out:
        notes.append(f"Left out on this topology: {', '.join(left_out)}.")
    if failed:
        notes.append("Windows that could not run (not scored): " + "; ".join(failed))
    if aborted:
        notes.append(f"The run {aborted}.")
    cmd = "make bench-faults" + (f" BENCH_ARGS=\"{' '.join(argv or sys.argv[1:])}\""
                                 if (argv or sys.argv[1:]) else "")
    write_summary(
        out, title="Diagnoser on injected faults: precision and recall per label",
        command=cmd, quick=args.quick or repeats == 1, started=started,
        duration_s=time.monotonic() - t_start,
        paper={"precision": "n/a", "recall": "n/a"},
        ours={"precision": {s.label: s.precision for s in labels},
              "recall": {s.label: s.recall for s in labels},
              "first correct output s (median)": {f.fault: f.median_first_s for f in by_fault},
              "windows detected": {f.fault: f"{f.detected}/{f.windows}" for f in by_fault}},
        per_label=[s.row() for s in labels], notes="\n\n".join(notes),
        files=["faults.csv", "labels.csv"])
    fig11_stragglers.write(
        out.parent / "fig11", topo,
        [(r.window, r.evaluations) for _, r in runs if r.window is not None],
        {f.name: f.burn or f.hog or "" for f in specs.values()}, cmd, args.quick or repeats == 1,
        started, time.monotonic() - t_start)
    print(label_table(labels))
    print(fault_table(by_fault, specs))
    return 1 if failed and not windows else 0


if __name__ == "__main__":
    sys.exit(main())
