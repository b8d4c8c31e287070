"""Versioned routing table: which active channel each DER publishes to.

The table is the single source of truth, kept on the home channel's ``vpp.control.routing``
stream; a reader takes the highest version it sees. DERs are mapped by rendezvous
(highest-random-weight) hashing, a consistent hash: adding a channel moves only the DERs that
now hash highest to it (about 1/N of them), removing one moves only its own DERs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class RoutingError(ValueError):
    pass


def _weight(channel: str, der_id: str) -> int:
    digest = hashlib.blake2b(f"{channel}\x00{der_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous(der_id: str, channels: Iterable[str]) -> str:
    best, best_w = "", -1
    for ch in channels:
        w = _weight(ch, der_id)
        if w > best_w:
            best, best_w = ch, w
    if best_w < 0:
        raise RoutingError("no active channel to route to")
    return best


@dataclass(frozen=True)
class RoutingTable:
    """``added_ms``: when each channel joined the routing (epoch ms; the issue time of the table
    that added it, carried over while it stays). Readings routed to a channel are never older
    than that, so a reader meeting the channel for the first time (the Spark source, after a
    wake) starts there instead of replaying what the channel's stream kept from earlier runs.
    Channels of the first table, and of tables written before this field, have no entry."""

    version: int
    channels: tuple[str, ...]
    issued_ms: int
    reason: str = ""
    added_ms: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version < 0:
            raise RoutingError(f"version: must be >= 0, got {self.version}")
        if not self.channels:
            raise RoutingError("channels: a routing table needs at least one channel")
        if len(set(self.channels)) != len(self.channels):
            raise RoutingError(f"channels: duplicates in {list(self.channels)}")
        for ch, ms in self.added_ms.items():
            if ch not in self.channels:
                raise RoutingError(f"added_ms.{ch}: not one of the table's channels")
            if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
                raise RoutingError(f"added_ms.{ch}: expected epoch ms >= 0, got {ms!r}")

    def channel_for(self, der_id: str) -> str:
        return rendezvous(der_id, self.channels)

    def assign(self, der_ids: Iterable[str]) -> dict[str, str]:
        return {d: self.channel_for(d) for d in der_ids}

    def successor(self, channels: Iterable[str], reason: str = "",
                  now_ms: int | None = None) -> RoutingTable:
        issued = int(time.time() * 1000) if now_ms is None else now_ms
        chosen = tuple(sorted(set(channels)))
        added = {ch: self.added_ms[ch] if ch in self.channels and ch in self.added_ms else issued
                 for ch in chosen if ch not in self.channels or ch in self.added_ms}
        return RoutingTable(self.version + 1, chosen, issued, reason, added)

    def to_json(self) -> bytes:
        doc: dict[str, object] = {"version": self.version, "channels": list(self.channels),
                                  "issued_ms": self.issued_ms, "reason": self.reason}
        if self.added_ms:
            doc["added_ms"] = dict(sorted(self.added_ms.items()))
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> RoutingTable:
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RoutingError(f"routing table is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise RoutingError("routing table must be a JSON object")
        for key, kind in (("version", int), ("channels", list), ("issued_ms", int)):
            if not isinstance(raw.get(key), kind) or isinstance(raw.get(key), bool):
                raise RoutingError(f"{key}: expected {kind.__name__}, got {raw.get(key)!r}")
        if not all(isinstance(c, str) for c in raw["channels"]):
            raise RoutingError("channels: every entry must be a channel name")
        added = raw.get("added_ms", {})
        if not isinstance(added, dict):
            raise RoutingError(f"added_ms: expected object, got {added!r}")
        return cls(raw["version"], tuple(raw["channels"]), raw["issued_ms"],
                   str(raw.get("reason", "")), added)


def moved(old: RoutingTable, new: RoutingTable, der_ids: Iterable[str]) -> set[str]:
    """DERs whose channel differs between two tables."""
    return {d for d in der_ids if old.channel_for(d) != new.channel_for(d)}


def initial_table(active_channels: Iterable[str]) -> RoutingTable:
    """Version 0: what a reader assumes before any table was published."""
    return RoutingTable(0, tuple(sorted(active_channels)), 0, "initial (topology)")


def latest(tables: Iterable[RoutingTable]) -> RoutingTable | None:
    best = None
    for t in tables:
        if best is None or t.version > best.version:
            best = t
    return best
