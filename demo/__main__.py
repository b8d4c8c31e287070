"""``make demo``: the whole system on one scenario that overloads and then relaxes it.

    python -m demo [--short] [--down] [--refresh S]

Starts (on the platform ``make up`` brought up) the streaming job (raw + twin + aggregates),
the diagnoser and the orchestrator with the demo's timings, then a DER fleet on the scenario,
and shows a live status view: readings/s in and processed, queue depth per channel, active and
dormant nodes, newest RCA label and orchestrator action, twin totals. When the fleet is done it
waits until Spark stored everything and the woken nodes went back to sleep, prints a summary
(readings sent, stored, quarantined, lost; actions taken), writes it to
``.state/demo/summary.json`` and exits non-zero if anything was lost. The platform keeps
running for Grafana unless ``--down``. Ctrl-C stops cleanly (and still summarises).

``--short`` (CI): a 2-minute scenario and shorter rule hold times; the full demo runs the
shipped ``demo`` scenario.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from autoscaler.realise import restore_initial
from autoscaler.service import docker_states
from bench.scenarios import FIG13, Run
from demo.view import collect, one_line, render
from infra import services
from infra.lifecycle import StopFlag
from infra.platform import Platform
from infra.procs import Proc
from infra.state import state_dir
from infra.topology import SCALABLE_POOLS, Topology, load_topology
from monitor import influx
from sensors_sim.scenario import load_scenario
from spark_jobs.audit import stored_counts
from spark_jobs.session import submit_env
from spark_jobs.submit import command

# A fresh root (tables + checkpoints) per run, so the summary's tables hold this run only. (The
# DERs of a scenario count seq from 0 again; the dedupe key's event time tells them apart from
# the previous run's readings.)
HDFS_PREFIX = "/vpp/demo"


@dataclass(frozen=True)
class Profile:
    """What differs between the full and the short demo."""

    name: str
    run: Run                          # scenario + rule hold times (bench.scenarios)
    rate_scale: float
    orchestrator: tuple[str, ...]     # python -m autoscaler flags
    settle_timeout_s: float           # after the fleet: wait this long for store + scale-down


# The full demo: the shipped `demo` scenario (base, overload, relax) at a quarter of its rate
# (one 0.5-CPU worker runs the full job at ~200-250 readings/s here), with rule hold times of
# a minute and a half so the scale-down shows within the run.
FULL_RUN = Run("demo", [], 600, 90, 330,
               {"processing_idle": 90, "queue_idle": 90, "processing_behind": 30}, (),
               "worker-1")
FULL = Profile("full", FULL_RUN, 0.25, ("--cooldown", "45", "--scale-down-delay", "30"), 420)
# The short demo (CI) is the Fig. 13 run of the benches: 2 DERs, 3 more, then they leave.
SHORT = Profile("short", FIG13, 1.0, ("--interval", "5", "--cooldown", "20",
                                      "--scale-down-delay", "10"), 300)


def scenario_path(profile: Profile, out: Path) -> str:
    if not profile.run.phases:
        return profile.run.name       # a shipped scenario
    return str(profile.run.scenario_file(out))


def phase_at(phases: list[tuple[float, str]], elapsed: float) -> str:
    now = "starting"
    for at, note in phases:
        if elapsed >= at:
            now = note
    return now


def _log_has(path: Path, needle: str) -> bool:
    try:
        return needle in path.read_text(errors="replace")
    except OSError:
        return False


def _count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _actions(cli: influx.InfluxDBClient, since_ns: int) -> list[dict]:
    return list(cli.query(
        "SELECT \"action\", \"node\", \"pool\", \"outcome\", \"latency_s\", \"label\" FROM "
        f"\"autoscaler_decision\" WHERE time > {since_ns} AND \"shadow\" = 'false'").get_points())


class Demo:
    def __init__(self, topo: Topology, profile: Profile, refresh_s: float, stop: StopFlag
                 ) -> None:
        self.topo, self.profile, self.refresh_s, self.stop = topo, profile, refresh_s, stop
        self.platform = Platform(topo)
        self.cli = influx.client(topo)
        self.dir = state_dir() / "demo"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tty = sys.stdout.isatty()
        self.t0 = time.monotonic()
        self.started_ms = int(time.time() * 1000) - 1000
        self.root = f"{HDFS_PREFIX}/{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"

    def show(self, phase: str) -> None:
        try:
            snap = collect(self.topo, self.cli, docker_states(self.platform, self.topo),
                           time.monotonic() - self.t0, phase)
        except Exception as exc:   # InfluxDB busy: skip one refresh
            print(f"(status unavailable: {exc!r:.120})", flush=True)
            return
        if self.tty:
            print("\033[H\033[2J" + "\n".join(render(snap, self.topo)), flush=True)
        else:
            print(one_line(snap), flush=True)

    def wait(self, seconds: float, phase: str, until=lambda: False) -> None:
        end = time.monotonic() + seconds
        while not self.stop() and time.monotonic() < end and not until():
            self.show(phase)
            time.sleep(self.refresh_s)

    def run(self) -> dict:
        p = self.profile
        restore_initial(self.topo, self.platform)
        rules = p.run.rules_file(self.dir / "rules.yaml")
        scenario = scenario_path(p, self.dir / "scenario.yaml")
        phases = [(ph.at_s, ph.note or "") for ph in load_scenario(scenario).phases]
        # The platform's diagnoser runs with the demo's hold times; the orchestrator follows it.
        diag = services.by_name("diagnoser")
        orch = services.by_name("orchestrator")
        services.stop(diag)
        services.start(diag, ("--rules", str(rules), "--interval", "5"))
        services.start(orch, p.orchestrator)
        job_log = self.dir / "job.log"
        job_log.write_text("")
        job = Proc("stream job", command(["--root", f"{self.topo.hdfs_url}{self.root}",
                                          "--starting-offsets", "latest"]),
                   job_log, env=submit_env())
        fleet = None
        summary_path = self.dir / "fleet.json"
        summary_path.unlink(missing_ok=True)
        try:
            print("starting the stream job (spark-submit) ...", flush=True)
            self.wait(240, "job start", lambda: _log_has(job_log, '"event":"started"')
                      or not job.running())
            if not job.running():
                raise RuntimeError(f"the stream job exited; see {job_log}")
            self.t0 = time.monotonic()
            fleet = Proc("fleet", [sys.executable, "-m", "sensors_sim", "run", "--scenario",
                                   scenario, "--rate-scale", str(p.rate_scale), "--summary",
                                   str(summary_path)], self.dir / "fleet.log")
            while not self.stop() and fleet.running():
                self.show(phase_at(phases, time.monotonic() - self.t0))
                time.sleep(self.refresh_s)
            fleet.stop(signal.SIGINT)
            sent = json.loads(summary_path.read_text())["total"] if summary_path.exists() \
                else {}
            ders = set(sent.get("per_der", {}))
            confirmed = int(sent.get("confirmed", 0))

            def settled() -> bool:
                counts = stored_counts(self.topo, self.root, ders, self.started_ms)
                states = docker_states(self.platform, self.topo)
                at_min = all(sum(1 for n in self.topo.pool_nodes(pl)
                                 if states[n.name] == "active") <= self.topo.pools[pl].min_active
                             for pl in SCALABLE_POOLS)
                return counts.raw_distinct + counts.quarantined >= confirmed and at_min

            self.wait(p.settle_timeout_s, "settle: store + scale down", settled)
            counts = stored_counts(self.topo, self.root, ders, self.started_ms)
            return self.summary(sent, counts)
        finally:
            if fleet is not None:
                fleet.stop(signal.SIGINT)
            job.stop()
            services.stop(orch)
            services.stop(diag)
            services.start(diag)

    def summary(self, sent: dict, counts) -> dict:
        confirmed = int(sent.get("confirmed", 0))
        actions = _actions(self.cli, self.started_ms * 1_000_000)
        out = {
            "readings_generated": int(sent.get("generated", 0)),
            "readings_sent": confirmed,
            "dropped_overflow": int(sent.get("dropped_overflow", 0)),
            "unconfirmed_at_exit": int(sent.get("unconfirmed_at_exit", 0)),
            "stored": counts.raw_distinct,
            "stored_rows": counts.raw_rows,
            "duplicates": counts.raw_rows - counts.raw_distinct,
            "quarantined": counts.quarantined,
            "lost": counts.lost(confirmed),
            "actions": [f"{a['action']} {a['node']} ({a['outcome']}, "
                        f"{(a.get('latency_s') or 0):.1f} s)" for a in actions],
            "interrupted": bool(self.stop()),
            "profile": self.profile.name,
            "hdfs_root": self.root,
            "job_query_failures": _count(self.dir / "job.log", '"event":"query_failed"'),
        }
        (self.dir / "summary.json").write_text(json.dumps(out, indent=1))
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="CI-sized run (a few minutes)")
    ap.add_argument("--down", action="store_true", help="stop the platform at the end")
    ap.add_argument("--refresh", type=float, default=3.0, help="seconds between status views")
    args = ap.parse_args(argv)
    if not args.refresh > 0:
        ap.error(f"--refresh must be > 0, got {args.refresh}")
    topo = load_topology()
    stop = StopFlag()
    demo = Demo(topo, SHORT if args.short else FULL, args.refresh, stop)
    try:
        out = demo.run()
    finally:
        if args.down:
            for svc in services.SERVICES:
                services.stop(svc)
            with contextlib.suppress(Exception):
                demo.platform.down()
    print("\n=== demo summary ===")
    for k, v in out.items():
        if k != "actions":
            print(f"  {k:<20} {v}")
    print(f"  actions taken ({len(out['actions'])}):")
    for a in out["actions"]:
        print(f"    {a}")
    print(f"  (also in {demo.dir / 'summary.json'}; Grafana dashboards: infra/grafana/)")
    ok = out["lost"] == 0 and out["duplicates"] == 0 and out["readings_sent"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
