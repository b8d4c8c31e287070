"""Blocking helpers over RabbitMQ stream queues: read a range by offset, find the end, publish
a few confirmed control messages. Used by the routing CLI, tests and the Spark source.

RabbitMQ 3.10 quirk (DESIGN.md): when a stream consumer with buffered deliveries is cancelled
the broker answers 540 and closes the connection. Readers here therefore never cancel: they
close the whole connection and ignore the error that close may raise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pika
import pika.exceptions

from infra.amqp import amqp_params
from infra.topology import Topology
from ingest.routing import RoutingError, RoutingTable, latest
from ingest.topology import CONTROL_EXCHANGE, ROUTING_KEY_TABLE, ROUTING_STREAM, home_channel


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


def read_stream(params: pika.ConnectionParameters, stream: str, start: int | str = "first",
                end: int | None = None, idle_s: float = 1.0, prefetch: int = 1000,
                limit: int | None = None) -> Iterator[StreamMessage]:
    """Messages of ``stream`` from offset ``start`` up to (excluding) ``end``.

    Without ``end`` the read stops after ``idle_s`` without a delivery. ``start`` may be an
    offset or one of first/last/next.
    """
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
            if end is not None and offset >= end:
                return
            yield StreamMessage(offset, method.routing_key, dict(props.headers or {}), body)
            n += 1
            if (limit is not None and n >= limit) or (end is not None and offset + 1 >= end):
                return
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
            ch.basic_publish(exchange, key, body,
                             pika.BasicProperties(delivery_mode=2, content_type="application/json"))
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
