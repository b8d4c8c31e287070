"""Routing table: consistent hashing moves only the share of the channel that changed."""

from __future__ import annotations

import pytest

from ingest.routing import RoutingError, RoutingTable, initial_table, latest, moved, rendezvous

DERS = [f"pv-{i:06d}" for i in range(20_000)]


def test_waking_a_channel_moves_about_one_over_n():
    for n in (1, 2, 3, 5):
        old = RoutingTable(1, tuple(f"channel-{i}" for i in range(n)), 0)
        new = old.successor([*old.channels, f"channel-{n}"], now_ms=1)
        share = len(moved(old, new, DERS)) / len(DERS)
        assert abs(share - 1 / (n + 1)) < 0.02, (n, share)
        # ...and every moved DER moved *to* the new channel, none between old ones.
        assert all(new.channel_for(d) == f"channel-{n}" for d in moved(old, new, DERS))


def test_sleeping_a_channel_moves_only_its_own_ders():
    old = RoutingTable(3, ("channel-0", "channel-1", "channel-2"), 0)
    new = old.successor(["channel-0", "channel-2"], now_ms=1)
    assert moved(old, new, DERS) == {d for d in DERS if old.channel_for(d) == "channel-1"}


def test_assignment_is_deterministic_and_balanced():
    table = RoutingTable(1, ("channel-0", "channel-1"), 0)
    a = table.assign(DERS)
    assert a == RoutingTable(9, ("channel-1", "channel-0"), 5).assign(DERS)  # order-free
    share0 = sum(1 for ch in a.values() if ch == "channel-0") / len(DERS)
    assert 0.47 < share0 < 0.53


def test_json_round_trip_and_rejects():
    t = RoutingTable(4, ("channel-0",), 123, "wake")
    assert RoutingTable.from_json(t.to_json()) == t
    for body, fragment in [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"version": "4", "channels": ["c"], "issued_ms": 1}', "version"),
        (b'{"version": 4, "channels": [], "issued_ms": 1}', "channels"),
        (b'{"version": 4, "channels": ["a", "a"], "issued_ms": 1}', "duplicates"),
        (b'{"version": 4, "channels": [3], "issued_ms": 1}', "channels"),
        (b'{"version": -1, "channels": ["a"], "issued_ms": 1}', "version"),
    ]:
        with pytest.raises(RoutingError, match=fragment):
            RoutingTable.from_json(body)


def test_latest_and_initial():
    tables = [RoutingTable(v, ("channel-0",), v) for v in (3, 7, 5)]
    assert latest(tables).version == 7
    assert latest([]) is None
    assert initial_table(["channel-1", "channel-0"]).channels == ("channel-0", "channel-1")
    with pytest.raises(RoutingError):
        rendezvous("pv-1", [])


def test_successor_stamps_when_each_channel_joined_and_keeps_it_while_it_stays():
    t1 = RoutingTable(1, ("channel-0",), 1_000)
    t2 = t1.successor(["channel-0", "channel-1"], now_ms=2_000)
    assert dict(t2.added_ms) == {"channel-1": 2_000}           # the first table's has none
    t3 = t2.successor(["channel-0", "channel-1"], now_ms=3_000)
    assert dict(t3.added_ms) == {"channel-1": 2_000}           # kept, not re-stamped
    t4 = t3.successor(["channel-0"], now_ms=4_000).successor(["channel-0", "channel-1"],
                                                               now_ms=5_000)
    assert dict(t4.added_ms) == {"channel-1": 5_000}           # slept and woken again
    assert RoutingTable.from_json(t4.to_json()) == t4
    assert b"added_ms" not in t1.to_json()                     # old readers see the old shape
    with pytest.raises(RoutingError, match=r"added_ms\.channel-2"):
        RoutingTable(5, ("channel-0",), 5, added_ms={"channel-2": 1})
