"""Fig. 11, stragglers under high CPU and high memory utilisation, from the fault bench's windows.

``make bench-faults`` runs two windows on three workers at 300 readings/s: ``straggler`` (a busy
loop in one worker's container: CPU) and ``memory_pressure`` (resident memory up to 90 % of that
worker's limit). This module turns what the diagnoser said in those windows and what the agents
measured into ``results/fig11/``: per window and node, the mean CPU and memory (% of the node's
own limit) and the share of the diagnoser's evaluations that flagged the node as a straggler;
the timelines; and a two-panel PNG like the paper's (a: CPU, b: memory).

The rows are built by pure functions (unit-tested); only :func:`node_samples` reads InfluxDB.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from bench.common import md_table, write_csv
from bench.fault_scoring import STRAGGLER, Window
from bench.report import write_summary
from infra.topology import Topology

FAULTS = {"straggler": "cpu", "memory_pressure": "memory"}   # window -> resource it loads
TIMELINE_FIELDS = ("fault", "repeat", "t_s", "node", "cpu", "memory")
FLAG_FIELDS = ("fault", "repeat", "t_s", "node", "method")
NODE_FIELDS = ("fault", "repeat", "resource", "node", "loaded", "cpu_mean", "memory_mean",
               "evaluations", "flagged", "flagged_share")
PAPER = {"Fig. 11a": "stragglers appear under heavy CPU load",
         "Fig. 11b": "stragglers appear during high memory usage"}


@dataclass(frozen=True)
class Sample:
    time: float          # epoch s
    node: str
    cpu: float
    memory: float


def node_samples(topo: Topology, start: float, end: float) -> list[Sample]:
    """The processing nodes' agent samples in [start, end] (InfluxDB ``processing_cluster``)."""
    from monitor import history
    from monitor.schema import PROCESSING

    workers = {n.name for n in topo.pool_nodes("processing")}
    out = []
    for p in history.fetch(topo, {PROCESSING.name: ("cpu", "memory")}, int(start * 1e9),
                           int(end * 1e9)):
        node, f = str(p["tags"].get("node", "")), p["fields"]
        if node in workers and "cpu" in f and "memory" in f:
            out.append(Sample(int(p["time"]) / 1e9, node, float(f["cpu"]), float(f["memory"])))
    return sorted(out, key=lambda s: (s.time, s.node))


def node_rows(w: Window, loaded: str, samples: Sequence[Sample], n_evals: int
              ) -> list[dict[str, object]]:
    """One row per node of the window: mean CPU and memory, evaluations flagging it."""
    flags: dict[str, set[float]] = defaultdict(set)
    for o in w.observed:
        if o.label == STRAGGLER and o.node and o.time <= w.end:
            flags[o.node].add(round(o.time, 1))
    by_node: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_node[s.node].append(s)
    rows = []
    for node in sorted(set(by_node) | set(flags)):
        mine = by_node.get(node, [])
        flagged = len(flags.get(node, ()))
        rows.append({
            "fault": w.fault, "repeat": w.repeat, "resource": FAULTS.get(w.fault, ""),
            "node": node, "loaded": int(node == loaded),
            "cpu_mean": round(mean(s.cpu for s in mine), 1) if mine else None,
            "memory_mean": round(mean(s.memory for s in mine), 1) if mine else None,
            "evaluations": n_evals, "flagged": flagged,
            "flagged_share": round(flagged / n_evals, 3) if n_evals else None})
    return rows


def summarise(rows: Iterable[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per fault: the loaded node's and its peers' mean CPU/memory and flagged share."""
    out: dict[str, dict[str, object]] = {}
    by_fault: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in rows:
        by_fault[str(r["fault"])].append(r)

    def avg(rs: list[dict[str, object]], key: str) -> float | None:
        xs = [float(r[key]) for r in rs if r[key] is not None]  # type: ignore[arg-type]
        return round(mean(xs), 3) if xs else None

    for fault, rs in by_fault.items():
        loaded = [r for r in rs if r["loaded"]]
        peers = [r for r in rs if not r["loaded"]]
        out[fault] = {
            "windows": len({r["repeat"] for r in rs}),
            "loaded node cpu % (mean)": avg(loaded, "cpu_mean"),
            "peer nodes cpu % (mean)": avg(peers, "cpu_mean"),
            "loaded node memory % (mean)": avg(loaded, "memory_mean"),
            "peer nodes memory % (mean)": avg(peers, "memory_mean"),
            "evaluations flagging the loaded node": avg(loaded, "flagged_share"),
            "evaluations flagging a peer node": avg(peers, "flagged_share"),
            "windows with the loaded node flagged": sum(1 for r in loaded if r["flagged"]),
        }
    return out


def plot(path: Path, timelines: dict[str, list[Sample]], flags: dict[str, list[tuple[float, str]]],
         loaded: dict[str, str]) -> None:
    """Panel per window kind (first repeat): the loaded resource per worker over the seconds
    since the fault started (``Sample.time`` and flag times are relative), a line per straggler
    flag (red: the loaded worker ``loaded[fault]``, grey: another)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (fault, resource) in zip(axes, FAULTS.items(), strict=True):
        samples = timelines.get(fault, [])
        for node in sorted({s.node for s in samples}):
            mine = [s for s in samples if s.node == node]
            ax.plot([s.time for s in mine], [getattr(s, resource) for s in mine],
                    label=f"{node}{' (loaded)' if node == loaded.get(fault) else ''}",
                    lw=2 if node == loaded.get(fault) else 1)
        labelled: set[bool] = set()
        for t, node in flags.get(fault, []):
            hit = node == loaded.get(fault)
            ax.axvline(t, color="red" if hit else "grey", alpha=0.35, lw=1,
                       label=None if hit in labelled else
                       ("loaded node flagged" if hit else "another node flagged"))
            labelled.add(hit)
        ax.set_title(f"({'ab'[list(FAULTS).index(fault)]}) stragglers under high {resource}")
        ax.set_xlabel("s since the fault started")
        ax.set_ylabel(f"{resource} % of the node's limit")
        ax.set_ylim(0, 105)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, topo: Topology, windows: Sequence[tuple[Window, int]],
          loaded: dict[str, str], command: str, quick: bool, started: str,
          duration_s: float) -> None:
    """``results/fig11/`` from the CPU and memory straggler windows of a fault-bench run, each
    with the number of evaluations its diagnoser ran."""
    chosen = [(w, n) for w, n in windows if w.fault in FAULTS]
    if not chosen:
        return
    out.mkdir(parents=True, exist_ok=True)
    timeline, flag_rows, rows = [], [], []
    first: dict[str, list[Sample]] = {}
    first_flags: dict[str, list[tuple[float, str]]] = {}
    for w, n_evals in chosen:
        samples = node_samples(topo, w.start, w.end)
        timeline += [{"fault": w.fault, "repeat": w.repeat, "t_s": round(s.time - w.start, 1),
                      "node": s.node, "cpu": s.cpu, "memory": s.memory} for s in samples]
        flagged = [o for o in w.observed if o.label == STRAGGLER and o.time <= w.end]
        flag_rows += [{"fault": w.fault, "repeat": w.repeat, "t_s": round(o.time - w.start, 1),
                       "node": o.node, "method": o.rule} for o in flagged]
        rows += node_rows(w, loaded[w.fault], samples, n_evals)
        if w.fault not in first:
            first[w.fault] = [Sample(s.time - w.start, s.node, s.cpu, s.memory)
                              for s in samples if s.time >= w.start]
            first_flags[w.fault] = [(o.time - w.start, str(o.node)) for o in flagged]
    write_csv(out / "fig11.csv", rows, NODE_FIELDS)
    write_csv(out / "fig11_timeline.csv", timeline, TIMELINE_FIELDS)
    write_csv(out / "fig11_stragglers.csv", flag_rows, FLAG_FIELDS)
    plot(out / "fig11.png", first, first_flags, loaded)
    ours = summarise(rows)
    table = md_table(("window", "node", "loaded", "CPU %", "memory %", "flagged / evaluations"),
                     [(f"{r['fault']} r{r['repeat']}", r["node"], "yes" if r["loaded"] else "",
                       r["cpu_mean"], r["memory_mean"], f"{r['flagged']}/{r['evaluations']}")
                      for r in rows])
    write_summary(
        out, title="Stragglers under high CPU and memory utilisation", command=command,
        quick=quick, started=started, duration_s=duration_s, paper=PAPER, ours=ours,
        notes=("Three workers (0.5 CPU, 1.5 GB each) under 300 readings/s; in `straggler` a "
               "busy loop in the loaded worker's container takes half its CPU quota, in "
               "`memory_pressure` a process holds resident memory up to 90 % of its limit. "
               "A node counts as flagged in an evaluation when any straggler detector named it "
               "(task: median + 3 robust spreads; node: processing rate, or its tasks' "
               "slowness against the same stages' medians, AutoDiagn's 1.5 factor). CPU and "
               "memory are the agents' samples in % of each node's own limit.\n\n" + table),
        files=["fig11.csv", "fig11_timeline.csv", "fig11_stragglers.csv", "fig11.png"])
