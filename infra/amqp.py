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
