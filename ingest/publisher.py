"""Confirmed publishing to one channel, many confirms in flight, nothing lost silently.

A :class:`ChannelPublisher` owns one AMQP connection (pika ``SelectConnection``) on an IO loop
shared with the rest of its gateway, so a gateway runs single-threaded. Messages wait in a
bounded buffer, are published persistently while fewer than ``max_in_flight`` are unconfirmed,
and are forgotten only when the broker confirms them:

* nack, or a connection/channel lost with messages unconfirmed: those go back to the *front* of
  the buffer and are re-sent after reconnecting (the consumer drops re-sent duplicates by
  (der_id, seq));
* returned (published ``mandatory``, and the stream it routes to is not up yet): back to the
  front of the buffer, publishing pauses briefly, then they are re-sent. Without ``mandatory``
  RabbitMQ confirms a message routed to a queue whose process is still starting after a
  restart, and drops it: measured here as ~40 confirmed-but-lost readings in the second
  after a broker restart;
* buffer full (the channel is down or slower than the offered rate): the *oldest* buffered
  message is dropped and counted (Telegraf's policy), reported through ``on_dropped`` and
  the stats, never silently.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pika
import pika.spec
from pika.adapters.select_connection import IOLoop, SelectConnection

from infra import logs
from infra.amqp import publish_stored
from infra.logs import event

log = logs.get("publisher")

RETURN_HOLD_MIN_S = 0.25
RETURN_HOLD_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    der_id: str
    seq: int
    routing_key: str
    body: bytes


@dataclass
class PublisherStats:
    offered: int = 0
    published: int = 0
    confirmed: int = 0
    confirmed_bytes: int = 0   # body bytes of the confirmed messages
    nacked: int = 0
    returned: int = 0
    resent: int = 0
    dropped_overflow: int = 0
    reconnects: int = 0
    rerouted_out: int = 0
    rerouted_in: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _State:
    connection: SelectConnection | None = None
    channel: object | None = None
    ready: bool = False
    next_tag: int = 1
    pending: dict[int, Outgoing] = field(default_factory=dict)  # insertion order = tag order
    # Bodies the broker returned; the ack that follows a return must not count as confirmed.
    returned: set[bytes] = field(default_factory=set)


class ChannelPublisher:
    def __init__(
        self,
        ioloop: IOLoop,
        name: str,
        params: pika.ConnectionParameters,
        exchange: str,
        *,
        max_in_flight: int = 1000,
        max_buffer: int = 200_000,
        on_confirmed: Callable[[list[Outgoing]], None] | None = None,
        on_dropped: Callable[[Outgoing], None] | None = None,
    ) -> None:
        if max_in_flight < 1 or max_buffer < 1:
            raise ValueError("max_in_flight and max_buffer must be >= 1")
        self.ioloop = ioloop
        self.name = name
        self.params = params
        self.exchange = exchange
        self.max_in_flight = max_in_flight
        self.max_buffer = max_buffer
        self.on_confirmed = on_confirmed
        self.on_dropped = on_dropped
        self.stats = PublisherStats()
        self.buffer: deque[Outgoing] = deque()
        self._s = _State()
        self._closing = False
        self._backoff = 0.5
        self._reconnect_timer: object | None = None
        self._hold_until = 0.0          # monotonic time before which nothing is published
        self._hold_s = RETURN_HOLD_MIN_S
        self._hold_timer: object | None = None

    # -- public ------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._s.pending)

    @property
    def idle(self) -> bool:
        return not self.buffer and not self._s.pending

    @property
    def connected(self) -> bool:
        return self._s.ready

    def start(self) -> None:
        self._connect()

    def offer(self, msg: Outgoing) -> None:
        self.stats.offered += 1
        self._append(msg)

    def accept_rerouted(self, msg: Outgoing) -> None:
        """A message another channel's publisher had buffered for a DER now routed here."""
        self.stats.rerouted_in += 1
        self._append(msg)

    def take_buffered(self, keep: Callable[[Outgoing], bool]) -> list[Outgoing]:
        """Remove and return buffered (never published) messages for which ``keep`` is false.

        Used when the routing table moves DERs away from this channel: what was not published
        yet follows the DER to its new channel.
        """
        taken = [m for m in self.buffer if not keep(m)]
        if taken:
            self.buffer = deque(m for m in self.buffer if keep(m))
            self.stats.rerouted_out += len(taken)
        return taken

    def pump(self) -> None:
        s = self._s
        if self._closing or not s.ready or s.channel is None or self._held():
            return
        ch = s.channel
        while self.buffer and len(s.pending) < self.max_in_flight:
            msg = self.buffer.popleft()
            try:
                publish_stored(ch, self.exchange, msg.routing_key, msg.body)
            except Exception as exc:  # channel/connection closed under us: keep the message
                self.buffer.appendleft(msg)
                event(log, "publish_failed", logging.WARNING, channel=self.name, error=repr(exc))
                return
            s.pending[s.next_tag] = msg
            s.next_tag += 1
            self.stats.published += 1

    def close(self) -> None:
        self._closing = True
        for timer in (self._reconnect_timer, self._hold_timer):
            if timer is not None:
                self.ioloop.remove_timeout(timer)
        self._reconnect_timer = self._hold_timer = None
        conn = self._s.connection
        if conn is not None and not (conn.is_closed or conn.is_closing):
            conn.close()

    # -- internals ---------------------------------------------------------------------------
    def _append(self, msg: Outgoing) -> None:
        self.buffer.append(msg)
        while len(self.buffer) > self.max_buffer:
            dropped = self.buffer.popleft()
            self.stats.dropped_overflow += 1
            if self.on_dropped is not None:
                self.on_dropped(dropped)

    def _requeue_pending(self) -> None:
        s = self._s
        if s.pending:
            # Back to the front, oldest first, so per-DER order is kept on re-send.
            self.buffer.extendleft(reversed(list(s.pending.values())))
            self.stats.resent += len(s.pending)
            s.pending.clear()
        s.returned.clear()
        s.next_tag = 1

    def _held(self) -> bool:
        """True while publishing pauses after a return; a timer resumes it."""
        wait = self._hold_until - time.monotonic()
        if wait <= 0:
            return False
        if self._hold_timer is None:
            self._hold_timer = self.ioloop.call_later(wait, self._end_hold)
        return True

    def _end_hold(self) -> None:
        self._hold_timer = None
        self.pump()

    def _connect(self) -> None:
        self._reconnect_timer = None
        if self._closing:
            return
        self._s.connection = SelectConnection(
            parameters=self.params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self.ioloop,
        )

    def _schedule_reconnect(self) -> None:
        if self._closing or self._reconnect_timer is not None:
            return
        delay = self._backoff
        self._backoff = min(self._backoff * 2, 5.0)
        self.stats.reconnects += 1
        self._reconnect_timer = self.ioloop.call_later(delay, self._connect)

    def _on_open(self, conn: SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, _conn: SelectConnection, err: BaseException) -> None:
        event(log, "connect_failed", logging.WARNING, channel=self.name, error=repr(err),
              retry_s=self._backoff)
        self._s.ready = False
        self._schedule_reconnect()

    def _on_channel(self, ch: object) -> None:
        self._s.channel = ch
        ch.add_on_close_callback(self._on_channel_closed)  # type: ignore[attr-defined]
        ch.add_on_return_callback(self._on_return)  # type: ignore[attr-defined]
        ch.confirm_delivery(ack_nack_callback=self._on_confirm,  # type: ignore[attr-defined]
                            callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: object) -> None:
        self._s.ready = True
        self._backoff = 0.5
        event(log, "connected", channel=self.name, buffered=len(self.buffer))
        self.pump()

    def _on_channel_closed(self, _ch: object, reason: BaseException) -> None:
        self._s.ready = False
        self._s.channel = None
        self._requeue_pending()
        if not self._closing:
            event(log, "channel_closed", logging.WARNING, channel=self.name, reason=repr(reason))
            conn = self._s.connection
            if conn is not None and conn.is_open:
                conn.close()  # reconnect from _on_closed with a fresh connection

    def _on_closed(self, _conn: SelectConnection, reason: BaseException) -> None:
        self._s.ready = False
        self._s.channel = None
        self._requeue_pending()
        if not self._closing:
            event(log, "disconnected", logging.WARNING, channel=self.name, reason=repr(reason),
                  buffered=len(self.buffer))
            self._schedule_reconnect()

    def _on_return(self, _ch: object, method: object, _props: object, body: bytes) -> None:
        # The broker sends basic.return before the basic.ack of the same message.
        self._s.returned.add(body)
        event(log, "returned", logging.WARNING, channel=self.name,
              reply=f"{getattr(method, 'reply_code', '?')} {getattr(method, 'reply_text', '')}",
              hold_s=self._hold_s)

    def _on_confirm(self, frame: object) -> None:
        method = frame.method  # type: ignore[attr-defined]
        tag, multiple = method.delivery_tag, method.multiple
        pending = self._s.pending
        if multiple:
            done = []
            while pending:
                first = next(iter(pending))
                if first > tag:
                    break
                done.append(pending.pop(first))
        else:
            msg = pending.pop(tag, None)
            done = [msg] if msg is not None else []
        if isinstance(method, pika.spec.Basic.Ack):
            # Almost always empty: no per-confirm hashing of bodies unless something came back.
            back = [m for m in done if m.body in self._s.returned] if self._s.returned else []
            if back:
                self._s.returned.difference_update(m.body for m in back)
                done = [m for m in done if m not in back]
                self.stats.returned += len(back)
                self.stats.resent += len(back)
                self.buffer.extendleft(reversed(back))
                # Not routable yet (a stream still starting): pause, then re-send.
                self._hold_until = time.monotonic() + self._hold_s
                self._hold_s = min(self._hold_s * 2, RETURN_HOLD_MAX_S)
            elif done:
                self._hold_s = RETURN_HOLD_MIN_S
            self.stats.confirmed += len(done)
            self.stats.confirmed_bytes += sum(len(m.body) for m in done)
            if done and self.on_confirmed is not None:
                self.on_confirmed(done)
        else:
            self.stats.nacked += len(done)
            self.stats.resent += len(done)
            self.buffer.extendleft(reversed(done))
        self.pump()
