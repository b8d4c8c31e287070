"""Metric points to RabbitMQ (Alg. 1: agents forward logs to RQ), nothing lost silently.

Points wait in a bounded buffer and leave in batches, one persistent message per batch, each
confirmed by the broker before the points are forgotten. While the broker is down the buffer
keeps them (with their original timestamps); when it is full the oldest are dropped and
counted. AutoDiagn's agents used a non-durable queue with auto-ack; this path is durable end to
end: confirmed publish -> quorum queue -> the writer acks only after InfluxDB accepted them.

Runs inside node containers with Debian's python3-pika 1.2, so it uses only the API that 1.2
and 1.3 share.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import pika
import pika.exceptions

from infra import logs
from infra.amqp import publish_stored
from infra.logs import event

log = logs.get("metrics_transport")
EXCHANGE = "vpp.metrics"
MAX_POINTS_PER_MESSAGE = 500


@dataclass
class TransportStats:
    points: int = 0
    published: int = 0
    messages: int = 0
    errors: int = 0
    dropped: int = 0


def point(measurement: str, tags: Mapping[str, object], fields: Mapping[str, object],
          time_ns: int) -> dict[str, object]:
    return {"m": measurement, "tags": dict(tags), "fields": dict(fields), "t": int(time_ns)}


class PointPublisher:
    def __init__(self, params: pika.ConnectionParameters, routing_key: str,
                 max_buffer: int = 20_000, source: str = "") -> None:
        self.params = params
        self.routing_key = routing_key
        self.source = source
        self.buffer: deque[dict[str, object]] = deque()
        self.max_buffer = max_buffer
        self.stats = TransportStats()
        self._conn: pika.BlockingConnection | None = None
        self._ch = None
        self._retry_at = 0.0
        self._backoff = 1.0
        self._batch_seq = 0

    def add(self, p: dict[str, object]) -> None:
        self.stats.points += 1
        self.buffer.append(p)
        while len(self.buffer) > self.max_buffer:
            self.buffer.popleft()
            self.stats.dropped += 1

    def _channel(self):
        if self._conn is None or not self._conn.is_open:
            self._conn = pika.BlockingConnection(self.params)
            self._ch = self._conn.channel()
            self._ch.confirm_delivery()
        return self._ch

    def flush(self) -> int:
        """Publish what is buffered; returns how many points the broker confirmed."""
        if not self.buffer or time.monotonic() < self._retry_at:
            return 0
        sent = 0
        try:
            ch = self._channel()
            while self.buffer:
                batch = [self.buffer[i] for i in range(min(MAX_POINTS_PER_MESSAGE,
                                                           len(self.buffer)))]
                body = json.dumps({"source": self.source, "batch": self._batch_seq,
                                   "points": batch}, separators=(",", ":")).encode()
                # confirm_delivery mode: returns once the broker confirmed, raises otherwise.
                publish_stored(ch, EXCHANGE, self.routing_key, body)
                for _ in batch:
                    self.buffer.popleft()
                self._batch_seq += 1
                sent += len(batch)
                self.stats.messages += 1
            self._backoff = 1.0
        except Exception as exc:  # broker down or restarting: keep the points, retry later
            self.stats.errors += 1
            event(log, "publish_failed", source=self.source, buffered=len(self.buffer),
                  retry_s=self._backoff, error=repr(exc))
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            self.close()
        self.stats.published += sent
        return sent

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        self._ch = None
