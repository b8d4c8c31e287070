"""Blocking helpers over RabbitMQ stream queues: read a range by offset, find the end, publish
a few confirmed control messages. Used by the routing CLI, tests and the Spark source.

RabbitMQ 3.10 quirk (DESIGN.md): when a stream consumer with buffered deliveries is cancelled
the broker answers 540 and closes the connection. Readers here therefore never cancel: they
close the whole connection and ignore the error that close may raise.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pika
import pika.exceptions

from infra.amqp import amqp_params, publish_stored
from infra.topology import Topology
from ingest.routing import RoutingError, RoutingTable, latest
from ingest.topology import CONTROL_EXCHANGE, ROUTING_KEY_TABLE, ROUTING_STREAM, home_channel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamMessage:
    offset: int
    routing_key: str
    headers: dict[str, object]
    body: bytes


def _close_quietly(conn: pika.BlockingConnection) -> None:
    with contextlib.suppress(Exception):
        if conn.is_open:
            conn.close()


# A broker that was just started (or restarted) answers AMQP before its streams have a leader:
# the subscription then fails with 541 INTERNAL_ERROR or 404 "home node ... is down". Until the
# first delivery nothing was read, so the read is simply tried again for this long.
STREAM_READY_TIMEOUT_S = 30.0


class ConsumerCancelled(Exception):
    """The broker cancelled the stream consumer (it does when a member of the stream restarts);
    pika's blocking ``consume`` then just ends, which would look like the end of the stream."""


def read_stream(params: pika.ConnectionParameters, stream: str, start: int | str = "first",
                end: int | None = None, idle_s: float = 1.0, prefetch: int = 1000,
                limit: int | None = None,
                ready_timeout_s: float = STREAM_READY_TIMEOUT_S) -> Iterator[StreamMessage]:
    """Messages of ``stream`` from offset ``start`` up to (excluding) ``end``.

    Without ``end`` the read stops after ``idle_s`` without a delivery. ``start`` may be an
    offset or one of first/last/next. A stream not ready yet is retried for ``ready_timeout_s``
    from the offset after the last delivery. A consumer the broker cancels is resubscribed at the
    offset after the last one delivered, so a cancel never shortens a read silently.
    """
    deadline = time.monotonic() + ready_timeout_s
    pause = 0.5
    delivered = 0
    while True:
        try:
            for msg in _read_once(params, stream, start, end, idle_s, prefetch,
                                  None if limit is None else limit - delivered):
                delivered += 1
                start = msg.offset + 1   # a retry resumes exactly after the last delivery
                yield msg
            return
        except ConsumerCancelled:
            log.warning("stream %s: consumer cancelled by the broker; resubscribing at %s",
                        stream, start)
            deadline = time.monotonic() + ready_timeout_s   # the member restarting gets its time
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelClosedByBroker,
                pika.exceptions.ConnectionClosedByBroker) as exc:
            if not _not_ready(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("stream %s not ready (%r): retrying at %s in %.1f s",
                        stream, exc, start, pause)
        time.sleep(pause)
        pause = min(pause * 2, 4.0)


def _not_ready(exc: Exception) -> bool:
    """A broker whose streams are still starting, not a real error. A missing stream (404
    without 'down') is one, and so is a broker that refuses connections: that fails at once."""
    code = getattr(exc, "reply_code", None)
    return code == 541 or (code == 404 and "is down" in str(getattr(exc, "reply_text", "")))


def _read_once(params: pika.ConnectionParameters, stream: str, start: int | str,
               end: int | None, idle_s: float, prefetch: int, limit: int | None
               ) -> Iterator[StreamMessage]:
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=prefetch)
        n = 0
        for method, props, body in ch.consume(stream, arguments={"x-stream-offset": start},
                                              inactivity_timeout=idle_s):
            if method is None:
                if end is None:
                    return
                continue  # a bounded read waits for the range to arrive
            offset = int((props.headers or {}).get("x-stream-offset", -1))
            ch.basic_ack(method.delivery_tag)
            if isinstance(start, int) and 0 <= offset < start:
                continue   # a subscription may start at the chunk holding ``start``
            if end is not None and offset >= end:
                return
            yield StreamMessage(offset, method.routing_key, dict(props.headers or {}), body)
            n += 1
            if (limit is not None and n >= limit) or (end is not None and offset + 1 >= end):
                return
        # consume() ended without our return: only a broker-sent basic.cancel does that.
        raise ConsumerCancelled(stream)
    finally:
        _close_quietly(conn)


def stream_end(params: pika.ConnectionParameters, stream: str, idle_s: float = 0.3) -> int:
    """The offset the next message will get (0 for an empty stream).

    Subscribing at ``last`` delivers the last chunk; its highest offset + 1 is the end.
    """
    end = 0
    for msg in read_stream(params, stream, "last", idle_s=idle_s):
        end = max(end, msg.offset + 1)
    return end


def publish_confirmed(params: pika.ConnectionParameters, exchange: str,
                      messages: Iterable[tuple[str, bytes]]) -> int:
    """Publish (routing_key, body) pairs persistently, waiting for each confirm."""
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        n = 0
        for key, body in messages:
            publish_stored(ch, exchange, key, body)
            n += 1
        return n
    finally:
        _close_quietly(conn)


def fetch_routing_table(topo: Topology, user: str = "admin") -> RoutingTable | None:
    """The highest-version table on the routing stream (None if none was published)."""
    params = amqp_params(topo, home_channel(topo), user)
    tables = []
    for msg in read_stream(params, ROUTING_STREAM, "last", idle_s=0.5):
        with contextlib.suppress(RoutingError):  # a malformed entry must not hide later ones
            tables.append(RoutingTable.from_json(msg.body))
    return latest(tables)


def publish_routing_table(topo: Topology, table: RoutingTable, user: str = "admin") -> None:
    unknown = [c for c in table.channels if c not in {n.name for n in topo.pool_nodes("queue")}]
    if unknown:
        raise RoutingError(f"channels: {unknown} are not queue nodes of the topology")
    params = amqp_params(topo, home_channel(topo), user)
    publish_confirmed(params, CONTROL_EXCHANGE, [(ROUTING_KEY_TABLE, table.to_json())])
