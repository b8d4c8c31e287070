"""Stream readers that must not skip data: a broker-sent basic.cancel ends pika's blocking
``consume`` like the end of the data, and a channel that joins the Spark source late must not be
read from an offset retention already removed.

RabbitMQ sends one to every consumer of a stream whose member restarts. These tests replace the
one-subscription function with a scripted one (the broker side is proven by the broker-restart
integration tests) and check the resubscribe logic: every offset exactly once, nothing skipped.
"""

from __future__ import annotations

import itertools
import json

import pytest

from ingest import streams
from spark_jobs import rabbitmq_source as src


def _range(start: int, end: int) -> src.StreamRange:
    return src.StreamRange("channel-0", src.ChannelAddress("127.0.0.1", 5672, "/"), "u", "p",
                           "vpp.telemetry.channel-0", start, end)


def test_spark_range_read_resumes_after_a_cancel_at_the_next_offset(monkeypatch, capsys):
    starts: list[int] = []

    def subscribe(p, start, stall_s):
        starts.append(start)
        stop = p.end if len(starts) > 2 else start + 3   # two cancels, then the rest
        for off in range(start, stop):
            yield (p.channel, off, "k", b"x", None)

    monkeypatch.setattr(src, "_subscribe", subscribe)
    monkeypatch.setattr(src.time, "sleep", lambda s: None)
    rows = list(src.read_range(_range(10, 20)))
    assert [r[1] for r in rows] == list(range(10, 20))
    assert starts == [10, 13, 16]
    assert capsys.readouterr().err.count('"event":"consumer_cancelled"') == 2


def test_spark_range_read_gives_up_loudly_when_cancelled_every_time(monkeypatch):
    def subscribe(p, start, stall_s):
        yield from ()

    monkeypatch.setattr(src, "_subscribe", subscribe)
    monkeypatch.setattr(src.time, "sleep", lambda s: None)
    with pytest.raises(RuntimeError, match="cancelled 10 times at offset 5"):
        list(src.read_range(_range(5, 8)))
    assert list(src.read_range(_range(5, 5))) == []   # an empty range never subscribes


def test_stream_read_resubscribes_after_a_cancel_and_keeps_its_limit(monkeypatch):
    calls: list[tuple[object, int | None]] = []

    def read_once(params, stream, start, end, idle_s, prefetch, limit):
        calls.append((start, limit))
        first = 0 if start == "first" else int(start)
        for off in range(first, first + min(2, limit or 2)):
            yield streams.StreamMessage(off, "k", {}, b"x")
        if len(calls) == 1:
            raise streams.ConsumerCancelled(stream)

    monkeypatch.setattr(streams, "_read_once", read_once)
    monkeypatch.setattr(streams.time, "sleep", lambda s: None)
    got = [m.offset for m in streams.read_stream(None, "s", "first", limit=3)]
    # the cancel after offsets 0, 1 resumes at 2 with one message still to read
    assert calls == [("first", 3), (2, 1)]
    assert got == [0, 1, 2]


def _reader(routed, firsts, ends):
    r = src.RabbitStreamReader({"channels": json.dumps({
        c: {"host": "127.0.0.1", "port": 5672 + i, "vhost": "/"}
        for i, c in enumerate(("channel-0", "channel-1"))}), "user": "u", "password": "p"})
    r.routed_channels = lambda: routed

    def first(ch):
        if firsts[ch] is None:
            raise ConnectionError("not up yet")
        return firsts[ch]

    r._first = first
    r._end = lambda ch: ends[ch]
    return r


def test_a_newly_routed_channel_joins_at_its_first_retained_offset_with_no_rows():
    # channel-1 was woken: retention already removed its offsets below 500
    r = _reader(("channel-0", "channel-1"), {"channel-1": 500}, {"channel-0": 900,
                                                                "channel-1": 800})
    end = r.latestOffset({"channel-0": 100}, src.ReadAllAvailable())
    assert end == {"channel-0": 900, "channel-1": 500}
    parts = r.partitions({"channel-0": 100}, end)
    assert all(p.channel == "channel-0" for p in parts)          # nothing of channel-1 yet
    assert (parts[0].start, parts[-1].end) == (100, 900)
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    # next batch: it is in the offsets, read from 500 on (never from 0)
    assert r.latestOffset(end, src.ReadAllAvailable())["channel-1"] == 800


def test_a_routed_channel_that_does_not_answer_yet_is_left_for_a_later_batch():
    r = _reader(("channel-0", "channel-1"), {"channel-1": None}, {"channel-0": 900})
    assert r.latestOffset({"channel-0": 100}, src.ReadMaxRows(300)) == {"channel-0": 400}


def test_a_woken_channel_joins_where_the_routing_table_added_it_not_at_old_data(monkeypatch):
    calls = []

    def probe(addr, user, password, stream, at, **kw):
        calls.append(at)
        return (7_000, 7_040)          # the chunk that arrived at (or just before) ``at``

    r = src.RabbitStreamReader({"channels": json.dumps({
        "channel-0": {"host": "127.0.0.1", "port": 5672, "vhost": "/"},
        "channel-1": {"host": "127.0.0.1", "port": 5673, "vhost": "/"}}), "user": "u",
        "password": "p", "startingOffsets": json.dumps({"channel-0": 0})})
    r._added_ms = {"channel-1": 1_796_000_000_500}
    monkeypatch.setattr(src, "probe", probe)
    assert r._join_offset("channel-1") == 7_000     # not 0: offsets 0..6,999 are earlier runs
    (when,) = calls
    assert when.timestamp() == 1_796_000_000_500 / 1000 - 1   # a second of margin
    monkeypatch.setattr(src, "probe", lambda *a, **kw: None)   # nothing seen (yet)
    with pytest.raises(LookupError, match="nothing stored since"):
        r._join_offset("channel-1")                 # not joined at a guessed end
    r.routed_channels = lambda: ("channel-0", "channel-1")
    r._end = lambda ch: 900
    assert r.latestOffset({"channel-0": 100}, src.ReadAllAvailable()) == {"channel-0": 900}
    r.starting = "earliest"                                   # earliest means everything kept
    monkeypatch.setattr(src, "probe", lambda *a, **kw: calls.append(a[4]) or (12, 13))
    assert r._join_offset("channel-1") == 12 and calls[-1] == "first"
