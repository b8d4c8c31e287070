"""The publisher's bookkeeping (pure: no broker): overflow is counted, confirms release exactly
what they cover, nacks and lost connections put messages back in order."""

from __future__ import annotations

from types import SimpleNamespace

import pika.spec
from pika.adapters.select_connection import IOLoop

from ingest.publisher import ChannelPublisher, Outgoing


def _pub(**kw) -> ChannelPublisher:
    return ChannelPublisher(IOLoop(), "channel-0", pika.ConnectionParameters(), "x", **kw)


def _msg(i: int) -> Outgoing:
    return Outgoing(f"der-{i % 3}", i, "k", b"{}")


def _frame(method) -> SimpleNamespace:
    return SimpleNamespace(method=method)


def test_overflow_drops_oldest_and_counts():
    dropped = []
    p = _pub(max_buffer=5, on_dropped=dropped.append)
    for i in range(8):
        p.offer(_msg(i))
    assert [m.seq for m in p.buffer] == [3, 4, 5, 6, 7]
    assert p.stats.dropped_overflow == 3 and [m.seq for m in dropped] == [0, 1, 2]


def test_confirms_multiple_and_single_and_nack_requeue():
    confirmed = []
    p = _pub(on_confirmed=confirmed.extend)
    p._s.pending = {tag: _msg(tag) for tag in range(1, 7)}
    p._on_confirm(_frame(pika.spec.Basic.Ack(delivery_tag=3, multiple=True)))
    assert [m.seq for m in confirmed] == [1, 2, 3]
    p._on_confirm(_frame(pika.spec.Basic.Ack(delivery_tag=5, multiple=False)))
    assert [m.seq for m in confirmed] == [1, 2, 3, 5]
    p._on_confirm(_frame(pika.spec.Basic.Nack(delivery_tag=6, multiple=True)))
    assert [m.seq for m in p.buffer] == [4, 6]  # back to the front, in order
    assert p.stats.nacked == 2 and p.stats.confirmed == 4 and p.in_flight == 0


def test_connection_loss_requeues_unconfirmed_before_newer_messages():
    p = _pub()
    p._s.pending = {1: _msg(10), 2: _msg(11)}
    p.offer(_msg(12))
    p._closing = True  # no reconnect timer in a unit test
    p._on_closed(None, RuntimeError("lost"))
    assert [m.seq for m in p.buffer] == [10, 11, 12]
    assert p.stats.resent == 2 and p._s.next_tag == 1


def test_take_buffered_for_rerouting():
    p = _pub()
    for i in range(6):
        p.offer(_msg(i))
    taken = p.take_buffered(lambda m: m.der_id != "der-1")
    assert [m.seq for m in taken] == [1, 4]
    assert [m.seq for m in p.buffer] == [0, 2, 3, 5]
    other = _pub()
    for m in taken:
        other.accept_rerouted(m)
    assert other.stats.rerouted_in == 2 and other.stats.offered == 0


def _body_msg(i: int) -> Outgoing:
    return Outgoing("der-0", i, "k", f'{{"seq":{i}}}'.encode())


def test_returned_message_is_not_confirmed_but_resent_after_a_pause():
    # After a broker restart the stream's process may still be starting: a mandatory publish is
    # returned, then acked. That ack must not count as stored.
    confirmed = []
    p = _pub(on_confirmed=confirmed.extend)
    p._s.pending = {tag: _body_msg(tag) for tag in range(1, 5)}
    p._on_return(None, SimpleNamespace(reply_code=312, reply_text="NO_ROUTE"), None,
                 _body_msg(2).body)
    p._on_return(None, SimpleNamespace(reply_code=312, reply_text="NO_ROUTE"), None,
                 _body_msg(3).body)
    p._on_confirm(_frame(pika.spec.Basic.Ack(delivery_tag=3, multiple=True)))
    assert [m.seq for m in confirmed] == [1]
    assert [m.seq for m in p.buffer] == [2, 3]
    assert p.stats.returned == 2 and p.stats.confirmed == 1 and not p._s.returned
    assert p._held()  # publishing pauses before the re-send
    p._on_confirm(_frame(pika.spec.Basic.Ack(delivery_tag=4, multiple=False)))
    assert [m.seq for m in confirmed] == [1, 4]
    p.close()


def test_return_hold_backs_off_and_resets_on_a_clean_ack():
    p = _pub()
    hold0 = p._hold_s
    for tag in (1, 2):
        p._s.pending = {tag: _body_msg(tag)}
        p._on_return(None, SimpleNamespace(), None, _body_msg(tag).body)
        p._on_confirm(_frame(pika.spec.Basic.Ack(delivery_tag=tag, multiple=False)))
    assert p._hold_s == hold0 * 4
    p._s.pending = {3: _body_msg(3)}
    p._on_confirm(_frame(pika.spec.Basic.Ack(delivery_tag=3, multiple=False)))
    assert p._hold_s == hold0
    p.close()
