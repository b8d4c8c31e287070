"""DER fleet runner.

    python -m sensors_sim run --ders 1000 --interval 10 --seed 7 --duration 120
    python -m sensors_sim run --scenario queue_level [--rate-scale 0.5]
    python -m sensors_sim scenarios            list the shipped scenarios and their timelines

A gateway process runs many DERs over one AMQP connection per channel; --gateways G splits the
fleet over G processes. At the end (duration, or Ctrl-C) each gateway drains what it buffered and
a summary says what was generated, confirmed by a broker, dropped (buffer overflow) and left
unconfirmed — per DER with --summary FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from infra.topology import TopologyError, load_topology
from sensors_sim.gateway import GatewayConfig
from sensors_sim.models.base import FaultConfig
from sensors_sim.runner import combine, plan_fleet, plan_scenario, run
from sensors_sim.scenario import ScenarioError, load_scenario, shipped_scenarios, timeline


def _positive(kind: type, name: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {noun}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text}")
        return value
    return parse


def _probability(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(f"{name} must be within 0..1, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sensors_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("scenarios", help="list shipped scenarios")
    r = sub.add_parser("run", help="run a fleet or a scenario")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--ders", type=_positive(int, "--ders"), help="number of DERs (mixed fleet)")
    what.add_argument("--scenario", help="shipped scenario name or a YAML path")
    r.add_argument("--interval", type=_positive(float, "--interval"), default=10.0,
                   help="seconds between readings of one DER (fleet mode; default 10)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--duration", type=_positive(float, "--duration"), default=None,
                   help="seconds to run (default: the scenario's duration, or until Ctrl-C)")
    r.add_argument("--rate-scale", type=_positive(float, "--rate-scale"), default=None,
                   help="scenario mode: multiply every DER's rate")
    r.add_argument("--gateways", type=_positive(int, "--gateways"), default=1)
    r.add_argument("--filter", action="store_true", help="deadband + duplicate filter (Fig. 4)")
    r.add_argument("--fault-spike", type=_probability("--fault-spike"), default=0.0)
    r.add_argument("--fault-dropout", type=_probability("--fault-dropout"), default=0.0)
    r.add_argument("--fault-stuck", type=_probability("--fault-stuck"), default=0.0)
    r.add_argument("--max-in-flight", type=_positive(int, "--max-in-flight"), default=1000)
    r.add_argument("--max-buffer", type=_positive(int, "--max-buffer"), default=200_000,
                   help="readings buffered per channel before the oldest are dropped (counted)")
    r.add_argument("--drain-timeout", type=_positive(float, "--drain-timeout"), default=30.0)
    r.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    r.add_argument("--summary", type=Path, help="write the full summary (per DER) as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd == "scenarios":
        for name in shipped_scenarios():
            scn = load_scenario(name)
            print(f"{name}: {scn.description} ({scn.duration_s:.0f} s)")
            for st in timeline(scn):
                print(f"  t={st.at_s:>5.0f} s  {len(st.active):>3} DERs  {st.rate_per_s:>8.0f} "
                      f"readings/s  {st.note}")
        return 0
    if args.gateways > 8:
        parser.error("--gateways must be <= 8 (services.gateway_metrics has 8 ports)")
    if args.rate_scale is not None and args.scenario is None:
        parser.error("--rate-scale applies to --scenario runs")
    try:
        topo = load_topology(args.topology)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    faults = FaultConfig(p_spike=args.fault_spike, p_dropout=args.fault_dropout,
                         p_stuck=args.fault_stuck)
    if args.scenario is not None:
        try:
            scn = load_scenario(args.scenario)
        except (ScenarioError, FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.rate_scale is not None:
            scn = scn.with_rate_scale(scn.rate_scale * args.rate_scale)
        plan = plan_scenario(scn, faults, args.duration)
    else:
        plan = plan_fleet(args.ders, args.interval, args.seed, faults, args.duration)
    cfg = GatewayConfig(
        duration_s=plan.duration_s, max_in_flight=args.max_in_flight, max_buffer=args.max_buffer,
        drain_timeout_s=args.drain_timeout,
        metrics_port=None if args.no_metrics else topo.services["gateway_metrics"].at(0))
    print(f"running {len(plan.ders)} DERs on {args.gateways} gateway(s), peak offered "
          f"{plan.offered_per_s:,.0f} readings/s, duration "
          f"{'until Ctrl-C' if plan.duration_s is None else f'{plan.duration_s:.0f} s'}",
          file=sys.stderr, flush=True)
    t0 = time.monotonic()
    summaries = run(topo, plan, args.gateways, cfg, use_filter=args.filter)
    total = combine(summaries)
    total["wall_s"] = round(time.monotonic() - t0, 2)
    if args.summary is not None:
        args.summary.write_text(json.dumps({"total": total, "gateways": summaries}))
    brief = {k: v for k, v in total.items() if k != "per_der"}
    print(json.dumps(brief))
    lost = int(total["generated"]) - int(total["confirmed"])  # type: ignore[call-overload]
    return 0 if lost == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
