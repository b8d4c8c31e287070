"""Wake and sleep latency of dormant nodes, both sleep modes (pause vs stop).

For each scalable node kind (a RabbitMQ channel, a Spark worker) and each mode, repeat:
sleep the node in that mode, then wake it, timing the Docker call and the time until the node
serves its real protocol again (AMQP answers / master lists the worker ALIVE).

    python -m bench.platform_wake [--cycles N]
"""

from __future__ import annotations

import argparse
import time

from bench.common import machine, md_table, median, results_dir, write_csv
from bench.report import write_summary
from infra.platform import Platform
from infra.topology import load_topology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--dwell-s", type=float, default=None,
                        help="time asleep per cycle (default: 2 x Spark worker timeout + 5 s, so a "
                             "paused worker is really dropped by the master and must re-register)")
    parser.add_argument("--nodes", default="channel-1,worker-1")
    parser.add_argument("--quick", action="store_true", help="one cycle per mode (CI size)")
    args = parser.parse_args(argv)
    if args.quick:
        args.cycles = 1
    if args.cycles < 1:
        parser.error("--cycles must be >= 1")

    t_start = time.monotonic()
    topo = load_topology()
    platform = Platform(topo)
    # The master checks for silent workers once per timeout, so dropping one takes up to 2x.
    dwell = args.dwell_s if args.dwell_s is not None else 2 * topo.spark.worker_timeout_s + 5.0
    rows: list[dict[str, object]] = []
    for name in args.nodes.split(","):
        node = topo.node(name)
        for mode in ("pause", "stop"):
            platform.wake(node)  # start from an awake node, so the first sleep is real
            for cycle in range(args.cycles):
                s = platform.sleep(node, mode=mode, enforce_min=False)
                time.sleep(dwell)
                w = platform.wake(node)
                rows.append({"node": name, "role": node.role, "mode": mode, "cycle": cycle,
                             "sleep_api_s": round(s.api_s, 4), "sleep_ready_s": round(s.ready_s, 4),
                             "wake_action": w.action, "wake_api_s": round(w.api_s, 4),
                             "wake_ready_s": round(w.ready_s, 4)})
                print(f"  {name:<10} {mode:<5} cycle {cycle + 1}/{args.cycles}: sleep "
                      f"{s.ready_s:6.2f} s, wake ({w.action}) {w.ready_s:6.2f} s", flush=True)
        platform.sleep(node, enforce_min=False)  # back to the topology's dormant state

    out = results_dir("platform")
    write_csv(out / "wake_sleep.csv", rows)
    table = []
    for name in args.nodes.split(","):
        for mode in ("pause", "stop"):
            sel = [r for r in rows if r["node"] == name and r["mode"] == mode]
            table.append((name, mode, len(sel),
                          f"{median(float(r['sleep_ready_s']) for r in sel):.2f}",
                          f"{median(float(r['wake_ready_s']) for r in sel):.2f}"))
    report = "\n".join([
        "# Wake / sleep latency of dormant nodes",
        "",
        f"Machine: {machine()}. Command: `make bench-platform` "
        f"(`python -m bench.platform_wake --cycles {args.cycles}`).",
        "Wake is timed until the node answers its own protocol (AMQP for a channel; the Spark",
        f"master lists the worker ALIVE). Each cycle the node sleeps {dwell:.0f} s, longer than",
        "the master's worker timeout, so a paused worker has been dropped and must re-register.",
        "Medians over the cycles:",
        "",
        md_table(("node", "sleep mode", "cycles", "sleep s (median)", "wake s (median)"), table),
        "",
    ])
    (out / "wake_sleep.md").write_text(report)
    ours = {f"{name} {mode} wake s (median)": float(t[4]) for t in table
            for name, mode in [(t[0], t[1])]}
    ours.update({f"{t[0]} {t[1]} sleep s (median)": float(t[3]) for t in table})
    write_summary(out, title="Wake / sleep latency of dormant nodes (pause vs stop)",
                  command=f"make bench-platform (python -m bench.platform_wake --cycles "
                          f"{args.cycles})",
                  paper={"wake": "not reported (the paper wakes dormant VMs; no latency given)"},
                  ours=ours, quick=args.cycles < 3, duration_s=time.monotonic() - t_start,
                  notes="Wake is timed until the node answers its own protocol.",
                  files=["wake_sleep.csv", "wake_sleep.md"])
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
