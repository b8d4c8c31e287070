"""AMQP connection parameters for a component user on a channel node (from the topology)."""

from __future__ import annotations

import pika

from infra.state import passwords
from infra.topology import Node, Topology


def amqp_params(topo: Topology, node: Node | str, user: str, password: str | None = None,
                **kw: object) -> pika.ConnectionParameters:
    n = topo.node(node) if isinstance(node, str) else node
    if user not in topo.rabbitmq.users:
        raise KeyError(f"rabbitmq.users has no user {user!r}")
    pw = password if password is not None else passwords([user])[user]
    return pika.ConnectionParameters(
        host=topo.bind_host, port=n.ports["amqp"], virtual_host=topo.rabbitmq.vhost,
        credentials=pika.PlainCredentials(user, pw), **kw,
    )


PERSISTENT_JSON = pika.BasicProperties(delivery_mode=2, content_type="application/json")


def publish_stored(channel: object, exchange: str, routing_key: str, body: bytes) -> None:
    """Publish persistently and ``mandatory`` on a confirm-mode channel.

    ``mandatory`` because right after a broker restart RabbitMQ (3.10 here) confirms a message
    routed to a stream whose process has not started yet and drops it; mandatory turns that
    into a basic.return (``UnroutableError`` on a blocking channel), so the caller keeps the
    message and retries instead of believing it stored.
    """
    channel.basic_publish(exchange, routing_key, body, PERSISTENT_JSON,  # type: ignore[attr-defined]
                          mandatory=True)
