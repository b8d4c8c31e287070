"""Ingest CLI.

    python -m ingest declare                 declare exchanges/streams on every running channel
                                             and publish routing table v1 if none exists
    python -m ingest routing show            the current routing table
    python -m ingest routing set CH[,CH..]   publish the next version with these channels
    python -m ingest audit [--json]          per channel: stream end offset, readings, DERs
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from infra.amqp import amqp_params
from infra.platform import Platform
from infra.topology import Topology, TopologyError, load_topology
from ingest.audit import audit_streams
from ingest.routing import RoutingError, RoutingTable
from ingest.streams import fetch_routing_table, publish_routing_table
from ingest.topology import declare_channel, home_channel


def running_channels(topo: Topology) -> list[str]:
    platform = Platform(topo)
    out = []
    for node in topo.pool_nodes("queue"):
        c = platform.container(node)
        if c is not None and c.status == "running":
            out.append(node.name)
    return out


def cmd_declare(topo: Topology) -> int:
    channels = running_channels(topo)
    home = home_channel(topo).name
    if home not in channels:
        print(f"error: the home channel {home} is not running (make up)", file=sys.stderr)
        return 1
    for ch in channels:
        declare_channel(topo, ch)
        print(f"declared {ch}")
    table = fetch_routing_table(topo)
    if table is None:
        active = [n.name for n in topo.pool_nodes("queue") if n.initial_state == "active"]
        table = RoutingTable(1, tuple(sorted(active)), int(time.time() * 1000),
                             "initial (ingest declare)")
        publish_routing_table(topo, table)
        print(f"published routing table v{table.version}: {', '.join(table.channels)}")
    else:
        print(f"routing table v{table.version}: {', '.join(table.channels)}")
    return 0


def cmd_routing(topo: Topology, args: argparse.Namespace) -> int:
    current = fetch_routing_table(topo)
    if args.action == "show":
        print(current.to_json().decode() if current else "no routing table published")
        return 0
    channels = [c for c in args.channels.split(",") if c]
    base = current or RoutingTable(0, tuple(channels), 0)
    try:
        table = base.successor(channels, reason=args.reason)
        publish_routing_table(topo, table)
    except RoutingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.to_json().decode())
    return 0


def cmd_audit(topo: Topology, as_json: bool) -> int:
    params = {ch: amqp_params(topo, ch, "admin") for ch in running_channels(topo)}
    report = audit_streams(params)
    if as_json:
        print(json.dumps({ch: a.as_dict() for ch, a in report.items()}, indent=2))
    else:
        for ch, a in report.items():
            print(f"{ch}: end offset {a.end_offset}, {a.messages} messages, {len(a.per_der)} DERs, "
                  f"{a.duplicates} duplicates, {a.gaps} sequence gaps, {a.undecodable} undecodable")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("declare")
    r = sub.add_parser("routing")
    r.add_argument("action", choices=("show", "set"))
    r.add_argument("channels", nargs="?", default="")
    r.add_argument("--reason", default="manual (python -m ingest routing set)")
    a = sub.add_parser("audit")
    a.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "routing" and args.action == "set" and not args.channels:
        parser.error("routing set needs a comma-separated list of channels")
    try:
        topo = load_topology(args.topology)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "declare":
        return cmd_declare(topo)
    if args.cmd == "routing":
        return cmd_routing(topo, args)
    return cmd_audit(topo, args.json)


if __name__ == "__main__":
    sys.exit(main())
