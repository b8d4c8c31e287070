"""python -m diagnoser [--mode improved|paper] [--interval S] [--rules FILE]"""

from __future__ import annotations

import argparse
import sys

from prometheus_client import start_http_server

from diagnoser.rules import RulesError
from diagnoser.service import Diagnoser
from infra import logs
from infra.lifecycle import StopFlag
from infra.topology import TopologyError, load_topology


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diagnoser",
                                description="AutoDiagn-style diagnoser (Alg. 2)")
    p.add_argument("--mode", choices=("improved", "paper"), default="improved")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between evaluations (default: the rules file's interval_s)")
    p.add_argument("--rules", default=None, help="rules YAML (default: diagnoser/rules.yaml)")
    p.add_argument("--name", default="diagnoser",
                   help="source name in every label message (orchestrators follow one)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="/metrics port (default: the topology's; 0: do not serve)")
    args = p.parse_args(argv)
    if args.interval is not None and not args.interval > 0:
        p.error(f"--interval must be > 0, got {args.interval}")
    logs.setup("diagnoser")
    try:
        topo = load_topology()
        service = Diagnoser(topo, mode=args.mode, rules_path=args.rules, name=args.name)
    except (TopologyError, RulesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    port = topo.services["diagnoser"].port if args.metrics_port is None else args.metrics_port
    if port:
        start_http_server(port, addr=topo.bind_host)
    stopping = StopFlag()
    service.run(stopping, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
