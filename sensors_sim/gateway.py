"""A DER gateway: many simulated DERs, one process, one AMQP connection per channel.

Single-threaded on one pika IO loop: a scheduler tick reads every DER that is due, encodes the
reading with the telemetry schema and hands it to the :class:`~ingest.publisher.ChannelPublisher`
of the channel the routing table assigns that DER to. A consumer on the home channel's routing
stream applies a newer table as soon as it is published (moving not-yet-published readings of
moved DERs with them), and a consumer on the command stream forwards setpoints to DERs.

Nothing is lost silently: every reading is generated, then either confirmed by a broker,
dropped for buffer overflow (counted per DER), or still pending when the drain timeout ends the
run (counted). ``summary()`` reports all of it per DER.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pika.adapters.select_connection import IOLoop, SelectConnection
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from infra import logs
from infra.amqp import amqp_params
from infra.logs import event
from infra.topology import Topology
from ingest import schema
from ingest.publisher import ChannelPublisher, Outgoing
from ingest.routing import RoutingError, RoutingTable, initial_table
from ingest.topology import COMMANDS_STREAM, ROUTING_STREAM, TELEMETRY_EXCHANGE, home_channel
from sensors_sim.models.base import DER

# A control attempt that heard no routing table within this long is dropped and redone.
CONTROL_DEAF_S = 10.0

log = logs.get("gateway")

Activity = Callable[[float], set[str] | None]  # elapsed s -> active der_ids (None: all)


@dataclass
class GatewayConfig:
    gateway_id: int = 0
    user: str = "gateway"
    tick_s: float = 0.05
    duration_s: float | None = None
    max_in_flight: int = 1000
    max_buffer: int = 200_000
    drain_timeout_s: float = 30.0
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.tick_s <= 0:
            raise ValueError(f"tick_s: must be > 0, got {self.tick_s}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"duration_s: must be > 0, got {self.duration_s}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be >= 1, got {self.max_in_flight}")
        if self.max_buffer < 1:
            raise ValueError(f"max_buffer: must be >= 1, got {self.max_buffer}")


@dataclass
class DerCounters:
    generated: int = 0
    confirmed: int = 0
    dropped: int = 0
    last_seq: int = -1


@dataclass
class GatewayStats:
    generated: int = 0
    silent: int = 0          # due reads that produced nothing (dropout fault / filter)
    inactive: int = 0        # due reads skipped because the scenario had the DER off
    tables_applied: int = 0
    commands: int = 0
    max_schedule_lag_ms: float = 0.0
    per_der: dict[str, DerCounters] = field(default_factory=dict)


def _sum_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


class Gateway:
    def __init__(self, topo: Topology, ders: Sequence[DER], config: GatewayConfig | None = None,
                 activity: Activity | None = None,
                 filt_factory: Callable[[DER], object] | None = None) -> None:
        if not ders:
            raise ValueError("ders: a gateway needs at least one DER")
        self.topo = topo
        self.cfg = config or GatewayConfig()
        self.ders = list(ders)
        self.by_id = {d.der_id: d for d in self.ders}
        if len(self.by_id) != len(self.ders):
            raise ValueError("ders: duplicate der_id in the fleet")
        self.filters = {d.der_id: filt_factory(d) for d in self.ders} if filt_factory else {}
        self.activity = activity
        self.stats = GatewayStats(per_der={d.der_id: DerCounters() for d in self.ders})
        self.ioloop = IOLoop()
        queue_nodes = self.topo.pool_nodes("queue")
        self.table = initial_table(n.name for n in queue_nodes if n.initial_state == "active")
        self.assignment = self.table.assign(self.by_id)
        self.publishers: dict[str, ChannelPublisher] = {}
        self._retiring: set[str] = set()
        # Counters of publishers already closed (a channel taken out of the routing table):
        # the summary still says what each channel carried over the whole run.
        self._retired: dict[str, dict[str, int]] = {}
        self._heap: list[tuple[float, int]] = []
        self._t0 = 0.0
        self._stopping = False
        self._stop_deadline = 0.0
        self._control: SelectConnection | None = None
        self._control_backoff = 0.5
        self._control_attempt = 0       # the current control connection attempt
        self._control_heard = False     # a routing table arrived on it
        self._last_active: set[str] | None = None

    # -- set-up ------------------------------------------------------------------------------
    def _publisher(self, channel: str) -> ChannelPublisher:
        pub = self.publishers.get(channel)
        if pub is None:
            params = amqp_params(self.topo, channel, self.cfg.user, heartbeat=30)
            pub = ChannelPublisher(self.ioloop, channel, params, TELEMETRY_EXCHANGE,
                                   max_in_flight=self.cfg.max_in_flight,
                                   max_buffer=self.cfg.max_buffer,
                                   on_confirmed=self._on_confirmed, on_dropped=self._on_dropped)
            self.publishers[channel] = pub
            pub.start()
        self._retiring.discard(channel)
        return pub

    def _on_confirmed(self, msgs: list[Outgoing]) -> None:
        per = self.stats.per_der
        for m in msgs:
            per[m.der_id].confirmed += 1

    def _on_dropped(self, msg: Outgoing) -> None:
        self.stats.per_der[msg.der_id].dropped += 1

    # -- control plane: routing tables and DER commands ---------------------------------------
    def _connect_control(self) -> None:
        if self._stopping:
            return
        self._control_attempt += 1
        attempt = self._control_attempt
        self._control_heard = False
        params = amqp_params(self.topo, home_channel(self.topo), self.cfg.user, heartbeat=30)
        self._control = SelectConnection(
            parameters=params, custom_ioloop=self.ioloop,
            on_open_callback=lambda c: c.channel(
                on_open_callback=lambda ch: self._on_control_channel(ch, attempt)),
            on_open_error_callback=lambda _c, e: self._control_lost(e, attempt),
            on_close_callback=lambda _c, e: self._control_lost(e, attempt))
        self.ioloop.call_later(CONTROL_DEAF_S, lambda: self._control_watchdog(attempt))

    def _control_watchdog(self, attempt: int) -> None:
        """A subscription at ``last`` of the (never empty) routing stream delivers the newest
        table at once. Seen after a broker restart: an attempt that neither opened nor failed,
        or a consumer that got nothing, and no later table ever arrived. Nothing heard within
        CONTROL_DEAF_S of an attempt: drop it and connect again."""
        if self._stopping or attempt != self._control_attempt or self._control_heard:
            return
        event(log, "control_deaf", logging.WARNING, after_s=CONTROL_DEAF_S)
        stale, self._control = self._control, None
        with contextlib.suppress(Exception):
            if stale is not None and stale.is_open:
                stale.close()
        self._connect_control()

    def _control_lost(self, err: BaseException, attempt: int | None = None) -> None:
        if self._stopping or (attempt is not None and attempt != self._control_attempt):
            return   # a superseded attempt: the watchdog already started a new one
        event(log, "control_disconnected", logging.WARNING, error=repr(err),
              retry_s=self._control_backoff)
        self.ioloop.call_later(self._control_backoff, self._connect_control)
        self._control_backoff = min(self._control_backoff * 2, 5.0)

    def _on_control_channel(self, ch: object, attempt: int) -> None:
        self._control_backoff = 0.5
        # Right after a broker restart AMQP answers before the stream's leader is back, so the
        # consume fails and closes only the channel; and RabbitMQ cancels a stream consumer when
        # the stream's member restarts, which pika takes silently. Either way channel and
        # connection would stay open and deaf: no later routing table would ever arrive.
        ch.add_on_close_callback(  # type: ignore[attr-defined]
            lambda _ch, err: self._drop_control(attempt, "control_channel_closed",
                                                error=repr(err)))
        ch.add_on_cancel_callback(  # type: ignore[attr-defined]
            lambda frame: self._drop_control(
                attempt, "control_consumer_cancelled",
                consumer=getattr(getattr(frame, "method", None), "consumer_tag", None)))
        ch.basic_qos(prefetch_count=200)  # type: ignore[attr-defined]
        # The end of the routing stream holds the newest table; commands only from now on.
        ch.basic_consume(ROUTING_STREAM, self._on_table_message,  # type: ignore[attr-defined]
                         arguments={"x-stream-offset": "last"})
        ch.basic_consume(COMMANDS_STREAM, self._on_command_message,  # type: ignore[attr-defined]
                         arguments={"x-stream-offset": "next"})

    def _drop_control(self, attempt: int, why: str, **fields: object) -> None:
        """Close the current control connection (its close callback reconnects with back-off).
        A superseded attempt's channel says nothing about the current connection."""
        if self._stopping or attempt != self._control_attempt:
            return
        event(log, why, logging.WARNING, **fields)
        conn = self._control
        if conn is not None and conn.is_open:
            conn.close()

    def _on_table_message(self, ch: object, method: object, _props: object, body: bytes) -> None:
        self._control_heard = True
        ch.basic_ack(method.delivery_tag)  # type: ignore[attr-defined]
        try:
            table = RoutingTable.from_json(body)
        except RoutingError as exc:
            event(log, "routing_table_rejected", logging.WARNING, error=str(exc))
            return
        if table.version > self.table.version:
            self.apply_table(table)

    def _on_command_message(self, ch: object, method: object, _props: object, body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)  # type: ignore[attr-defined]
        try:
            cmd = json.loads(body)
            der = self.by_id.get(str(cmd["der_id"]))
            setpoint = cmd.get("setpoint_w")
        except (ValueError, KeyError, TypeError) as exc:
            event(log, "command_rejected", logging.WARNING, error=repr(exc))
            return
        if der is None:
            return  # another gateway's DER
        applied = der.command(None if setpoint is None else float(setpoint))
        self.stats.commands += 1
        event(log, "command_applied", der_id=der.der_id, setpoint_w=setpoint, applied_w=applied)

    def apply_table(self, table: RoutingTable) -> None:
        old = self.assignment
        self.table = table
        self.assignment = table.assign(self.by_id)
        moved = sum(1 for d, ch in self.assignment.items() if old.get(d) != ch)
        for ch in table.channels:
            self._publisher(ch)
        rerouted = 0
        for name, pub in list(self.publishers.items()):
            taken = pub.take_buffered(lambda m, name=name: self.assignment[m.der_id] == name)
            for m in taken:
                self.publishers[self.assignment[m.der_id]].accept_rerouted(m)
            rerouted += len(taken)
            if name not in table.channels:
                self._retiring.add(name)
        self.stats.tables_applied += 1
        lag_ms = int(time.time() * 1000) - table.issued_ms if table.issued_ms else None
        event(log, "routing_applied", version=table.version, channels=list(table.channels),
              moved_ders=moved, rerouted_buffered=rerouted, apply_lag_ms=lag_ms,
              gateway=self.cfg.gateway_id)

    # -- the scheduler -------------------------------------------------------------------------
    def _schedule_all(self, now_ms: int) -> None:
        self._heap = [(float(now_ms + d.phase_ms), i) for i, d in enumerate(self.ders)]
        heapq.heapify(self._heap)

    def _active(self, elapsed: float) -> set[str] | None:
        if self.activity is None:
            return None
        active = self.activity(elapsed)
        if active != self._last_active:
            event(log, "scenario_phase", elapsed_s=round(elapsed, 1),
                  active=None if active is None else len(active))
            self._last_active = active
        return active

    def _tick(self) -> None:
        if self._stopping:
            return
        now = time.time()
        elapsed = now - self._t0
        if self.cfg.duration_s is not None and elapsed >= self.cfg.duration_s:
            self.stop()
            return
        now_ms = int(now * 1000)
        active = self._active(elapsed)
        heap, ders, st, per = self._heap, self.ders, self.stats, self.stats.per_der
        # Offered more than it can read, a tick that took every due read would never end (each
        # late DER is due again at once) and neither the IO loop nor the duration check would
        # run: work at most tick_s, then let the loop send and take confirms, and go on at once.
        budget, n, behind = now + self.cfg.tick_s, 0, False
        while heap and heap[0][0] <= now_ms:
            n += 1
            if not n & 255 and time.time() > budget:
                behind = True
                break
            due, i = heapq.heappop(heap)
            der = ders[i]
            heapq.heappush(heap, (due + der.interval_s * 1000.0, i))
            lag = now_ms - due
            if lag > st.max_schedule_lag_ms:
                st.max_schedule_lag_ms = lag
            if active is not None and der.der_id not in active:
                st.inactive += 1
                continue
            reading = der.read(now_ms, self.filters.get(der.der_id))  # type: ignore[arg-type]
            if reading is None:
                st.silent += 1
                continue
            st.generated += 1
            c = per[der.der_id]
            c.generated += 1
            c.last_seq = reading["seq"]
            msg = Outgoing(der.der_id, reading["seq"], f"{der.der_type}.{reading['site_id']}",
                           schema.encode(reading))
            self.publishers[self.assignment[der.der_id]].offer(msg)
        for pub in self.publishers.values():
            pub.pump()
        self._retire_idle()
        self.ioloop.call_later(0 if behind else self.cfg.tick_s, self._tick)

    def _retire_idle(self) -> None:
        for name in list(self._retiring):
            pub = self.publishers[name]
            if pub.idle:
                pub.close()
                self._retired[name] = _sum_counts(self._retired.get(name, {}), pub.stats.as_dict())
                del self.publishers[name]
                self._retiring.discard(name)
                event(log, "channel_retired", channel=name, gateway=self.cfg.gateway_id)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop generating; wait (up to drain_timeout_s) for every buffered reading to confirm."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.cfg.drain_timeout_s
        event(log, "draining", gateway=self.cfg.gateway_id,
              pending=sum(len(p.buffer) + p.in_flight for p in self.publishers.values()))
        self._drain()

    def _drain(self) -> None:
        for pub in self.publishers.values():
            pub.pump()
        done = all(p.idle for p in self.publishers.values())
        if done or time.monotonic() > self._stop_deadline:
            for pub in self.publishers.values():
                pub.close()
            if self._control is not None and self._control.is_open:
                self._control.close()
            self.ioloop.call_later(0.2, self.ioloop.stop)
            return
        self.ioloop.call_later(0.05, self._drain)

    def _serve_metrics(self) -> None:
        if self.cfg.metrics_port is None:
            return
        registry = CollectorRegistry()
        registry.register(_GatewayCollector(self))
        ProcessCollector(registry=registry)
        start_http_server(self.cfg.metrics_port, addr=self.topo.bind_host, registry=registry)

    def run(self) -> dict[str, object]:
        self._serve_metrics()
        for ch in self.table.channels:
            self._publisher(ch)
        self._connect_control()
        self._t0 = time.time()
        self._schedule_all(int(self._t0 * 1000))

        def on_signal(_sig: int, _frame: object) -> None:
            self.ioloop.add_callback_threadsafe(self.stop)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.ioloop.call_later(0, self._tick)
            self.ioloop.start()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return self.summary()

    def summary(self) -> dict[str, object]:
        pubs = {name: _sum_counts(self._retired.get(name, {}), p.stats.as_dict())
                | {"buffered": len(p.buffer), "in_flight": p.in_flight}
                for name, p in self.publishers.items()}
        for name, counts in self._retired.items():
            if name not in pubs:
                pubs[name] = counts | {"buffered": 0, "in_flight": 0, "retired": True}
        per = self.stats.per_der
        unconfirmed = sum(c.generated - c.confirmed - c.dropped for c in per.values())
        return {
            "gateway": self.cfg.gateway_id,
            "ders": len(self.ders),
            "generated": self.stats.generated,
            "confirmed": sum(c.confirmed for c in per.values()),
            "confirmed_bytes": sum(int(c["confirmed_bytes"]) for c in pubs.values()),
            "dropped_overflow": sum(c.dropped for c in per.values()),
            "unconfirmed_at_exit": unconfirmed,
            "silent": self.stats.silent,
            "inactive": self.stats.inactive,
            "routing_version": self.table.version,
            "tables_applied": self.stats.tables_applied,
            "commands": self.stats.commands,
            "max_schedule_lag_ms": self.stats.max_schedule_lag_ms,
            "publishers": pubs,
            "per_der": {d: c.__dict__ for d, c in per.items()},
        }


class _GatewayCollector:
    """Reads the live counters at scrape time, so publishing costs nothing extra."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterable[object]:
        gw, gid = self.gw, str(self.gw.cfg.gateway_id)
        gen = CounterMetricFamily("vpp_gateway_readings_generated", "Readings generated",
                                  labels=["gateway"])
        gen.add_metric([gid], gw.stats.generated)
        yield gen
        silent = CounterMetricFamily("vpp_gateway_readings_silent",
                                     "Due reads that produced nothing (dropout fault or filter)",
                                     labels=["gateway"])
        silent.add_metric([gid], gw.stats.silent)
        yield silent
        per_channel = {
            "published": "Readings published", "confirmed": "Readings confirmed by the broker",
            "confirmed_bytes": "Body bytes of the readings confirmed by the broker",
            "resent": "Readings re-sent after nack, return or reconnect",
            "returned": "Readings the broker returned (stream not up yet) and that were re-sent",
            "dropped_overflow": "Readings dropped because the buffer was full",
            "reconnects": "Reconnect attempts",
        }
        for key, doc in per_channel.items():
            fam = CounterMetricFamily(f"vpp_gateway_{key}", doc, labels=["gateway", "channel"])
            for name, pub in list(gw.publishers.items()):
                fam.add_metric([gid, name], getattr(pub.stats, key))
            yield fam
        buffered = GaugeMetricFamily("vpp_gateway_buffered", "Readings waiting to be published",
                                     labels=["gateway", "channel"])
        in_flight = GaugeMetricFamily("vpp_gateway_in_flight", "Readings awaiting a confirm",
                                      labels=["gateway", "channel"])
        for name, pub in list(gw.publishers.items()):
            buffered.add_metric([gid, name], len(pub.buffer))
            in_flight.add_metric([gid, name], pub.in_flight)
        yield buffered
        yield in_flight
        version = GaugeMetricFamily("vpp_gateway_routing_version", "Routing table version applied",
                                    labels=["gateway"])
        version.add_metric([gid], gw.table.version)
        yield version
        lag = GaugeMetricFamily("vpp_gateway_max_schedule_lag_seconds",
                                "Worst lateness of a due read so far", labels=["gateway"])
        lag.add_metric([gid], gw.stats.max_schedule_lag_ms / 1000)
        yield lag


def split(ders: Sequence[DER], parts: int) -> list[list[DER]]:
    return [list(ders[i::parts]) for i in range(parts)]

