"""Table IV: the monitoring framework's own cost, from each component's ``/metrics``.

    python -m bench.overhead [--seconds 120] [--quick]

Reads ``process_cpu_seconds_total`` and ``process_resident_memory_bytes`` (prometheus-client's
process collector) of every running project component at the start and the end of the window:
the node agents (one per active container, Alg. 1's logger), the metrics writer and the queue
collector (the "data collector"), the diagnoser (the root-cause analyser) and the orchestrator
if it runs. CPU is reported in % of one core over the window and in % of the node's own CPU
limit for the agents; memory in MB and in % of the node's memory limit (agents) or of the host.
The paper's Table IV is per VM: logger 0.9-2.7 % CPU, analyser 3.71 % CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass

import requests

from bench.common import results_dir, write_csv
from bench.report import write_summary
from infra.topology import Topology, load_topology

PAPER = {"logger CPU %": "0.9-2.7 (per VM)", "root-cause analyser CPU %": 3.71}
_METRIC = re.compile(r"^(process_cpu_seconds_total|process_resident_memory_bytes) (\S+)$", re.M)


@dataclass(frozen=True)
class Target:
    component: str
    kind: str             # agent | writer | collector | diagnoser | orchestrator
    port: int
    cpus: float | None    # the node's CPU limit (agents)
    memory_mb: float | None


def targets(topo: Topology) -> list[Target]:
    out = []
    for i, node in enumerate(topo.nodes):
        out.append(Target(f"agent@{node.name}", "agent", topo.services["node_agents"].at(i),
                          node.cpus, node.memory_mb))
    for kind, key in (("writer", "metrics_writer"), ("collector", "collector"),
                      ("diagnoser", "diagnoser"), ("orchestrator", "orchestrator")):
        out.append(Target(kind, kind, topo.services[key].port, None, None))
    return out


def scrape(topo: Topology, t: Target) -> tuple[float, float] | None:
    try:
        text = requests.get(f"http://{topo.bind_host}:{t.port}/metrics", timeout=3).text
    except requests.RequestException:
        return None
    got = dict(_METRIC.findall(text))
    if "process_cpu_seconds_total" not in got:
        return None
    return float(got["process_cpu_seconds_total"]), float(got["process_resident_memory_bytes"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--quick", action="store_true", help="30 s window")
    args = ap.parse_args(argv)
    window = 30.0 if args.quick else args.seconds
    if not window > 0:
        ap.error("--seconds must be > 0")
    topo = load_topology()
    host_mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    ts = targets(topo)
    first = {t.component: (time.monotonic(), scrape(topo, t)) for t in ts}
    print(f"sampling {sum(1 for v in first.values() if v[1])} components for {window:.0f} s",
          flush=True)
    time.sleep(window)
    rows = []
    for t in ts:
        t0, a = first[t.component]
        b = scrape(topo, t)
        if a is None or b is None:
            continue
        core_pct = 100.0 * (b[0] - a[0]) / (time.monotonic() - t0)
        mem_mb = b[1] / 2**20
        rows.append({"component": t.component, "kind": t.kind,
                     "cpu_pct_of_core": round(core_pct, 3),
                     "cpu_pct_of_node_limit": round(core_pct / t.cpus, 3) if t.cpus else None,
                     "mem_mb": round(mem_mb, 1),
                     "mem_pct": round(100 * mem_mb / (t.memory_mb or host_mem_mb), 3),
                     "samples": 2})
    out = results_dir("table4")
    write_csv(out / "table4.csv", rows)
    agents = [r for r in rows if r["kind"] == "agent"]
    ours: dict[str, object] = {}
    if agents:
        ours["logger CPU %"] = (f"{min(r['cpu_pct_of_core'] for r in agents):.2f}-"
                                f"{max(r['cpu_pct_of_core'] for r in agents):.2f} of a core")
        ours["logger memory MB (max)"] = max(r["mem_mb"] for r in agents)
    for r in rows:
        if r["kind"] == "diagnoser":
            ours["root-cause analyser CPU %"] = r["cpu_pct_of_core"]
            ours["root-cause analyser memory MB"] = r["mem_mb"]
        if r["kind"] in ("writer", "collector", "orchestrator"):
            ours[f"{r['kind']} CPU %"] = r["cpu_pct_of_core"]
    write_summary(out, title="Table IV: overhead of the monitoring framework",
                  command="make bench-overhead" + (" BENCH_ARGS=--quick" if args.quick else ""),
                  paper=PAPER, ours=ours, quick=args.quick, duration_s=window,
                  notes="CPU over the window from process_cpu_seconds_total, % of one core "
                        "(the agents also as % of their node's limit); goal for the analyser "
                        "<= 0.5 % of a core.",
                  files=["table4.csv"])
    for r in rows:
        print(f"  {r['component']:<22} cpu {r['cpu_pct_of_core']:6.2f} % of a core  "
              f"mem {r['mem_mb']:7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
