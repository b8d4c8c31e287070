"""RabbitMQ topology of the VPP twin, declared by code, idempotently, on every active channel.

Per channel (one broker each; a woken channel is declared before it takes traffic)::

    vpp.telemetry   topic exchange  ──#──▶  vpp.telemetry.stream   (stream queue, replayable)
         └─ alternate-exchange ─▶ vpp.dlx (fanout) ──▶ vpp.dead  (classic durable: unroutable)

On the home channel (the first node of the queue pool, which never sleeps) also the control
plane and the monitoring path::

    vpp.control     topic exchange  ──routing──▶    vpp.control.routing   (stream: routing tables)
                                    ──der.health.#─▶ vpp.control.events   (stream: DER health)
                                    ──der.command.#▶ vpp.control.commands (stream: DER commands)
    vpp.metrics     topic exchange  ──#──▶  vpp.metrics.writer    (quorum queue, acked after write)
    vpp.diagnosis   topic exchange  ──#──▶  vpp.diagnosis.labels  (stream: RCA labels)
    vpp.decisions   topic exchange  ──#──▶  vpp.decisions.log     (stream: orchestrator actions)

Streams because they are replayable: a Spark batch can be re-read after a crash, and a late
reader of the routing table finds the latest version at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pika
import pika.exceptions

from infra.amqp import amqp_params
from infra.topology import Node, Topology

TELEMETRY_EXCHANGE = "vpp.telemetry"
TELEMETRY_STREAM = "vpp.telemetry.stream"
DEAD_LETTER_EXCHANGE = "vpp.dlx"
DEAD_LETTER_QUEUE = "vpp.dead"
CONTROL_EXCHANGE = "vpp.control"
ROUTING_STREAM = "vpp.control.routing"
EVENTS_STREAM = "vpp.control.events"
COMMANDS_STREAM = "vpp.control.commands"
METRICS_EXCHANGE = "vpp.metrics"
METRICS_QUEUE = "vpp.metrics.writer"
DIAGNOSIS_EXCHANGE = "vpp.diagnosis"
DIAGNOSIS_STREAM = "vpp.diagnosis.labels"
DECISIONS_EXCHANGE = "vpp.decisions"
DECISIONS_STREAM = "vpp.decisions.log"

ROUTING_KEY_TABLE = "routing"

# Telemetry retention per channel. Spark's source fails loudly when the offset it needs has
# been truncated, so this bounds how long the processing pool may fall behind:
# ~250 B/reading -> 4 GB holds ~16 M readings, over 4 h at 1,000 readings/s.
TELEMETRY_MAX_BYTES = 4 * 1024**3
TELEMETRY_SEGMENT_BYTES = 64 * 1024**2
CONTROL_MAX_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class StreamSpec:
    name: str
    max_bytes: int
    segment_bytes: int = 16 * 1024**2

    def arguments(self) -> dict[str, object]:
        return {"x-queue-type": "stream", "x-max-length-bytes": self.max_bytes,
                "x-stream-max-segment-size-bytes": self.segment_bytes}


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    key: str


@dataclass(frozen=True)
class ChannelTopology:
    exchanges: tuple[tuple[str, str, dict[str, object]], ...]  # (name, type, arguments)
    streams: tuple[StreamSpec, ...]
    queues: tuple[tuple[str, dict[str, object]], ...] = ()      # classic/quorum queues
    bindings: tuple[Binding, ...] = field(default=())


def telemetry_topology() -> ChannelTopology:
    return ChannelTopology(
        exchanges=(
            (DEAD_LETTER_EXCHANGE, "fanout", {}),
            (TELEMETRY_EXCHANGE, "topic", {"alternate-exchange": DEAD_LETTER_EXCHANGE}),
        ),
        streams=(StreamSpec(TELEMETRY_STREAM, TELEMETRY_MAX_BYTES, TELEMETRY_SEGMENT_BYTES),),
        queues=((DEAD_LETTER_QUEUE, {"x-queue-type": "classic"}),),
        bindings=(Binding(TELEMETRY_EXCHANGE, TELEMETRY_STREAM, "#"),
                  Binding(DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, "")),
    )


def home_topology() -> ChannelTopology:
    return ChannelTopology(
        exchanges=(
            (CONTROL_EXCHANGE, "topic", {}),
            (METRICS_EXCHANGE, "topic", {}),
            (DIAGNOSIS_EXCHANGE, "topic", {}),
            (DECISIONS_EXCHANGE, "topic", {}),
        ),
        streams=(
            StreamSpec(ROUTING_STREAM, CONTROL_MAX_BYTES),
            StreamSpec(EVENTS_STREAM, CONTROL_MAX_BYTES),
            StreamSpec(COMMANDS_STREAM, CONTROL_MAX_BYTES),
            StreamSpec(DIAGNOSIS_STREAM, CONTROL_MAX_BYTES),
            StreamSpec(DECISIONS_STREAM, CONTROL_MAX_BYTES),
        ),
        # Quorum: replicated-log durability and at-least-once with manual acks; the writer
        # acks a batch only after InfluxDB accepted it.
        queues=((METRICS_QUEUE, {"x-queue-type": "quorum"}),),
        bindings=(
            Binding(CONTROL_EXCHANGE, ROUTING_STREAM, ROUTING_KEY_TABLE),
            Binding(CONTROL_EXCHANGE, EVENTS_STREAM, "der.health.#"),
            Binding(CONTROL_EXCHANGE, COMMANDS_STREAM, "der.command.#"),
            Binding(METRICS_EXCHANGE, METRICS_QUEUE, "#"),
            Binding(DIAGNOSIS_EXCHANGE, DIAGNOSIS_STREAM, "#"),
            Binding(DECISIONS_EXCHANGE, DECISIONS_STREAM, "#"),
        ),
    )


def home_channel(topo: Topology) -> Node:
    """The control plane lives on the first queue node; the orchestrator never sleeps it."""
    return topo.pool_nodes("queue")[0]


def declare(channel: pika.adapters.blocking_connection.BlockingChannel,
            spec: ChannelTopology) -> None:
    for name, kind, args in spec.exchanges:
        channel.exchange_declare(name, kind, durable=True, arguments=args or None)
    for stream in spec.streams:
        channel.queue_declare(stream.name, durable=True, arguments=stream.arguments())
    for name, args in spec.queues:
        channel.queue_declare(name, durable=True, arguments=args)
    for b in spec.bindings:
        channel.queue_bind(b.queue, b.exchange, routing_key=b.key)


def _stream_not_ready(exc: pika.exceptions.ChannelClosedByBroker) -> bool:
    # After a broker (re)start, AMQP answers a few seconds before its stream replicas are
    # back: operations on them fail with 404 "home node ... is down or inaccessible".
    return exc.reply_code == 404 and "down or inaccessible" in exc.reply_text


def declare_channel(topo: Topology, node: Node | str, timeout_s: float = 60.0) -> float:
    """Declare everything a channel needs (idempotent; admin user) and return once its streams
    accept operations: the readiness gate before a woken channel takes traffic. Returns the
    seconds spent waiting for the streams."""
    n = topo.node(node) if isinstance(node, str) else node
    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    while True:
        conn = pika.BlockingConnection(amqp_params(topo, n, "admin", connection_attempts=5,
                                                   retry_delay=1))
        try:
            ch = conn.channel()
            declare(ch, telemetry_topology())
            if n.name == home_channel(topo).name:
                declare(ch, home_topology())
            return time.monotonic() - t0
        except pika.exceptions.ChannelClosedByBroker as exc:
            if not _stream_not_ready(exc) or time.monotonic() > deadline:
                raise
        finally:
            if conn.is_open:
                conn.close()
        time.sleep(0.5)
