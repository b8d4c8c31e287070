"""The gateway's bookkeeping without a broker: confirmed body bytes are counted per channel and
summed over gateways, and an overloaded scheduler tick ends on time (so a fleet offered far more
than it can carry still stops at --duration)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pika
import pika.spec
from pika.adapters.select_connection import IOLoop

from infra.topology import load_topology
from ingest.publisher import ChannelPublisher, Outgoing
from sensors_sim.gateway import Gateway, GatewayConfig
from sensors_sim.models import make_fleet
from sensors_sim.runner import combine


class _Loop:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def call_later(self, delay: float, _fn) -> None:
        self.delays.append(delay)


class _Pub:
    def __init__(self) -> None:
        self.offered: list[Outgoing] = []

    def offer(self, msg: Outgoing) -> None:
        self.offered.append(msg)

    def pump(self) -> None:
        pass


def _gateway(n: int, interval_s: float, tick_s: float = 0.02) -> tuple[Gateway, _Loop]:
    gw = Gateway(load_topology(), make_fleet(n, seed=3, interval_s=interval_s),
                 GatewayConfig(tick_s=tick_s))
    loop = _Loop()
    gw.ioloop = loop  # type: ignore[assignment]
    gw.publishers = {ch: _Pub() for ch in gw.table.channels}  # type: ignore[misc]
    return gw, loop


def _ack(tag: int, multiple: bool) -> SimpleNamespace:
    return SimpleNamespace(method=pika.spec.Basic.Ack(delivery_tag=tag, multiple=multiple))


def test_publisher_counts_confirmed_body_bytes_only():
    p = ChannelPublisher(IOLoop(), "channel-0", pika.ConnectionParameters(), "x")
    p._s.pending = {1: Outgoing("a", 0, "k", b"12345"), 2: Outgoing("a", 1, "k", b"123"),
                    3: Outgoing("a", 2, "k", b"1234567")}
    p._on_confirm(_ack(2, True))
    assert p.stats.confirmed == 2 and p.stats.confirmed_bytes == 8
    p._on_confirm(SimpleNamespace(method=pika.spec.Basic.Nack(delivery_tag=3, multiple=False)))
    assert p.stats.confirmed_bytes == 8  # a nack re-sends, it confirms nothing
    assert p.stats.as_dict()["confirmed_bytes"] == 8


def test_summary_reports_confirmed_bytes_and_combine_sums_them():
    gw = Gateway(load_topology(), make_fleet(4, seed=1))
    pub = ChannelPublisher(IOLoop(), "channel-0", pika.ConnectionParameters(), "x")
    pub.stats.confirmed_bytes = 1000
    gw.publishers = {"channel-0": pub}
    gw._retired = {"channel-1": {"confirmed": 2, "confirmed_bytes": 500}}
    s = gw.summary()
    assert s["confirmed_bytes"] == 1500
    assert s["publishers"]["channel-0"]["confirmed_bytes"] == 1000  # type: ignore[index]
    other = dict(s, gateway=1, confirmed_bytes=250)
    assert combine([s, other])["confirmed_bytes"] == 1750


def test_overloaded_tick_stops_after_its_budget_and_continues_at_once():
    # 300 DERs a reading every 1 ms, the schedule a minute behind: 18 M reads are due.
    gw, loop = _gateway(300, 0.001)
    gw._t0 = time.time()
    gw._schedule_all(int(gw._t0 * 1000) - 60_000)
    t0 = time.perf_counter()
    gw._tick()
    took = time.perf_counter() - t0
    assert took < 1.0, f"tick took {took:.2f} s"
    assert loop.delays == [0]                   # behind: the next tick right after the IO
    generated = sum(len(p.offered) for p in gw.publishers.values())  # type: ignore[attr-defined]
    assert 0 < generated == gw.stats.generated < 18_000_000
    assert gw.stats.max_schedule_lag_ms >= 59_000


def test_a_tick_within_capacity_reads_everything_due_and_waits_a_tick():
    gw, loop = _gateway(50, 10.0, tick_s=0.05)
    gw._t0 = time.time()
    gw._schedule_all(int(gw._t0 * 1000) - 10_000)   # every DER due once
    gw._tick()
    assert gw.stats.generated == 50 and loop.delays == [0.05]
