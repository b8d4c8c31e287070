"""Build fleets (plain N DERs, or a scenario's) and run them on one or more gateway processes."""

from __future__ import annotations

import bisect
import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass

from infra import logs
from infra.topology import Topology
from sensors_sim.filter import Filter, FilterConfig
from sensors_sim.gateway import Gateway, GatewayConfig
from sensors_sim.models.base import DER, FaultConfig
from sensors_sim.models.fleet import make_der, make_fleet
from sensors_sim.scenario import Scenario, timeline


@dataclass(frozen=True)
class RunPlan:
    ders: tuple[DER, ...]
    activity_steps: tuple[tuple[float, frozenset[str]], ...] | None  # (at_s, active ids)
    duration_s: float | None
    offered_per_s: float


class ScenarioActivity:
    """elapsed s -> active der_ids, from a scenario's precomputed timeline (O(log phases))."""

    def __init__(self, steps: Sequence[tuple[float, frozenset[str]]]) -> None:
        self.times = [t for t, _ in steps]
        self.sets = [s for _, s in steps]

    def __call__(self, elapsed: float) -> set[str] | None:
        i = bisect.bisect_right(self.times, elapsed) - 1
        return set() if i < 0 else set(self.sets[i])


def plan_fleet(n: int, interval_s: float, seed: int, faults: FaultConfig,
               duration_s: float | None) -> RunPlan:
    ders = make_fleet(n, seed=seed, faults=faults, interval_s=interval_s)
    return RunPlan(tuple(ders), None, duration_s, n / interval_s)


def plan_scenario(scn: Scenario, faults: FaultConfig, duration_s: float | None) -> RunPlan:
    steps = timeline(scn)
    specs = {d.der_id: d for step in steps for d in step.active}
    # A scenario DER emits `burst` readings per interval: one read every interval/burst,
    # resized by the scenario's rate scale.
    ders = tuple(
        make_der(s.der_type, s.der_id, seed=s.seed, config=dict(s.config) or None, faults=faults,
                 interval_s=s.interval_s / (s.burst * scn.rate_scale))
        for s in sorted(specs.values(), key=lambda d: d.der_id)
    )
    activity = tuple((st.at_s, frozenset(d.der_id for d in st.active)) for st in steps)
    peak = max((st.rate_per_s for st in steps), default=0.0)
    return RunPlan(ders, activity, duration_s if duration_s is not None else scn.duration_s, peak)


def _run_one(topo: Topology, ders: Sequence[DER], cfg: GatewayConfig,
             activity: tuple[tuple[float, frozenset[str]], ...] | None, use_filter: bool,
             out: mp.Queue | None) -> dict[str, object]:
    logs.setup("gateway")
    gw = Gateway(topo, ders, cfg,
                 activity=ScenarioActivity(activity) if activity is not None else None,
                 filt_factory=(lambda _d: Filter(FilterConfig())) if use_filter else None)
    summary = gw.run()
    if use_filter:
        totals: dict[str, int] = {}
        for f in gw.filters.values():
            for k, v in f.stats().items():  # type: ignore[attr-defined]
                totals[k] = totals.get(k, 0) + v
        summary["filter"] = totals
    if out is not None:
        out.put(summary)
    return summary


def run(topo: Topology, plan: RunPlan, gateways: int, base: GatewayConfig,
        use_filter: bool = False) -> list[dict[str, object]]:
    if gateways == 1:
        return [_run_one(topo, plan.ders, base, plan.activity_steps, use_filter, None)]
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    procs = []
    ports = topo.services["gateway_metrics"]
    for gid in range(gateways):
        share = plan.ders[gid::gateways]
        if not share:
            continue
        cfg = GatewayConfig(**{**base.__dict__, "gateway_id": gid,
                               "metrics_port": ports.at(gid) if base.metrics_port else None})
        p = ctx.Process(target=_run_one, args=(topo, share, cfg, plan.activity_steps,
                                               use_filter, out), name=f"gateway-{gid}")
        p.start()
        procs.append(p)
    summaries = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sorted(summaries, key=lambda s: int(s["gateway"]))  # type: ignore[arg-type]


def combine(summaries: Sequence[dict[str, object]]) -> dict[str, object]:
    keys = ("ders", "generated", "confirmed", "confirmed_bytes", "dropped_overflow",
            "unconfirmed_at_exit", "silent", "inactive", "commands")
    total = {k: sum(int(s[k]) for s in summaries) for k in keys}  # type: ignore[call-overload]
    total["gateways"] = len(summaries)
    total["max_schedule_lag_ms"] = max(float(s["max_schedule_lag_ms"]) for s in summaries)  # type: ignore[arg-type]
    total["routing_version"] = max(int(s["routing_version"]) for s in summaries)  # type: ignore[call-overload]
    per_der: dict[str, object] = {}
    for s in summaries:
        per_der.update(s["per_der"])  # type: ignore[arg-type]
    total["per_der"] = per_der
    return total
