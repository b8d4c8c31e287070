"""Platform CLI behind the make targets.

``python -m infra {check,build,up,down,clean,status,wake,sleep}``
"""

from __future__ import annotations

import argparse
import json
import sys

from infra.topology import Topology, TopologyError, load_topology


def _status_table(topo: Topology, as_json: bool) -> int:
    from infra.platform import Platform

    rows = Platform(topo).status()
    if as_json:
        print(json.dumps([
            {"node": r.node.name, "role": r.node.role, "pool": r.node.pool, "state": r.state,
             "docker": r.docker_status, "health": r.health, "detail": r.detail,
             "ports": dict(r.node.ports), "cpus": r.node.cpus, "memory_mb": r.node.memory_mb}
            for r in rows], indent=2))
        return 0
    header = ("NODE", "ROLE", "POOL", "STATE", "HEALTH", "PORTS", "CPUS", "MEM", "DETAIL")
    table = [header] + [
        (r.node.name, r.node.role, r.node.pool,
         r.state if r.node.initial_state == "active" else f"{r.state} (dormant)",
         r.health, ",".join(f"{k}={v}" for k, v in sorted(r.node.ports.items())),
         f"{r.node.cpus:g}", f"{r.node.memory_mb}M", r.detail)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        print("  ".join(cells) + "  " + row[-1])
    running = sum(1 for r in rows if r.state == "active")
    print(f"\n{running}/{len(rows)} nodes active; topology {topo.source}\n")
    _services_table(topo)
    return 0


def _services_table(topo: Topology) -> None:
    from infra import services

    print("SERVICE          STATE    PID      /metrics                LOG")
    for svc in services.SERVICES:
        st = services.status(topo, svc)
        state = "running" if st.running else "stopped"
        url = f"http://{topo.bind_host}:{st.metrics_port}/metrics"
        up = url if st.metrics_up else f"{url} (down)" if st.running else "-"
        print(f"{st.name:<16} {state:<8} {st.pid or '-':<8} {up:<23} {st.log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__)
    parser.add_argument("--topology", help="topology YAML (default: $VPP_TOPOLOGY or "
                        "infra/topology.yaml)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="validate the topology file and exit")
    sub.add_parser("build", help="build the images (needs the inputs fetched by infra/setup.sh)")
    sub.add_parser("up", help="create every node, start the active ones, wait until healthy")
    sub.add_parser("down", help="stop and remove every project container (data is kept)")
    sub.add_parser("clean", help="down, then remove the data volumes")
    st = sub.add_parser("status", help="table of nodes: pool, state, health, ports, limits")
    st.add_argument("--json", action="store_true")
    wk = sub.add_parser("wake", help="wake a dormant node (start or unpause) and time it")
    wk.add_argument("node")
    wk.add_argument("--timeout", type=float, default=None)
    sv = sub.add_parser("services", help="the project's host services (writer, collector, ...)")
    sv.add_argument("action", choices=("start", "stop", "status"))
    sv.add_argument("names", nargs="*", help="services (default: start those `make up` starts, "
                                            "stop all)")
    sl = sub.add_parser("sleep", help="put a node to sleep (pause or stop) and time it")
    sl.add_argument("node")
    sl.add_argument("--mode", choices=("pause", "stop"), default=None,
                    help="default: the pool's sleep_mode in the topology")
    args = parser.parse_args(argv)

    try:
        topo = load_topology(args.topology)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "check":
        print(f"topology {topo.source}: {len(topo.nodes)} nodes, ok")
        return 0
    if args.cmd == "build":
        from infra.build import main as build_main

        build_main()
        return 0

    from infra.platform import Platform, PlatformError

    try:
        platform = Platform(topo)
        if args.cmd == "up":
            platform.up()
            return _status_table(topo, as_json=False)
        if args.cmd == "services":
            from infra import services

            try:
                chosen = [services.by_name(n) for n in args.names]
            except KeyError as exc:
                print(f"error: {exc.args[0]}", file=sys.stderr)
                return 2
            if not chosen:
                chosen = [s for s in services.SERVICES if s.on_up or args.action != "start"]
            for svc in chosen:
                if args.action == "start":
                    print(f"{svc.name}: running, pid {services.start(svc)}")
                elif args.action == "stop":
                    print(f"{svc.name}: {'stopped' if services.stop(svc) else 'was not running'}")
            if args.action == "status":
                _services_table(topo)
            return 0
        if args.cmd == "down":
            from infra import services

            for svc in services.SERVICES:
                services.stop(svc)
            n = platform.down()
            print(f"{n} container(s) removed; data volumes kept (make clean removes them)")
            return 0
        if args.cmd == "clean":
            platform.clean()
            return 0
        if args.cmd == "status":
            return _status_table(topo, args.json)
        if args.cmd == "wake":
            print(json.dumps(platform.wake(args.node, args.timeout).as_dict()))
            return 0
        if args.cmd == "sleep":
            print(json.dumps(platform.sleep(args.node, args.mode).as_dict()))
            return 0
    except (PlatformError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
