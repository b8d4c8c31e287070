"""Structured Streaming source over RabbitMQ stream queues (pyspark Python Data Source API).

Offsets are ``{channel: next_offset}`` over every channel's telemetry stream. Each trigger:

* the channels are those of the latest routing table (re-read every few seconds from the home
  channel's routing stream) plus every channel already in the offset: a newly woken channel is
  picked up without a restart (it joins, with no rows that batch, where the routing table
  says it was added, or at its first retained offset without that time or with ``earliest``),
  and a channel leaving the table is still read to its end;
* the end of each stream is probed (subscribe at ``last``: the last chunk's highest offset + 1);
  an unreachable channel simply makes no progress this trigger;
* a read limit (``maxRowsPerTrigger``) is shared between channels in proportion to backlog;
* each channel's range is split into partitions of at most ``partitionRows`` so every executor
  can work on one channel's backlog.

``read`` runs on executors: it seeks to the partition's first offset and yields up to its last.
If retention already deleted that offset, it fails the query loudly instead of skipping data.
Stream offsets are replayable, so a batch re-run after a crash reads exactly the same messages.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows

from ingest.routing import RoutingError, RoutingTable

SCHEMA = "channel string, offset long, routing_key string, body binary, ingest_ms long"


def _log(event: str, **fields: object) -> None:
    """One JSON line per planning decision, on the driver's stderr (this runs in Spark's
    long-lived driver-side Python worker, outside the job's logging set-up)."""
    import sys

    record = {"ts": round(time.time(), 3), "component": "rabbitmq_source", "event": event,
              **fields}
    print(json.dumps(record, default=str, separators=(",", ":")), file=sys.stderr, flush=True)


class RetentionError(RuntimeError):
    """The offset a batch needs is no longer in the stream."""


@dataclass(frozen=True)
class ChannelAddress:
    host: str
    port: int
    vhost: str


@dataclass(frozen=True)
class StreamRange(InputPartition):
    channel: str
    address: ChannelAddress
    user: str
    password: str
    stream: str
    start: int
    end: int  # exclusive


def _params(addr: ChannelAddress, user: str, password: str, timeout: float = 10.0):
    import pika

    return pika.ConnectionParameters(
        host=addr.host, port=addr.port, virtual_host=addr.vhost,
        credentials=pika.PlainCredentials(user, password), socket_timeout=timeout,
        blocked_connection_timeout=timeout, connection_attempts=1, heartbeat=30)


def _close(conn) -> None:
    # RabbitMQ 3.10 answers a consumer cancel with buffered deliveries by closing the
    # connection (540): closing it ourselves and ignoring errors is the clean exit.
    with contextlib.suppress(Exception):
        if conn.is_open:
            conn.close()


# How long a probe waits for its first delivery. Measured here: a subscription at ``first``
# or at a time delivers after ~0.6 s (the chunk is read from disk), so the 50-ms idle gap that
# suits ``last`` (the tail is in memory) reported such a stream as empty.
FIRST_DELIVERY_WAIT_S = 5.0


def probe(addr: ChannelAddress, user: str, password: str, stream: str,
          at: str | dt.datetime, idle_s: float = 0.05, cap_s: float = 0.5,
          first_wait_s: float | None = None) -> tuple[int, int] | None:
    """(lowest, highest+1) offset delivered from position ``at`` (first|last, or a time: the
    chunk that arrived at or just before it), or None if nothing is there. Waits up to
    ``first_wait_s`` for the first delivery (default: ``idle_s`` at ``last``, else
    :data:`FIRST_DELIVERY_WAIT_S`), then stops at the first idle gap, or after ``cap_s`` under
    continuous load (any end it reports is then a valid, slightly early, end)."""
    import pika

    if first_wait_s is None:
        first_wait_s = idle_s if at == "last" else FIRST_DELIVERY_WAIT_S
    conn = pika.BlockingConnection(_params(addr, user, password))
    lo = hi = None
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=5000)
        started = time.monotonic()
        deadline = None   # cap_s counts from the first delivery
        for method, props, _body in ch.consume(stream, arguments={"x-stream-offset": at},
                                               inactivity_timeout=idle_s):
            if method is None:
                if lo is None and time.monotonic() - started < first_wait_s:
                    continue
                break
            off = int(props.headers["x-stream-offset"])
            lo = off if lo is None else min(lo, off)
            hi = off if hi is None else max(hi, off)
            ch.basic_ack(method.delivery_tag, multiple=False)
            deadline = deadline or time.monotonic() + cap_s
            if at == "first" or time.monotonic() > deadline:
                break
    finally:
        _close(conn)
    return None if lo is None else (lo, hi + 1)


def share_limit(backlog: dict[str, int], limit: int) -> dict[str, int]:
    """Split a row budget over channels in proportion to their backlog (each gets >= 1 if it
    has any), never more than a channel's backlog. Pure; unit-tested."""
    total = sum(backlog.values())
    if total <= limit:
        return dict(backlog)
    out = {}
    for ch, n in backlog.items():
        out[ch] = min(n, max(1 if n else 0, math.floor(limit * n / total)))
    return out


def split_range(start: int, end: int, max_rows: int, min_parts: int) -> list[tuple[int, int]]:
    """[start, end) in contiguous pieces: at most ``max_rows`` each, and at least
    ``min_parts`` pieces when there are enough rows (>= 100 per piece) to be worth a task."""
    n = end - start
    if n <= 0:
        return []
    parts = max(math.ceil(n / max_rows), min(min_parts, n // 100), 1)
    size = math.ceil(n / parts)
    return [(a, min(a + size, end)) for a in range(start, end, size)]


OPTIONS = ("channels", "user", "password", "stream", "home", "routingStream",
           "maxRowsPerTrigger", "partitionRows", "minPartitions", "startingOffsets",
           "routingRefreshS")


def normalise_options(options) -> dict[str, str]:
    """Spark passes options case-insensitively (keys arrive lower-cased): map them back to
    their documented names, and reject a misspelt one instead of silently ignoring it."""
    by_lower = {name.lower(): name for name in OPTIONS}
    out = {}
    for key, value in dict(options).items():
        name = by_lower.get(str(key).lower())
        if name is None:
            raise ValueError(f"rabbitmq_stream: unknown option {key!r} "
                             f"(known: {', '.join(OPTIONS)})")
        out[name] = str(value)
    return out


class RabbitStreamReader(DataSourceStreamReader):
    def __init__(self, options) -> None:
        options = normalise_options(options)
        try:
            raw = json.loads(options["channels"])
            self.addresses = {name: ChannelAddress(a["host"], int(a["port"]), a["vhost"])
                              for name, a in raw.items()}
            self.user = options["user"]
            self.password = options["password"]
            self.max_rows = int(options.get("maxRowsPerTrigger", "0")) or None
            self.partition_rows = int(options.get("partitionRows", "20000"))
            self.min_partitions = int(options.get("minPartitions", "3"))
            self.refresh_s = float(options.get("routingRefreshS", "2"))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"rabbitmq_stream: option missing or malformed: {exc}") from exc
        self.stream = options.get("stream", "vpp.telemetry.stream")
        self.home = options.get("home", next(iter(self.addresses)))
        self.routing_stream = options.get("routingStream", "vpp.control.routing")
        self.starting = options.get("startingOffsets", "earliest")
        if self.starting not in ("earliest", "latest") and not self.starting.startswith("{"):
            raise ValueError(f"rabbitmq_stream: startingOffsets must be earliest, latest or a "
                             f"JSON object, got {self.starting!r}")
        self._routed: tuple[str, ...] = ()
        self._routed_at = 0.0
        self._added_ms: dict[str, int] = {}   # when each routed channel joined (routing table)
        self._ends: dict[str, int] = {}

    # -- channel discovery -------------------------------------------------------------------
    def routed_channels(self) -> tuple[str, ...]:
        now = time.monotonic()
        if now - self._routed_at < self.refresh_s and self._routed:
            return self._routed
        self._routed_at = now
        # Home channel restarting: keep the last known set of channels.
        with contextlib.suppress(Exception):
            self._routed = self._latest_table_channels()
        return self._routed or (self.home,)

    def _latest_table_channels(self) -> tuple[str, ...]:
        import pika

        addr = self.addresses[self.home]
        conn = pika.BlockingConnection(_params(addr, self.user, self.password))
        best: RoutingTable | None = None
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=500)
            for method, _props, body in ch.consume(self.routing_stream,
                                                   arguments={"x-stream-offset": "last"},
                                                   inactivity_timeout=0.1):
                if method is None:
                    break
                ch.basic_ack(method.delivery_tag)
                try:
                    table = RoutingTable.from_json(body)
                except RoutingError:
                    continue   # the gateways reject it too
                if best is None or table.version > best.version:
                    best = table
        finally:
            _close(conn)
        if best is None:
            return ()
        self._added_ms = dict(best.added_ms)
        return tuple(c for c in best.channels if c in self.addresses)

    def _end(self, channel: str) -> int | None:
        try:
            got = probe(self.addresses[channel], self.user, self.password, self.stream, "last")
        except Exception:
            return self._ends.get(channel)
        end = 0 if got is None else got[1]
        self._ends[channel] = max(end, self._ends.get(channel, 0))
        return self._ends[channel]

    def _first(self, channel: str) -> int:
        got = probe(self.addresses[channel], self.user, self.password, self.stream, "first")
        return 0 if got is None else got[0]

    def _join_offset(self, channel: str) -> int:
        """Where a channel met for the first time starts. ``earliest``: its first retained
        offset. Otherwise, when the routing table says when the channel joined, the first
        chunk stored from a second before then on (RabbitMQ attaches by arrival time, at chunk
        granularity): what the stream kept from earlier runs is not replayed. Until something
        arrived there the channel is not joined (LookupError; a later trigger asks again): a
        probe that sees nothing cannot tell an empty tail from a slow first delivery, and
        joining at the end on a wrong guess would skip readings. Without that time: the first
        retained offset."""
        added = self._added_ms.get(channel)
        if self.starting == "earliest" or added is None:
            return self._first(channel)
        when = dt.datetime.fromtimestamp(added / 1000 - 1, tz=dt.UTC)
        got = probe(self.addresses[channel], self.user, self.password, self.stream, when)
        if got is None:
            raise LookupError(f"{channel}: nothing stored since it joined the routing")
        return got[0]

    def _end_or_fail(self, channel: str) -> int:
        """A query's starting point must be known: unlike a later trigger, do not guess."""
        got = probe(self.addresses[channel], self.user, self.password, self.stream, "last")
        end = 0 if got is None else got[1]
        self._ends[channel] = end
        return end

    # -- offsets -----------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        channels = self.routed_channels()
        if self.starting.startswith("{"):
            given = {k: int(v) for k, v in json.loads(self.starting).items()}
            out = {ch: given.get(ch, 0) for ch in sorted(set(channels) | set(given))}
        elif self.starting == "latest":
            out = {ch: self._end_or_fail(ch) for ch in channels}
        else:
            out = {ch: self._first(ch) for ch in channels}
        _log("initial_offset", starting=self.starting, offsets=out)
        return out

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        ends = {}
        for ch in sorted(set(self.routed_channels()) - set(start)):
            # A channel seen for the first time (woken, or routed after the query began) joins
            # at its first retained offset, with no rows this batch: offset 0 may already be
            # gone to retention, and reading from it would fail the query.
            try:
                ends[ch] = self._join_offset(ch)
            except Exception:
                continue   # not answering yet: a later trigger picks it up
            _log("channel_joined", channel=ch, at=ends[ch])
        for ch in sorted(start):
            at = int(start[ch])
            end = self._end(ch)
            ends[ch] = at if end is None else max(at, end)
        if isinstance(limit, ReadMaxRows):
            backlog = {ch: ends[ch] - int(start[ch]) for ch in start}
            take = share_limit(backlog, limit.max_rows)
            ends.update({ch: int(start[ch]) + take[ch] for ch in start})
        _log("latest_offset", start=start, end=ends, limit=type(limit).__name__)
        return ends

    def reportLatestOffset(self) -> dict | None:
        return dict(self._ends) or None

    def partitions(self, start: dict, end: dict) -> list[StreamRange]:
        _log("partitions", start=start, end=end)
        parts = []
        for ch, stop in sorted(end.items()):
            # a channel missing from start joined this batch at ``stop``: nothing to read yet
            for a, b in split_range(int(start.get(ch, stop)), int(stop), self.partition_rows,
                                    self.min_partitions):
                parts.append(StreamRange(ch, self.addresses[ch], self.user, self.password,
                                         self.stream, a, b))
        return parts

    def read(self, partition: StreamRange) -> Iterator[tuple]:
        yield from read_range(partition)

    def commit(self, end: dict) -> None:
        return None


def read_range(p: StreamRange, stall_s: float = 30.0) -> Iterator[tuple]:
    """Yield (channel, offset, routing_key, body, ingest_ms) for offsets [start, end).

    The broker cancels a stream consumer when a member of the stream restarts, and pika's
    ``consume`` then simply ends: the range is resubscribed from the next offset, since
    returning early would let Spark commit offsets whose readings it never read."""
    expected = p.start
    if expected >= p.end:
        return
    for attempt in range(1, RESUBSCRIBE_ATTEMPTS + 1):
        for row in _subscribe(p, expected, stall_s):
            yield row
            expected = row[1] + 1
        if expected >= p.end:
            return
        _log("consumer_cancelled", channel=p.channel, stream=p.stream, at=expected,
             end=p.end, attempt=attempt)
        time.sleep(min(0.5 * attempt, 4.0))
    raise RuntimeError(f"{p.channel}/{p.stream}: consumer cancelled {RESUBSCRIBE_ATTEMPTS} times "
                       f"at offset {expected} (wanted up to {p.end})")


# A restarting stream member cancels consumers once or twice; more means something is wrong.
RESUBSCRIBE_ATTEMPTS = 10


def _subscribe(p: StreamRange, start: int, stall_s: float) -> Iterator[tuple]:
    """One subscription from ``start``: rows until ``p.end``, or until the broker cancels."""
    import pika

    conn = pika.BlockingConnection(_params(p.address, p.user, p.password))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=2000)
        expected = start
        last_delivery = time.monotonic()
        for method, props, body in ch.consume(p.stream, arguments={"x-stream-offset": start},
                                              inactivity_timeout=1.0):
            if method is None:
                if time.monotonic() - last_delivery > stall_s:
                    raise TimeoutError(f"{p.channel}: no delivery for {stall_s:.0f} s at offset "
                                       f"{expected} (wanted up to {p.end})")
                continue
            last_delivery = time.monotonic()
            ch.basic_ack(method.delivery_tag)
            off = int(props.headers["x-stream-offset"])
            if off < expected:
                continue  # the chunk holding our first offset starts earlier
            if off > expected:
                # A hole in the offsets is not always loss: the broker may give an offset to a
                # log entry that is no message (seen here: one missing offset mid-stream while
                # the stream's first offset was far behind). Only offsets before the stream's
                # first retained one were deleted by retention.
                first = probe(p.address, p.user, p.password, p.stream, "first")
                if first is not None and first[0] > expected:
                    raise RetentionError(
                        f"{p.channel}/{p.stream}: offsets {expected}..{off - 1} are gone "
                        "(retention deleted readings before Spark processed them)")
                _log("offset_hole", channel=p.channel, start=expected, end=off,
                     first_retained=None if first is None else first[0])
            ts = props.timestamp
            yield (p.channel, off, method.routing_key, body,
                   int(ts * 1000) if ts else None)
            expected = off + 1
            if expected >= p.end:
                return
    finally:
        _close(conn)


class RabbitStreamSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "rabbitmq_stream"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema) -> RabbitStreamReader:
        return RabbitStreamReader(self.options)


def source_options(topo, user: str = "stream", **extra: str) -> dict[str, str]:
    """Options for ``spark.readStream.format("rabbitmq_stream")`` from the topology."""
    from infra.state import passwords
    from ingest.topology import home_channel

    channels = {n.name: {"host": topo.bind_host, "port": n.ports["amqp"],
                         "vhost": topo.rabbitmq.vhost} for n in topo.pool_nodes("queue")}
    return {"channels": json.dumps(channels), "user": user,
            "password": passwords([user])[user], "home": home_channel(topo).name, **extra}
