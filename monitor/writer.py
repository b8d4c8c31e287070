"""Metrics writer: ``vpp.metrics.writer`` (RabbitMQ) -> InfluxDB, acked only after the write.

Deliveries are gathered into a batch (up to ``max_points`` or ``max_wait_s``), converted with
the schema-checked line formatter and written in one request. Only then is the batch acked
(``multiple``). When InfluxDB is down the batch stays unacked and is retried with back-off;
the prefetch window stops further deliveries, so everything else waits in RabbitMQ, durable,
with its original timestamps. A redelivered batch rewrites identical points (same series and
timestamp), which InfluxDB treats as the same point: at-least-once delivery, exactly-once data.
A point that does not fit the schema is counted, logged and dropped (it can never succeed).

    python -m monitor.writer
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time

import pika
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from infra import logs
from infra.amqp import amqp_params
from infra.logs import event
from infra.topology import Topology, load_topology
from ingest.topology import METRICS_QUEUE, home_channel
from monitor import influx
from monitor.influx import PointError

log = logs.get("metrics_writer")
MESSAGES = Counter("vpp_writer_messages", "Metric messages consumed")
POINTS = Counter("vpp_writer_points_written", "Points written to InfluxDB")
REJECTED = Counter("vpp_writer_points_rejected", "Points dropped: not in the metric schema")
WRITE_ERRORS = Counter("vpp_writer_write_errors", "Failed InfluxDB writes (retried)")
PENDING = Gauge("vpp_writer_pending_points", "Points consumed but not yet written")
WRITE_SECONDS = Histogram("vpp_writer_write_seconds", "Duration of one InfluxDB batch write")


def to_lines(body: bytes) -> tuple[list[str], int]:
    """Line protocol for one metrics message, and how many of its points were rejected."""
    try:
        msg = json.loads(body)
        points = msg["points"]
    except (ValueError, KeyError, TypeError):
        return [], 1
    lines, rejected = [], 0
    for p in points:
        try:
            lines.append(influx.line(p["m"], p.get("tags", {}), p["fields"], int(p["t"])))
        except (PointError, KeyError, TypeError, ValueError) as exc:
            rejected += 1
            event(log, "point_rejected", error=str(exc)[:300])
    return lines, rejected


class Writer:
    def __init__(self, topo: Topology, max_points: int = 5000, max_wait_s: float = 1.0,
                 prefetch: int = 200) -> None:
        self.topo = topo
        self.max_points = max_points
        self.max_wait_s = max_wait_s
        self.prefetch = prefetch
        self.client = influx.client(topo, timeout=5)
        self.stop = False
        self.batch: list[str] = []
        self.last_tag = 0
        self.first_at = 0.0

    def _flush(self, ch) -> None:
        """Write the batch; on success ack it, on failure keep it (retry with back-off)."""
        backoff = 0.5
        while self.batch or self.last_tag:
            try:
                with WRITE_SECONDS.time():
                    influx.write_lines(self.topo, self.batch, cli=self.client)
                POINTS.inc(len(self.batch))
                break
            except Exception as exc:  # InfluxDB down: nothing is acked, nothing is lost
                WRITE_ERRORS.inc()
                event(log, "write_failed", points=len(self.batch), retry_s=backoff,
                      error=repr(exc)[:300])
                deadline = time.monotonic() + backoff
                while time.monotonic() < deadline and not self.stop:
                    ch.connection.process_data_events(time_limit=0.2)  # heartbeats
                if self.stop:
                    return
                backoff = min(backoff * 2, 10.0)
                if "database not found" in repr(exc):  # InfluxDB came back empty
                    with contextlib.suppress(Exception):
                        influx.ensure_database(self.topo)
        if self.last_tag:
            ch.basic_ack(self.last_tag, multiple=True)
        self.batch, self.last_tag = [], 0
        PENDING.set(0)

    def run(self) -> int:
        node = home_channel(self.topo)
        backoff = 1.0
        while not self.stop:
            try:
                influx.ensure_database(self.topo)
                conn = pika.BlockingConnection(amqp_params(self.topo, node, "monitor",
                                                           heartbeat=30))
            except Exception as exc:  # broker or InfluxDB not up yet
                event(log, "connect_failed", retry_s=backoff, error=repr(exc)[:300])
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 1.0
            event(log, "connected", queue=METRICS_QUEUE)
            try:
                self._consume(conn)
            except pika.exceptions.AMQPError as exc:
                # Unacked deliveries return to the queue and are redelivered: no loss.
                event(log, "disconnected", error=repr(exc)[:300], dropped_unacked=len(self.batch))
                self.batch, self.last_tag = [], 0
            finally:
                if conn.is_open:
                    conn.close()
        return 0

    def _consume(self, conn: pika.BlockingConnection) -> None:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=self.prefetch)
        for method, _props, body in ch.consume(METRICS_QUEUE, inactivity_timeout=0.2):
            if self.stop:
                break
            if method is not None:
                MESSAGES.inc()
                lines, rejected = to_lines(body)
                REJECTED.inc(rejected)
                if not self.batch and not self.last_tag:
                    self.first_at = time.monotonic()
                self.batch.extend(lines)
                self.last_tag = method.delivery_tag
                PENDING.set(len(self.batch))
            full = len(self.batch) >= self.max_points
            due = self.last_tag and time.monotonic() - self.first_at >= self.max_wait_s
            if full or due:
                self._flush(ch)
        if self.last_tag:
            self._flush(ch)
        if not self.stop:
            # consume() ends on its own only when the broker cancels the consumer (a quorum
            # queue leader moved): the loop in run() reconnects.
            event(log, "consumer_cancelled", queue=METRICS_QUEUE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitor.writer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-points", type=int, default=5000)
    p.add_argument("--max-wait-s", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.max_points < 1 or not args.max_wait_s > 0:
        p.error("--max-points must be >= 1 and --max-wait-s > 0")
    logs.setup("metrics_writer")
    topo = load_topology()
    start_http_server(topo.services["metrics_writer"].port, addr=topo.bind_host)
    writer = Writer(topo, args.max_points, args.max_wait_s)

    def on_signal(*_: object) -> None:
        writer.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return writer.run()


if __name__ == "__main__":
    sys.exit(main())
