"""``make bench-queue``: how many readings/s ONE channel accepts from the gateways and delivers
to a stream consumer at the same time, the queue pool's capacity in capacity.yaml.

    python -m bench.queue_capacity [--quick] [--rates 1000,2000,...] [--seconds 30]
                                   [--tolerance 0.05] [--write-capacity] [--from-results]

Fig. 9's saturation series (``make bench-ingest``) publishes with no consumer; in the pipeline a
channel also delivers every reading to Spark, and a stream consumer that keeps up costs the
broker CPU too. Each point here runs, against the home channel only (the topology's initial
routing):

* the DER fleet (``python -m sensors_sim run``, 10,000 DERs, the interval that offers the
  point's rate) for ``--seconds``, as in Fig. 9 (:func:`bench.ingest_fig9.run_point`);
* a stream consumer reading ``vpp.telemetry.stream`` from its end at the start of the point,
  acknowledging every delivery with a prefetch of 2,000, as the Spark source reads
  (:func:`ingest.streams.read_stream`, user ``stream``);
* the channel container's CPU over the point (Docker's cgroup counter), in % of its quota.

A point is *sustained* when the fleet's point is (Fig. 9's rule: confirmed >= 95 % of offered,
per second and in total, nothing dropped) **and** the consumer received >= 95 % of the confirmed
readings by ``--grace`` seconds after the fleet stopped. The capacity is the confirmed rate of
the highest offered rate sustained with every lower one sustained too.

``--write-capacity`` writes it into capacity.yaml's ``queue.readings_per_s`` (with
``--from-results``: from the last run's ``results/queue/capacity.csv``, without a sweep).
Scaling efficiency across channels is left as it is: one gateway process on this machine cannot
offer two channels their capacity (Fig. 9: 8,489 confirmed/s at most).

Writes ``results/queue/``: capacity.csv, summary.json.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity_file import CAPACITY_FILE, update_pool
from bench.common import make_command, read_csv, results_dir, write_csv
from bench.ingest_fig9 import TOLERANCE, run_point, sustained
from bench.report import now_iso, write_summary
from infra.amqp import amqp_params
from infra.platform import Platform
from infra.topology import Topology, load_topology
from ingest.streams import read_stream, stream_end
from ingest.topology import TELEMETRY_STREAM, home_channel

DERS = 10_000
FULL_RATES = (1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000)
QUICK_RATES = (2000, 5000)
GRACE_S = 5.0          # after the fleet stops, how long the consumer may still catch up
IDLE_S = 10.0          # the consumer ends this long after its last delivery
FIELDS = ("offered_per_s", "confirmed_per_s", "delivered_per_s", "confirmed", "delivered",
          "delivered_ratio", "dropped", "channel_cpu_pct", "consumer_cpu_pct_of_core",
          "sustained")


@dataclass
class Consumer:
    """Counts deliveries of a channel's telemetry stream from an offset, in a thread."""

    params: Any
    start: int
    delivered: int = 0
    cpu_s: float = 0.0
    error: str = ""

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.thread_time()
        try:
            for _ in read_stream(self.params, TELEMETRY_STREAM, self.start, idle_s=IDLE_S,
                                 prefetch=2000):
                self.delivered += 1
        except Exception as exc:  # reported in the row, the sweep goes on
            self.error = f"{type(exc).__name__}: {exc}"[:200]
        self.cpu_s = time.thread_time() - t0

    def begin(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def container_cpu_s(platform: Platform, node: str) -> float:
    """CPU seconds the node's container has used so far (cgroup counter via Docker)."""
    c = platform.container(node)
    if c is None:
        raise RuntimeError(f"{node}: no container")
    return c.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def point_sustained(fleet: Mapping[str, Any], delivered: int,
                    tolerance: float = TOLERANCE) -> bool:
    confirmed = int(fleet["confirmed"])
    return (sustained(fleet, tolerance) and confirmed > 0
            and delivered >= (1 - tolerance) * confirmed)


def capacity_of(rows: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """(confirmed/s at the highest sustained offered rate with every lower one sustained,
    the first offered rate not sustained: None = never saturated, a lower bound)."""
    best: float | None = None
    for r in sorted(rows, key=lambda r: float(r["offered_per_s"])):
        if str(r["sustained"]) != "True":
            return best, float(r["offered_per_s"])
        best = float(r["confirmed_per_s"])
    return best, None


def run_rate(topo: Topology, platform: Platform, rate: float, seconds: float,
             grace_s: float, tolerance: float) -> dict[str, Any]:
    channel = home_channel(topo).name
    params = amqp_params(topo, channel, "stream", heartbeat=30)
    consumer = Consumer(params, stream_end(params, TELEMETRY_STREAM))
    consumer.begin()
    cpu0, t0 = container_cpu_s(platform, channel), time.monotonic()
    fleet = run_point("queue", DERS, DERS / rate, seconds, drain_timeout_s=grace_s)
    t_end = time.monotonic()
    cpu = (container_cpu_s(platform, channel) - cpu0) / (t_end - t0)
    time.sleep(grace_s)
    delivered = consumer.delivered   # what arrived by the end of the grace time
    consumer.join(IDLE_S + 30)
    quota = topo.node(channel).cpus
    return {"offered_per_s": fleet["offered_per_s"], "confirmed_per_s": fleet["confirmed_per_s"],
            "delivered_per_s": round(delivered / float(fleet["run_s"]), 2),
            "confirmed": fleet["confirmed"], "delivered": delivered,
            "delivered_ratio": round(delivered / fleet["confirmed"], 4) if fleet["confirmed"]
            else None,
            "dropped": fleet["dropped"], "channel_cpu_pct": round(100 * cpu / quota, 1),
            "consumer_cpu_pct_of_core": round(100 * consumer.cpu_s / (t_end - t0 + grace_s), 1),
            "sustained": point_sustained(fleet, delivered, tolerance) and not consumer.error,
            "error": consumer.error}


def write_queue_capacity(rows: Sequence[Mapping[str, Any]], command_line: str, day: str,
                         path: Path | None = None) -> str | None:
    """capacity.yaml's queue.readings_per_s from a sweep; the reason when it cannot say."""
    cap, failed = capacity_of(rows)
    if cap is None:
        return "the lowest rate was not sustained"
    if failed is None:
        return f"never saturated ({cap:,.0f} confirmed/s is a lower bound): add higher --rates"
    path = path or CAPACITY_FILE
    path.write_text(update_pool(path.read_text(), "queue", cap, None, command_line, day))
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.queue_capacity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"rates {','.join(map(str, QUICK_RATES))} for 10 s each")
    ap.add_argument("--rates", default=None,
                    help=f"offered readings/s, comma list (default "
                         f"{','.join(map(str, FULL_RATES))})")
    ap.add_argument("--seconds", type=float, default=None, help="per point (default 30)")
    ap.add_argument("--grace", type=float, default=GRACE_S,
                    help=f"s after the fleet stops the consumer may catch up (default {GRACE_S})")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--write-capacity", action="store_true",
                    help="write the measured capacity into capacity.yaml")
    ap.add_argument("--from-results", action="store_true",
                    help="with --write-capacity: from results/queue/capacity.csv, no sweep")
    args = ap.parse_args(argv)
    argv_used = list(argv if argv is not None else sys.argv[1:])
    cmd = make_command("bench-queue", argv_used)
    out = results_dir("queue")
    if args.from_results:
        if not args.write_capacity:
            ap.error("--from-results only goes with --write-capacity")
        why = write_queue_capacity(read_csv(out / "capacity.csv"), cmd, now_iso()[:10])
        print(why or f"wrote {CAPACITY_FILE}")
        return 1 if why else 0
    try:
        rates = [float(x) for x in (args.rates or ",".join(
            map(str, QUICK_RATES if args.quick else FULL_RATES))).split(",")]
    except ValueError:
        ap.error(f"--rates must be a comma list of numbers, got {args.rates!r}")
    if any(r <= 0 for r in rates):
        ap.error("--rates: every rate must be > 0")
    if not 0 < args.tolerance < 1:
        ap.error("--tolerance must be within (0, 1)")
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    if seconds <= 0:
        ap.error("--seconds must be > 0")
    topo = load_topology()
    platform = Platform(topo)
    started, t_start = now_iso(), time.monotonic()
    rows = []
    for i, rate in enumerate(sorted(rates), 1):
        row = run_rate(topo, platform, rate, seconds, args.grace, args.tolerance)
        rows.append(row)
        print(f"[{i}/{len(rates)}] offered {rate:,.0f}/s: confirmed {row['confirmed_per_s']:,.0f}/s"
              f", delivered {row['delivered_per_s']:,.0f}/s ({row['delivered_ratio']}), "
              f"channel CPU {row['channel_cpu_pct']} % of quota, consumer "
              f"{row['consumer_cpu_pct_of_core']} % of a core, sustained {row['sustained']}"
              + (f", consumer error {row['error']}" if row["error"] else ""), flush=True)
    write_csv(out / "capacity.csv", rows, (*FIELDS, "error"))
    cap, failed = capacity_of(rows)
    verdict = ("no rate sustained" if cap is None else
               f"{cap:,.0f} readings/s" + (" (a lower bound: never saturated)" if failed is None
                                           else f"; {failed:,.0f}/s offered was not sustained"))
    note = ""
    if args.write_capacity:
        why = write_queue_capacity(rows, cmd, started[:10])
        note = (f" capacity.yaml not written: {why}." if why
                else " Written into capacity.yaml (queue.readings_per_s).")
        print(why or f"wrote {CAPACITY_FILE}")
    write_summary(
        out, title="One channel's capacity while a stream consumer drains it",
        command=cmd, quick=args.quick, started=started, duration_s=time.monotonic() - t_start,
        paper={"capacity": "n/a (the paper gives none)"},
        ours={"one channel, publish + deliver": verdict,
              "channel CPU % of quota by offered/s": {f"{r['offered_per_s']:.0f}":
                                                      r["channel_cpu_pct"] for r in rows}},
        notes=(f"{DERS:,} DERs, {seconds:.0f} s a point, home channel "
               f"{home_channel(topo).name} ({topo.node(home_channel(topo).name).cpus} CPU); a "
               f"stream consumer (user stream, prefetch 2,000, an ack per delivery) reads from "
               f"the stream's end. Sustained = the fleet's point sustained (Fig. 9's rule) and "
               f">= {1 - args.tolerance:.0%} of the confirmed readings delivered within "
               f"{args.grace:.0f} s after the fleet stopped." + note),
        files=["capacity.csv"])
    print(verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
