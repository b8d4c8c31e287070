"""``make bench-autoscaler``: Fig. 12 (queue level), Fig. 13 (processing level) and the policy
comparison, on the live platform.

    python -m bench.autoscaler_bench [--quick] [--scenarios fig12,fig13]
                                     [--policies none,paper,reactive,ours]

Each (scenario, policy) run starts from the topology's initial state: the streaming job, the
diagnoser (improved rules with the scenario's hold times; ``--mode paper`` for the paper
policy; none for the reactive one), the orchestrator (``--policy``; none for ``none``: no
scaling at all) and the scenario's DER fleet. After the fleet is done the run waits up to
``deadline_s`` for Spark to store everything and for the pools to shrink back, then counts.

Per run: readings **lost** = dropped by a gateway + not confirmed + confirmed but not stored
within the deadline (late counts as lost, the paper's "deadline"); **time to reliable stage** =
from the surge until the stream lag is at or below 1,000 readings for the rest of the run (the
sample after the last one above it);
**under-provisioned** = seconds with a lag above 1,000 that grows; **node-seconds** = active
scalable nodes integrated over the run; **reversals** = wake/sleep direction changes within a
pool beyond the first down after the up. Writes ``results/{fig12,fig13,policies}/``:
CSV timelines, a PNG per scenario, ``policies.csv`` and each folder's ``summary.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.realise import restore_initial
from autoscaler.service import docker_states
from bench.common import make_command, read_csv, results_dir, write_csv
from bench.report import write_summary
from bench.scenarios import RUNS, Run
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.procs import Proc
from infra.state import state_dir
from infra.topology import SCALABLE_POOLS, Topology, load_topology
from ingest.streams import stream_end
from ingest.topology import TELEMETRY_STREAM
from monitor import influx
from spark_jobs.audit import stored_counts
from spark_jobs.session import submit_env
from spark_jobs.submit import command

POLICIES = ("none", "paper", "reactive", "ours")
PAPER = {
    "fig12": {"lost without orchestrator": "readings pile up past the queue bound",
              "lost with orchestrator": 0, "time to reliable s": "about 60 (Fig. 12)"},
    "fig13": {"time to reliable s": "about 60 (Fig. 13)", "lost with orchestrator": 0},
}
ORCH_FLAGS = ("--interval", "5", "--cooldown", "20", "--scale-down-delay", "10",
              "--drain-timeout", "150", "--metrics-port", "0")


@dataclass
class Result:
    scenario: str
    policy: str
    sent: int
    lost: int
    duplicates: int
    time_to_reliable_s: float | None
    under_provisioned_s: float
    node_seconds: float
    reversals: int
    actions: list[str]
    woke_expected: bool
    slept_expected: bool
    late: int = 0                    # readings of batches committed past the latency deadline
    latency_p95_max_ms: float | None = None


LATENCY_DEADLINE_MS = 10_000.0     # five 2-s triggers from event time to the committed raw table


def commit_latency(job_log: Path, deadline_ms: float = LATENCY_DEADLINE_MS
                   ) -> tuple[int, float | None]:
    """(readings late, worst batch p95 ms) from the job's ``batch_committed`` lines: a batch's
    readings count as late when its median event-to-commit latency exceeds the deadline (the
    job logs p50/p95 per batch, not per reading)."""
    late, worst = 0, None
    for line in job_log.read_text(errors="replace").splitlines():
        if '"event":"batch_committed"' not in line or '"query":"ingest"' not in line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        p50, p95 = e.get("latency_p50_ms"), e.get("latency_p95_ms")
        if p95 is not None:
            worst = p95 if worst is None else max(worst, p95)
        if p50 is not None and p50 > deadline_ms:
            late += int(e.get("valid", 0))
    return late, worst


def _timeline(cli: influx.InfluxDBClient, start_ns: int, end_ns: int, t0: float, policy: str
              ) -> list[dict[str, Any]]:
    """5-s buckets of what the figures plot, from InfluxDB."""
    def series(q: str, by: str | None = None) -> dict[int, float]:
        out: dict[int, float] = {}
        res = cli.query(q + f" WHERE time >= {start_ns} AND time <= {end_ns}"
                        + (f" AND {by}" if by else "") + " GROUP BY time(5s) fill(none)",
                        epoch="s")
        for row in res.get_points():
            if row.get("v") is not None:
                out[int(row["time"])] = float(row["v"])
        return out

    cols = {
        "publish_rate": series('SELECT sum("publish_rate") AS v FROM "rabbitmq_queue"',
                               f"\"queue\" = '{TELEMETRY_STREAM}'"),
        "input_rate": series('SELECT max("input_rate") AS v FROM "spark_stream"',
                             "\"query\" = 'ingest'"),
        "processed_rate": series('SELECT max("processed_rate") AS v FROM "spark_stream"',
                                 "\"query\" = 'ingest'"),
        "batch_ms": series('SELECT max("batch_duration_ms") AS v FROM "spark_stream"'),
        "lag": series('SELECT max("lag") AS v FROM "stream_lag"'),
        "queue_cpu_max": series('SELECT max("cpu") AS v FROM "queuing_cluster"'),
        "processing_cpu_max": series('SELECT max("cpu") AS v FROM "processing_cluster"',
                                     "\"cluster\" = 'processing'"),
    }
    rows = []
    for ts in sorted(set().union(*[set(c) for c in cols.values()])):
        rows.append({"time_s": round(ts - t0, 1), "policy": policy,
                     **{k: round(v.get(ts, float("nan")), 1) for k, v in cols.items()}})
    return rows


def _utilisation(cli: influx.InfluxDBClient, topo: Topology, start_ns: int, end_ns: int,
                 t0: float) -> list[dict[str, Any]]:
    """Per-node CPU (% of its limit) in 5-s buckets: the input of Fig. 8's power model. A node
    with no sample in a bucket was asleep."""
    rows = []
    for m in ("processing_cluster", "queuing_cluster"):
        res = cli.query(f'SELECT mean("cpu") AS v FROM "{m}" WHERE time >= {start_ns} AND '
                        f'time <= {end_ns} GROUP BY time(5s), "node" fill(none)', epoch="s")
        for (_m, tags), points in res.items():
            node = (tags or {}).get("node", "")
            if node not in {n.name for p in SCALABLE_POOLS for n in topo.pool_nodes(p)}:
                continue
            for pt in points:
                rows.append({"time_s": round(pt["time"] - t0, 1), "node": node,
                             "pool": topo.node(node).pool, "cpu_pct": round(pt["v"], 2),
                             "active": 1})
    return sorted(rows, key=lambda r: (r["time_s"], r["node"]))


def time_to_reliable(lagged: list[tuple[float, float]], surge_at: float,
                     low: float = 1000.0) -> float | None:
    """Seconds from the surge until the stream lag is at or below ``low`` for the rest of the
    run: the first sample after the last one above it (0.0 when the lag never rose above
    ``low`` after the surge; None when the run ended behind). The lag is sampled every 5-35 s,
    so "the first low sample stays low for 30 s" would be met by one sample taken before the
    backlog showed."""
    after = [(t, lag) for t, lag in lagged if t >= surge_at]
    high = [i for i, (_t, lag) in enumerate(after) if lag > low]
    if not high:
        return 0.0
    if high[-1] + 1 >= len(after):
        return None
    return after[high[-1] + 1][0] - surge_at


def _metrics(timeline: list[dict[str, Any]], states: list[tuple[float, dict[str, int]]],
             surge_at: float) -> tuple[float | None, float, float]:
    lagged = [(r["time_s"], r["lag"]) for r in timeline if r["lag"] == r["lag"]]
    reliable = time_to_reliable(lagged, surge_at)
    under = 0.0
    for (t1, l1), (t2, l2) in itertools.pairwise(lagged):
        if l2 > 1000 and l2 > l1:
            under += t2 - t1
    node_s = 0.0
    for (t1, s1), (t2, _s2) in itertools.pairwise(states):
        node_s += (t2 - t1) * sum(s1.values())
    return reliable, under, node_s


def _reversals(actions: list[dict[str, Any]]) -> int:
    n = 0
    for pool in SCALABLE_POOLS:
        seq = [a["action"] for a in actions if a["pool"] == pool]
        changes = sum(1 for a, b in itertools.pairwise(seq) if a != b)
        n += max(0, changes - 1)   # up then down once is the scenario, not a reversal
    return n


def run_one(topo: Topology, run: Run, policy: str, deadline_s: float, work: Path
            ) -> tuple[Result, list[dict[str, Any]]]:
    platform = Platform(topo)
    cli = influx.client(topo)
    restore_initial(topo, platform)
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*.log"):
        old.unlink()   # logs of an earlier run of the same (scenario, policy)
    root = f"/bench/{run.name}-{policy}-{uuid.uuid4().hex[:6]}"
    since_ms = int(time.time() * 1000) - 1000
    start = {"channel-0": stream_end(amqp_params(topo, "channel-0", "admin"), TELEMETRY_STREAM)}
    procs: list[Proc] = []
    job_log = work / "job.log"
    job_log.write_text("")
    job = Proc("job", command(["--root", f"{topo.hdfs_url}{root}", "--starting-offsets",
                               json.dumps(start), *run.job_args]), job_log, env=submit_env())
    procs.append(job)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    py = sys.executable
    if policy in ("ours", "paper"):
        procs.append(Proc("diagnoser", [py, "-m", "diagnoser", "--rules",
                                        str(run.rules_file(work / "rules.yaml")), "--interval",
                                        "5", "--metrics-port", "0", "--name", name,
                                        *(("--mode", "paper") if policy == "paper" else ())],
                          work / "diagnoser.log"))
    if policy != "none":
        procs.append(Proc("orchestrator", [py, "-m", "autoscaler", "--policy", policy,
                                           "--diagnoser", name, *ORCH_FLAGS],
                          work / "orchestrator.log"))
    states: list[tuple[float, dict[str, int]]] = []
    try:
        deadline = time.monotonic() + 240
        while '"event":"started"' not in job_log.read_text(errors="replace"):
            if time.monotonic() > deadline or not job.running():
                raise RuntimeError(f"stream job did not start; see {job_log}")
            time.sleep(1)
        t0 = time.time()
        summary = work / "fleet.json"
        fleet = Proc("fleet", [py, "-m", "sensors_sim", "run", "--scenario",
                               str(run.scenario_file(work / "scenario.yaml")), "--summary",
                               str(summary), "--no-metrics"], work / "fleet.log")
        procs.append(fleet)

        def sample() -> None:
            st = docker_states(platform, topo)
            states.append((time.time() - t0, {p: sum(1 for n in topo.pool_nodes(p)
                                                     if st[n.name] == "active")
                                              for p in SCALABLE_POOLS}))

        while fleet.running():
            sample()
            time.sleep(2)
        sent = json.loads(summary.read_text())["total"]
        ders = set(sent["per_der"])
        end = time.monotonic() + deadline_s
        counts = stored_counts(topo, root, ders, since_ms)
        while time.monotonic() < end:
            sample()
            counts = stored_counts(topo, root, ders, since_ms)
            at_min = all(v <= topo.pools[p].min_active for p, v in states[-1][1].items())
            if counts.raw_distinct >= sent["confirmed"] and (at_min or policy == "none"):
                break
            time.sleep(5)
        sample()
        print(f"  {run.name} / {policy}: stored {counts.raw_distinct} of {sent['confirmed']}",
              flush=True)
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGINT if p.name == "fleet" else signal.SIGTERM)
    t_end = time.time()
    actions = list(cli.query(
        "SELECT \"action\", \"node\", \"pool\", \"outcome\", \"latency_s\" FROM "
        f"\"autoscaler_decision\" WHERE time > {since_ms * 1_000_000} AND \"shadow\" = 'false'",
        epoch="s").get_points())
    timeline = _timeline(cli, since_ms * 1_000_000, int(t_end * 1e9), t0, policy)
    for row in timeline:
        at = [s for t, s in states if t <= row["time_s"]]
        cur = at[-1] if at else (states[0][1] if states else {})
        row["queue_active"] = cur.get("queue")
        row["processing_active"] = cur.get("processing")
    reliable, under, node_s = _metrics(timeline, states, run.surge_at_s)
    lost = (int(sent["dropped_overflow"]) + int(sent["unconfirmed_at_exit"])
            + counts.lost(int(sent["confirmed"])))
    done = [a for a in actions if a["outcome"] == "done"]
    late, worst = commit_latency(job_log)
    res = Result(run.name, policy, int(sent["confirmed"]), lost,
                 counts.raw_rows - counts.raw_distinct, reliable, under, node_s,
                 _reversals(actions),
                 [f"{a['action']} {a['node']} ({a['outcome']}, {a.get('latency_s') or 0:.1f} s)"
                  for a in actions],
                 any(a["action"] == "wake" and a["node"] == run.wakes for a in done),
                 any(a["action"] == "sleep" and a["node"] == run.wakes for a in done),
                 late, worst)
    util = _utilisation(cli, topo, since_ms * 1_000_000, int(t_end * 1e9), t0)
    write_csv(work / "utilisation.csv", util)
    return res, timeline


def _plot(path: Path, run: Run, timelines: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for policy, rows in timelines.items():
        t = [r["time_s"] for r in rows]
        axes[0].plot(t, [r["lag"] for r in rows], label=policy)
        pool = "queue_active" if run.wakes.startswith("channel") else "processing_active"
        axes[1].step(t, [r[pool] for r in rows], where="post", label=policy)
        cpu = "queue_cpu_max" if run.wakes.startswith("channel") else "processing_cpu_max"
        axes[2].plot(t, [r[cpu] for r in rows], label=policy)
    axes[0].set_ylabel("stream lag (readings)")
    axes[1].set_ylabel("active nodes")
    axes[2].set_ylabel("max CPU % of limit")
    axes[2].set_xlabel("seconds since the fleet started")
    for ax in axes:
        ax.axvspan(run.surge_at_s, run.relax_at_s, color="orange", alpha=0.1)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(run.name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge_policy_rows(earlier: list[dict[str, Any]], now: list[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    """This run's rows, after the earlier rows of scenarios this run did not cover."""
    covered = {r["scenario"] for r in now}
    return [r for r in earlier if r.get("scenario") not in covered] + now


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.autoscaler_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="CI size: Fig. 13 only, policies none and ours")
    ap.add_argument("--scenarios", default=None, help="comma list of fig12,fig13")
    ap.add_argument("--policies", default=None, help=f"comma list of {','.join(POLICIES)}")
    ap.add_argument("--deadline", type=float, default=300.0,
                    help="seconds after the fleet for storing and scaling back (default 300)")
    args = ap.parse_args(argv)
    scenarios = (args.scenarios or ("fig13" if args.quick else "fig12,fig13")).split(",")
    policies = (args.policies or ("none,ours" if args.quick else ",".join(POLICIES))).split(",")
    for s in scenarios:
        if s not in RUNS:
            ap.error(f"--scenarios: unknown {s!r} (allowed: {', '.join(RUNS)})")
    for p in policies:
        if p not in POLICIES:
            ap.error(f"--policies: unknown {p!r} (allowed: {', '.join(POLICIES)})")
    topo = load_topology()
    t_start = time.monotonic()
    results: list[Result] = []
    cmd = make_command("bench-autoscaler", list(sys.argv[1:] if argv is None else argv))
    for s in scenarios:
        run = RUNS[s]
        timelines = {}
        out = results_dir(s)
        for p in policies:
            print(f"{s} with policy {p} ...", flush=True)
            res, tl = run_one(topo, run, p, args.deadline,
                              state_dir() / "bench" / f"{s}-{p}")
            results.append(res)
            timelines[p] = tl
        write_csv(out / f"{s}_timeline.csv", [r for tl in timelines.values() for r in tl])
        if s == "fig13" and "ours" in policies:
            # Fig. 8's power model reads the node utilisation of the scaled run.
            src = state_dir() / "bench" / "fig13-ours" / "utilisation.csv"
            if src.exists():
                (results_dir("fig8") / "utilisation.csv").write_text(src.read_text())
        _plot(out / f"{s}.png", run, timelines)
        mine = {r.policy: r for r in results if r.scenario == run.name}
        ours = {f"lost ({p})": mine[p].lost for p in mine}
        ours.update({f"late > 10 s ({p})": mine[p].late for p in mine})
        ours.update({f"worst batch p95 latency ms ({p})": mine[p].latency_p95_max_ms
                     for p in mine})
        ours.update({f"time to reliable s ({p})": mine[p].time_to_reliable_s for p in mine})
        write_summary(out, title=f"{run.name}: wake under load, drain-safe sleep after",
                      command=cmd, paper=PAPER[s], ours=ours, quick=args.quick,
                      duration_s=time.monotonic() - t_start,
                      notes="; ".join(f"{p}: {', '.join(r.actions) or 'no action'}"
                                      for p, r in mine.items()),
                      files=[f"{s}_timeline.csv", f"{s}.png"])
    pol = results_dir("policies")
    rows = [
        {"scenario": r.scenario, "policy": r.policy, "sent": r.sent, "lost": r.lost,
         "duplicates": r.duplicates, "late_over_10s": r.late,
         "latency_p95_max_ms": r.latency_p95_max_ms,
         "time_to_reliable_s": r.time_to_reliable_s,
         "under_provisioned_s": round(r.under_provisioned_s, 1),
         "node_seconds": round(r.node_seconds, 1), "reversals": r.reversals,
         "woke_expected": r.woke_expected, "slept_expected": r.slept_expected}
        for r in results]
    # A run of some scenarios keeps the other scenarios' rows from an earlier run.
    rows = merge_policy_rows(read_csv(pol / "policies.csv"), rows)
    write_csv(pol / "policies.csv", rows)
    write_summary(pol, title="Policies on the same scenarios: none, paper (Alg. 2+3), "
                             "reactive (HPA ratio), ours",
                  command=cmd, paper={"policies compared": "paper mode only"},
                  ours={f"{r['scenario']} {r['policy']}": f"lost {r['lost']}, reliable "
                        f"{r['time_to_reliable_s']}, node-s {float(r['node_seconds']):.0f}, "
                        f"reversals {r['reversals']}" for r in rows},
                  quick=args.quick, duration_s=time.monotonic() - t_start,
                  files=["policies.csv"])
    for r in results:
        print(f"{r.scenario:<24} {r.policy:<9} sent {r.sent:>7} lost {r.lost:>6} late {r.late:>6} "
              f"reliable {r.time_to_reliable_s} s  under {r.under_provisioned_s:.0f} s  "
              f"node-s {r.node_seconds:.0f}  reversals {r.reversals}  {r.actions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
