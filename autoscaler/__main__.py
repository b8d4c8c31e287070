"""python -m autoscaler [--policy ours|paper|reactive] [--shadow] [--interval S] [--once]

The orchestrator of Alg. 3. ``--shadow`` logs and records what it would do without touching a
container. Timing (cooldown, scale-down delay, drain timeout) comes from the topology's
``orchestrator:`` section; the flags override it for one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from prometheus_client import start_http_server

from autoscaler.model.train import ModelError, load_model
from autoscaler.service import POLICIES, Orchestrator
from infra import logs
from infra.lifecycle import StopFlag
from infra.topology import TopologyError, load_topology


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autoscaler",
                                description="decision-tree orchestrator (Alg. 3)")
    p.add_argument("--policy", choices=POLICIES, default="ours")
    p.add_argument("--shadow", action="store_true", help="decide and record, never act")
    p.add_argument("--model", default=None,
                   help="artifacts dir, pointer file or .joblib (default: the shipped model)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="/metrics port (default: the topology's; 0: do not serve)")
    p.add_argument("--diagnoser", default="diagnoser",
                   help="follow the labels of the diagnoser with this --name")
    p.add_argument("--once", action="store_true", help="one step, print it as JSON, exit")
    for flag in ("interval_s", "cooldown_s", "scale_down_delay_s", "drain_timeout_s"):
        p.add_argument("--" + flag.removesuffix("_s").replace("_", "-"), dest=flag,
                       type=_positive("--" + flag.removesuffix("_s").replace("_", "-")),
                       default=None, help=f"override orchestrator.{flag} (seconds)")
    p.add_argument("--max-step", type=int, default=None,
                   help="override orchestrator.max_step: nodes one step may wake or sleep per "
                        "pool (0: straight to the target)")
    args = p.parse_args(argv)
    if args.max_step is not None and args.max_step < 0:
        p.error(f"--max-step must be >= 0, got {args.max_step}")
    if args.interval_s == 0:
        p.error("--interval must be > 0")
    logs.setup("autoscaler")
    try:
        topo = load_topology()
        overrides = {k: getattr(args, k) for k in ("interval_s", "cooldown_s",
                                                   "scale_down_delay_s", "drain_timeout_s",
                                                   "max_step")
                     if getattr(args, k) is not None}
        topo = dataclasses.replace(topo, orchestrator=dataclasses.replace(topo.orchestrator,
                                                                          **overrides))
        model = load_model(args.model) if args.policy == "ours" else None
        orch = Orchestrator(topo, policy=args.policy, shadow=args.shadow, model=model,
                            diagnoser=args.diagnoser)
    except (TopologyError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.once:
        ev = orch.step()
        print(json.dumps(dataclasses.asdict(ev), default=str, indent=1))
        return 0
    port = topo.services["orchestrator"].port if args.metrics_port is None else args.metrics_port
    if port:
        start_http_server(port, addr=topo.bind_host)
    orch.run(StopFlag())
    return 0


if __name__ == "__main__":
    sys.exit(main())
