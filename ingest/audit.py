"""Count what is really in the telemetry streams: per DER, which sequence numbers, duplicates,
gaps. The ground truth that tests compare a gateway's confirmed counts against."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pika

from ingest.streams import read_stream, stream_end
from ingest.topology import TELEMETRY_STREAM


@dataclass
class StreamAudit:
    end_offset: int = 0
    messages: int = 0
    undecodable: int = 0
    per_der: dict[str, list[int]] = field(default_factory=dict)  # der_id -> seqs in stream order

    @property
    def duplicates(self) -> int:
        return sum(len(s) - len(set(s)) for s in self.per_der.values())

    @property
    def gaps(self) -> int:
        return sum(missing_seqs(s) for s in self.per_der.values())

    def as_dict(self) -> dict[str, object]:
        return {"end_offset": self.end_offset, "messages": self.messages, "ders": len(self.per_der),
                "duplicates": self.duplicates, "gaps": self.gaps, "undecodable": self.undecodable}


def missing_seqs(seqs: Iterable[int]) -> int:
    """How many of 0..max(seq) are absent (a DER's sequence starts at 0)."""
    distinct = set(seqs)
    return (max(distinct) + 1 - len(distinct)) if distinct else 0


def audit_stream(params: pika.ConnectionParameters, stream: str = TELEMETRY_STREAM,
                 start: int = 0) -> StreamAudit:
    """Every message from offset ``start`` to the current end of ``stream``."""
    end = stream_end(params, stream)
    audit = StreamAudit(end_offset=end)
    if end <= start:
        return audit
    for msg in read_stream(params, stream, start, end=end):
        audit.messages += 1
        try:
            body = json.loads(msg.body)
            der_id, seq = str(body["der_id"]), int(body["seq"])
        except (ValueError, KeyError, TypeError):
            audit.undecodable += 1
            continue
        audit.per_der.setdefault(der_id, []).append(seq)
    return audit


def audit_streams(params_by_channel: Mapping[str, pika.ConnectionParameters],
                  start: Mapping[str, int] | None = None) -> dict[str, StreamAudit]:
    start = start or {}
    return {ch: audit_stream(p, start=start.get(ch, 0)) for ch, p in params_by_channel.items()}


def merged_seqs(audits: Iterable[StreamAudit]) -> dict[str, set[int]]:
    """Distinct sequence numbers per DER across every channel's stream."""
    out: dict[str, set[int]] = {}
    for a in audits:
        for der, seqs in a.per_der.items():
            out.setdefault(der, set()).update(seqs)
    return out
