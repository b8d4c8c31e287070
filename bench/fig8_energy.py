"""Fig. 8 / Table V: the paper's power model (Eq. 17-19) applied to measured CPU utilisation.

    python -m bench.fig8_energy [--results DIR] [--input CSV] [--p-max W] [--idle-fraction F]

The model (Sec. V-F of the paper, after Beloglazov et al. [25]):

- Eq. 17, utilisation of server m: ``U_m = sum_i h_i * R_cpu_i / CPU_m`` — the CPU the hosted
  VMs need over the server's capacity (:func:`server_utilisation`). A node here is one container
  with its own CPU quota, and the monitor's ``cpu`` field already is its CPU time over wall time
  and quota (``monitor/cgroup.py``), i.e. Eq. 17 with one hosted VM: ``U = cpu_pct / 100``
  (clipped to [0, 1]; a reading can exceed 100 % by sampling jitter).
- Eq. 18, power of a server: ``Q = 0.7 Q_max + 0.3 Q_max U`` — linear from an idle power of
  70 % of the peak to the peak; :func:`node_power` takes ``p_idle`` and ``p_max`` and is Eq. 18
  when ``p_idle = 0.7 p_max``.
- Eq. 19, energy: ``sum over servers of the integral of Q over [t1, t2]``
  (:func:`cluster_energy`, trapezoid rule over the samples).

Assumptions (the paper gives no Q_max): ``p_max`` = 70 W, the top of Table V's "dynamic power
per node 55-70 W"; with Eq. 18's idle share that puts idle at 49 W, matching the text's "ranges
from 50 to 70 watts". Each node is modelled as its own server of that kind, although all the
containers share one VM here. A dormant (sleeping) node is not in the allocation H and draws
``p_sleep`` = 0 W. Table V's energies (8900-9500 J over 60-95 s, i.e. 94-158 W) do not follow
from its own power range, so only the power range is used as a parameter.

Input: ``results/fig8/utilisation.csv`` (time_s, node, pool, cpu_pct, active), written by another
bench. Without it this prints so and exits 0, writing nothing. Output:

- ``results/fig8/fig8_energy.csv``: pool (``all`` or a pool), active_nodes, duration_s, energy_j,
  mean_power_w, mean_power_per_node_w, mean_cpu_pct — every interval between two sample times is
  counted at the number of nodes active at its start;
- ``results/fig8/fig8_power.csv``: time_s, pool, active_nodes, power_w;
- ``results/fig8/fig8.png``, ``summary.json``;
- ``results/table5/table5.csv``: node, pool, active_s, energy_j, mean_power_w, min_power_w,
  max_power_w (Table V, per machine), ``table5.png``, ``summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_csv
from bench.report import default_results, now_iso, write_summary

P_MAX_W = 70.0        # Table V: dynamic power per node 55-70 W -> the peak
IDLE_FRACTION = 0.7   # Eq. 18: Q = 0.7 Q_max + 0.3 Q_max U
P_IDLE_W = IDLE_FRACTION * P_MAX_W
P_SLEEP_W = 0.0       # a dormant node is outside the allocation H
COLUMNS = ("time_s", "node", "pool", "cpu_pct", "active")


# -- the model (pure) ---------------------------------------------------------------------------

def server_utilisation(demands: Sequence[float], capacity: float,
                       hosted: Sequence[bool | int] | None = None) -> float:
    """Eq. 17: ``sum_i h_i R_cpu_i / CPU_m``, clipped to [0, 1]."""
    if capacity <= 0:
        raise ValueError("capacity must be > 0")
    h = [1] * len(demands) if hosted is None else hosted
    if len(h) != len(demands):
        raise ValueError("hosted and demands differ in length")
    u = sum(float(d) for d, hi in zip(demands, h, strict=True) if hi) / capacity
    return min(max(u, 0.0), 1.0)


def node_power(util: Any, p_idle: float = P_IDLE_W, p_max: float = P_MAX_W) -> Any:
    """Eq. 18: power (W) of an active server at utilisation ``util`` in [0, 1] (clipped):
    ``p_idle + (p_max - p_idle) * util``. Scalars give a float, arrays an array."""
    if p_max < p_idle or p_idle < 0:
        raise ValueError(f"need 0 <= p_idle <= p_max, got p_idle={p_idle}, p_max={p_max}")
    u = np.clip(np.asarray(util, dtype=float), 0.0, 1.0)
    p = p_idle + (p_max - p_idle) * u
    return float(p) if p.ndim == 0 else p


def power_series(utils: Any, active: Any = None, *, p_idle: float = P_IDLE_W,
                 p_max: float = P_MAX_W, p_sleep: float = P_SLEEP_W) -> np.ndarray:
    """Per-sample, per-node power: Eq. 18 where active, ``p_sleep`` where not."""
    u = np.asarray(utils, dtype=float)
    p = np.asarray(node_power(u, p_idle, p_max), dtype=float)
    if active is None:
        return p
    return np.where(np.asarray(active, dtype=bool), p, p_sleep)


def interval_energy(times_s: Any, power_w: Any) -> np.ndarray:
    """Trapezoid energy (J) of each interval between consecutive samples; ``power_w`` is (T,)
    or (T, N) and the result (T-1,) or (T-1, N)."""
    t = np.asarray(times_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    if t.ndim != 1 or p.shape[0] != t.shape[0]:
        raise ValueError(f"times {t.shape} and power {p.shape} do not line up")
    dt = np.diff(t)
    if np.any(dt < 0):
        raise ValueError("times must be non-decreasing")
    mid = (p[1:] + p[:-1]) / 2.0
    return mid * (dt if p.ndim == 1 else dt[:, None])


def cluster_energy(times_s: Any, utils: Any, active: Any = None, *, p_idle: float = P_IDLE_W,
                   p_max: float = P_MAX_W, p_sleep: float = P_SLEEP_W) -> float:
    """Eq. 19: energy (J) of all nodes over [t_0, t_end]. ``utils`` (and ``active``) are (T,)
    for one node or (T, N) for N nodes sampled at ``times_s`` (T,)."""
    p = power_series(utils, active, p_idle=p_idle, p_max=p_max, p_sleep=p_sleep)
    if p.shape[0] < 2:
        return 0.0
    return float(interval_energy(times_s, p).sum())


# -- the measured input -------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """Samples aligned on the union of sample times: ``util``/``active`` are (T, N)."""
    times: np.ndarray
    nodes: list[str]
    pools: list[str]
    util: np.ndarray
    active: np.ndarray

    def select(self, pool: str | None) -> Grid:
        if pool is None:
            return self
        idx = [i for i, p in enumerate(self.pools) if p == pool]
        return Grid(self.times, [self.nodes[i] for i in idx], [self.pools[i] for i in idx],
                    self.util[:, idx], self.active[:, idx])


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "1.0", "true", "yes", "y", "t", "active"}


def read_utilisation(path: Path) -> list[dict[str, Any]]:
    """Rows of the input CSV; rows with an unreadable time or cpu_pct are skipped."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: missing columns {', '.join(absent)}")
        rows = []
        for r in reader:
            try:
                t, cpu = float(r["time_s"]), float(r["cpu_pct"])
            except (TypeError, ValueError):
                continue
            if np.isfinite(t) and np.isfinite(cpu):
                rows.append({"time_s": t, "node": r["node"], "pool": r["pool"],
                             "cpu_pct": cpu, "active": _truthy(r["active"])})
    return rows


def build_grid(rows: Sequence[Mapping[str, Any]], hold_s: float | None = None) -> Grid:
    """Align every node on the union of sample times. A node's sample holds until its next one,
    for at most ``hold_s`` (default 1.5 x the median sampling interval); past that, and before
    its first sample, the node counts as not active (a node that stopped reporting is asleep)."""
    times = np.unique(np.array([float(r["time_s"]) for r in rows]))
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_node.setdefault(str(r["node"]), []).append(r)
    nodes = sorted(by_node)
    if hold_s is None:
        gaps = np.concatenate([np.diff(np.unique([float(r["time_s"]) for r in rs]))
                               for rs in by_node.values()] or [np.array([])])
        gaps = gaps[gaps > 0]
        hold_s = 1.5 * float(np.median(gaps)) if gaps.size else 0.0
    util = np.zeros((times.size, len(nodes)))
    active = np.zeros((times.size, len(nodes)), dtype=bool)
    pools = []
    for j, node in enumerate(nodes):
        rs = sorted(by_node[node], key=lambda r: float(r["time_s"]))
        pools.append(str(rs[-1]["pool"]))
        ts = np.array([float(r["time_s"]) for r in rs])
        us = np.array([float(r["cpu_pct"]) / 100.0 for r in rs])
        acts = np.array([bool(r["active"]) for r in rs])
        idx = np.searchsorted(ts, times, side="right") - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        ok &= (times - ts[safe]) <= hold_s + 1e-9
        util[:, j] = np.where(ok, np.clip(us[safe], 0.0, 1.0), 0.0)
        active[:, j] = ok & acts[safe]
    return Grid(times, nodes, pools, util, active)


def energy_by_active_count(grid: Grid, *, p_idle: float = P_IDLE_W, p_max: float = P_MAX_W,
                           p_sleep: float = P_SLEEP_W) -> list[dict[str, Any]]:
    """Energy, time and mean power at each active-node count (interval counted at its start)."""
    if grid.times.size < 2 or not grid.nodes:
        return []
    p = power_series(grid.util, grid.active, p_idle=p_idle, p_max=p_max, p_sleep=p_sleep)
    e = interval_energy(grid.times, p.sum(axis=1))
    dt = np.diff(grid.times)
    count = grid.active[:-1].sum(axis=1)
    n_act = np.maximum(grid.active.sum(axis=1), 1)
    mean_util = (grid.util * grid.active).sum(axis=1) / n_act
    rows = []
    for k in sorted(set(count.tolist())):
        sel = count == k
        dur = float(dt[sel].sum())
        if dur <= 0:
            continue
        energy = float(e[sel].sum())
        rows.append({"active_nodes": int(k), "duration_s": round(dur, 3),
                     "energy_j": round(energy, 2), "mean_power_w": round(energy / dur, 3),
                     "mean_power_per_node_w": round(energy / dur / k, 3) if k else None,
                     "mean_cpu_pct": round(100 * float((mean_util[:-1][sel] * dt[sel]).sum())
                                           / dur, 2) if k else None})
    return rows


def power_timeline(grid: Grid, *, p_idle: float = P_IDLE_W, p_max: float = P_MAX_W,
                   p_sleep: float = P_SLEEP_W) -> list[dict[str, Any]]:
    p = power_series(grid.util, grid.active, p_idle=p_idle, p_max=p_max, p_sleep=p_sleep)
    return [{"time_s": float(t), "active_nodes": int(a), "power_w": round(float(w), 3)}
            for t, a, w in zip(grid.times, grid.active.sum(axis=1), p.sum(axis=1), strict=True)]


def per_node(grid: Grid, *, p_idle: float = P_IDLE_W, p_max: float = P_MAX_W,
             p_sleep: float = P_SLEEP_W) -> list[dict[str, Any]]:
    """Table V per machine: time active, energy (Eq. 19 for one node), mean/min/max power."""
    rows = []
    if grid.times.size < 2:
        return rows
    p = power_series(grid.util, grid.active, p_idle=p_idle, p_max=p_max, p_sleep=p_sleep)
    e = interval_energy(grid.times, p)
    dt = np.diff(grid.times)
    for j, node in enumerate(grid.nodes):
        act = grid.active[:, j]
        active_s = float(dt[act[:-1]].sum())
        if not act.any():
            continue
        energy = float(e[:, j].sum())
        rows.append({"node": node, "pool": grid.pools[j], "active_s": round(active_s, 3),
                     "energy_j": round(energy, 2),
                     "mean_power_w": round(energy / active_s, 3) if active_s > 0 else None,
                     "min_power_w": round(float(p[act, j].min()), 3),
                     "max_power_w": round(float(p[act, j].max()), 3)})
    return rows


# -- output -------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_fig8(energy: Sequence[Mapping[str, Any]], timeline: Sequence[Mapping[str, Any]],
              path: Path, p_idle: float, p_max: float) -> None:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    for scope in dict.fromkeys(r["pool"] for r in energy):
        rs = [r for r in energy if r["pool"] == scope and r["active_nodes"] > 0]
        a.plot([r["active_nodes"] for r in rs], [r["mean_power_w"] for r in rs], "o-",
               label=scope)
    a.set_xlabel("active nodes")
    a.xaxis.set_major_locator(MaxNLocator(integer=True))
    a.set_ylabel("mean power (W) = energy per second")
    a.set_title("(a) power vs active nodes")
    a.legend(fontsize=8)
    rs = [r for r in energy if r["pool"] == "all"]
    b.bar([str(r["active_nodes"]) for r in rs], [r["energy_j"] / 1000 for r in rs])
    for i, r in enumerate(rs):
        b.text(i, r["energy_j"] / 1000, f"{r['duration_s']:.0f} s", ha="center", va="bottom",
               fontsize=8)
    b.set_xlabel("active nodes (all pools)")
    b.set_ylabel("energy (kJ)")
    b.set_title("(b) energy spent at each node count")
    tl = [r for r in timeline if r["pool"] == "all"]
    c.plot([r["time_s"] for r in tl], [r["power_w"] for r in tl], color="C3")
    c.set_xlabel("time (s)")
    c.set_ylabel("cluster power (W)", color="C3")
    c2 = c.twinx()
    c2.step([r["time_s"] for r in tl], [r["active_nodes"] for r in tl], where="post", color="0.4")
    c2.set_ylabel("active nodes")
    c2.yaxis.set_major_locator(MaxNLocator(integer=True))
    c.set_title("(c) power over time")
    fig.suptitle(f"Fig. 8: Eq. 17-19 power model (p_idle {p_idle:g} W, p_max {p_max:g} W)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_table5(nodes: Sequence[Mapping[str, Any]], path: Path) -> None:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [r["node"] for r in nodes]
    a.bar(names, [r["mean_power_w"] or 0 for r in nodes])
    a.errorbar(names, [r["mean_power_w"] or 0 for r in nodes],
               yerr=[[max(0.0, (r["mean_power_w"] or 0) - r["min_power_w"]) for r in nodes],
                     [max(0.0, r["max_power_w"] - (r["mean_power_w"] or 0)) for r in nodes]],
               fmt="none", color="k", capsize=3)
    a.axhspan(55, 70, color="0.8", alpha=0.5, label="paper: 55-70 W")
    a.set_ylabel("power while active (W)")
    a.legend(fontsize=8)
    b.scatter([r["active_s"] for r in nodes], [r["energy_j"] for r in nodes])
    for r in nodes:
        b.annotate(r["node"], (r["active_s"], r["energy_j"]), fontsize=7)
    b.set_xlabel("time active (s)")
    b.set_ylabel("energy (J)")
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle("Table V: power and energy per machine")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _range(values: Sequence[float], unit: str) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    lo, hi = min(vals), max(vals)
    return f"{lo:.0f} {unit}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} {unit}"


def trend(xs: Sequence[float], ys: Sequence[float]) -> str:
    if len(xs) < 2:
        return "one node count only"
    slope = float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])
    return "increases" if slope > 0 else ("decreases" if slope < 0 else "flat")


def by_workers(rows: Sequence[Mapping[str, Any]], column: str) -> dict[int, float]:
    """Workers -> ``column`` of the stream bench's per-worker-count CSVs (``capacity.csv``:
    ``batch_median_s``, the paper's execution time, measured on the same offered load for every
    count; ``stragglers.csv``: ``autodiagn_share``). Rows without a value are left out."""
    out: dict[int, float] = {}
    for r in rows:
        try:
            out[int(r["workers"])] = float(r[column])
        except (KeyError, TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def _per_workers(results: Path, name: str, column: str) -> tuple[str, dict[str, float]]:
    path = results / "stream" / name
    if not path.is_file():
        return f"not measured here (make bench-stream writes stream/{name})", {}
    with path.open(newline="") as fh:
        got = by_workers(list(csv.DictReader(fh)), column)
    if not got:
        return f"not measured here (stream/{name} has no {column})", {}
    return trend(list(got), list(got.values())), {f"{n} workers": v for n, v in got.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fig8_energy",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default: $VPP_RESULTS or results/)")
    ap.add_argument("--input", type=Path, default=None,
                    help="utilisation CSV (default: <results>/fig8/utilisation.csv)")
    ap.add_argument("--p-max", type=float, default=P_MAX_W, help="peak power per node, W")
    ap.add_argument("--idle-fraction", type=float, default=IDLE_FRACTION,
                    help="idle power as a share of the peak (Eq. 18: 0.7)")
    ap.add_argument("--p-sleep", type=float, default=P_SLEEP_W, help="power of a dormant node, W")
    ap.add_argument("--quick", action="store_true", help="mark the summary as a quick run")
    args = ap.parse_args(argv)
    if not 0 <= args.idle_fraction <= 1:
        ap.error("--idle-fraction must be in [0, 1]")
    t0, started = time.monotonic(), now_iso()
    results = args.results or default_results()
    src = args.input or results / "fig8" / "utilisation.csv"
    if not src.is_file():
        print(f"{src}: not found (the utilisation bench writes it); nothing written")
        return 0
    rows = read_utilisation(src)
    if not rows:
        print(f"{src}: no samples; nothing written")
        return 0
    p_max, p_idle, p_sleep = args.p_max, args.idle_fraction * args.p_max, args.p_sleep
    kw = {"p_idle": p_idle, "p_max": p_max, "p_sleep": p_sleep}
    grid = build_grid(rows)
    scopes: list[str | None] = [None, *sorted(set(grid.pools))]
    energy, timeline = [], []
    for scope in scopes:
        g = grid.select(scope)
        name = scope or "all"
        energy += [{"pool": name, **r} for r in energy_by_active_count(g, **kw)]
        timeline += [{"time_s": r["time_s"], "pool": name, "active_nodes": r["active_nodes"],
                      "power_w": r["power_w"]} for r in power_timeline(g, **kw)]
    nodes = per_node(grid, **kw)
    total = cluster_energy(grid.times, grid.util, grid.active, **kw)

    out = results / "fig8"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "fig8_energy.csv", energy,
               ("pool", "active_nodes", "duration_s", "energy_j", "mean_power_w",
                "mean_power_per_node_w", "mean_cpu_pct"))
    write_csv(out / "fig8_power.csv", timeline, ("time_s", "pool", "active_nodes", "power_w"))
    plot_fig8(energy, timeline, out / "fig8.png", p_idle, p_max)
    assumptions = (f"Power model Eq. 18 with p_max {p_max:g} W (top of Table V's 55-70 W), idle "
                   f"{p_idle:g} W ({args.idle_fraction:g} x p_max, Eq. 18), dormant node "
                   f"{p_sleep:g} W; U = the node's CPU over its own quota (Eq. 17). Every node is "
                   "modelled as its own server although all share one VM here.")
    allrows = [r for r in energy if r["pool"] == "all" and r["active_nodes"] > 0]
    exec_trend, exec_by_workers = _per_workers(results, "capacity.csv", "batch_median_s")
    strag_trend, strag_by_workers = _per_workers(results, "stragglers.csv", "autodiagn_share")
    write_summary(
        out, experiment="fig8", title="Energy vs active node count (Fig. 8, Eq. 17-19)",
        paper={"energy vs node count": "increases",
               "straggler frequency vs node count": "decreases",
               "execution time vs node count": "decreases"},
        ours={"energy vs node count": trend([r["active_nodes"] for r in allrows],
                                            [r["mean_power_w"] for r in allrows]),
              "straggler frequency vs node count": strag_trend,
              **({"straggler share of tasks (AutoDiagn rule)": strag_by_workers}
                 if strag_by_workers else {}),
              "execution time vs node count": exec_trend,
              **({"batch duration while saturated (s)": exec_by_workers}
                 if exec_by_workers else {}),
              "mean power by active nodes (W)": {f"{r['active_nodes']} nodes": r["mean_power_w"]
                                                 for r in allrows},
              "energy over the run (J)": round(total, 1),
              "duration (s)": round(float(grid.times[-1] - grid.times[0]), 1)},
        command=f"python -m bench.fig8_energy{' --quick' if args.quick else ''}",
        quick=args.quick, started=started, duration_s=time.monotonic() - t0,
        notes=(f"{assumptions} Input: `{src.name}` ({len(rows)} samples, {len(grid.nodes)} "
               "nodes). Energy per node count depends on how long the run stayed at that "
               "count; mean power (energy per second) is the comparable number. Execution "
               "time is the stream bench's median micro-batch duration while the job is "
               "backlogged (its saturation step), per active worker count "
               "(`stream/capacity.csv`); straggler frequency is the share of that sweep's "
               "Spark tasks AutoDiagn's rule flags, per worker count (`stream/stragglers.csv`, "
               "bench.straggler_rate)."),
        files=["fig8_energy.csv", "fig8_power.csv", "fig8.png"],
        p_max_w=p_max, p_idle_w=p_idle, p_sleep_w=p_sleep)

    t5 = results / "table5"
    e_vs_t = trend([r["active_s"] for r in nodes], [r["energy_j"] for r in nodes])
    t5.mkdir(parents=True, exist_ok=True)
    write_csv(t5 / "table5.csv", nodes, ("node", "pool", "active_s", "energy_j", "mean_power_w",
                                          "min_power_w", "max_power_w"))
    files5 = ["table5.csv"]
    if nodes:
        plot_table5(nodes, t5 / "table5.png")
        files5.append("table5.png")
    write_summary(
        t5, experiment="table5", title="Dynamic power and energy per machine (Table V)",
        paper={"dynamic power per node": "55-70 W", "makespan": "60-95 s",
               "total energy per node": "8900-9500 J",
               "energy vs makespan": "more time, more energy"},
        ours={"dynamic power per node": _range([r["mean_power_w"] for r in nodes], "W"),
              "makespan": _range([r["active_s"] for r in nodes], "s"),
              "total energy per node": _range([r["energy_j"] for r in nodes], "J"),
              "energy vs makespan": {"increases": "more time, more energy"}.get(e_vs_t, e_vs_t)},
        command=f"python -m bench.fig8_energy{' --quick' if args.quick else ''}",
        quick=args.quick, started=started, duration_s=time.monotonic() - t0,
        notes=(f"{assumptions} Makespan here is the time each node was active in the measured "
               "run; power is that node's energy over that time. The paper's energies are not "
               "its power range times its makespans (8900-9500 J over 60-95 s is 94-158 W)."),
        files=files5)
    for r in allrows:
        print(f"  {r['active_nodes']} active: {r['duration_s']:8.1f} s  {r['energy_j']:10.1f} J  "
              f"{r['mean_power_w']:7.1f} W")
    print(f"wrote {out} and {t5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
