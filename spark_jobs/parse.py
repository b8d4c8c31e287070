"""Parse and validate raw stream messages with the one telemetry definition (``ingest.schema``).

Runs inside ``mapInArrow`` on executors: every message becomes one row, valid or not. A valid row
carries the typed reading; an invalid one carries the reason, the offending field and the raw
payload, so it can be quarantined while the query keeps running. Spark's own ``from_json``
would turn a wrongly typed value into a silent NULL, so validation is the Python validator.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ingest import schema

_ARROW = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}

META_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("channel", pa.string()),
    ("offset", pa.int64()),
    ("valid", pa.bool_()),
    ("reason", pa.string()),
    ("reason_field", pa.string()),
    ("payload", pa.string()),        # raw message, kept only for quarantined rows
    # der_id:seq:ts_ms (a re-sent reading is the same bytes; a restarted DER counts seq from 0
    # again, with new event times), or a payload hash for an invalid message
    ("dedupe_key", pa.string()),
    ("event_time", pa.timestamp("us", tz="UTC")),
    ("date", pa.string()),           # UTC day of event_time, the table's partition
    ("parsed_ms", pa.int64()),
)
READING_FIELDS: tuple[tuple[str, pa.DataType], ...] = tuple(
    (f.name, _ARROW[f.kind]) for f in schema.FIELDS)
ARROW_SCHEMA = pa.schema([pa.field(n, t, nullable=True) for n, t in META_FIELDS + READING_FIELDS])
READING_NAMES = tuple(n for n, _ in READING_FIELDS)


# The raw table: where each valid reading came from, its event time and day, the reading.
RAW_COLUMNS = ("channel", "offset", "event_time", "date", *READING_NAMES)
_SPARK_KINDS = {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double",
                pa.bool_(): "boolean", pa.timestamp("us", tz="UTC"): "timestamp"}


def spark_ddl(columns: tuple[str, ...] | None = None) -> str:
    """The schema (or a subset of its columns, in that order) as a Spark DDL string."""
    by_name = {f.name: f for f in ARROW_SCHEMA}
    names = columns if columns is not None else tuple(by_name)
    return ", ".join(f"`{n}` {_SPARK_KINDS[by_name[n].type]}" for n in names)


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def parse_message(channel: str, offset: int, body: bytes, now_ms: int) -> dict[str, Any]:
    res = schema.validate(body)
    if res.reading is not None:
        r = res.reading
        row = {"channel": channel, "offset": offset, "valid": True, "reason": None,
               "reason_field": None, "payload": None, "dedupe_key": f"{r.der_id}:{r.seq}:{r.ts_ms}",
               "event_time": r.ts_ms * 1000, "date": _day(r.ts_ms), "parsed_ms": now_ms}
        row.update(r.to_dict())
        return row
    # A re-sent malformed message has the same bytes: the hash lets the dedupe drop it too.
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    return {"channel": channel, "offset": offset, "valid": False, "reason": res.reason,
            "reason_field": res.field, "payload": body.decode("utf-8", errors="replace"),
            "dedupe_key": f"invalid:{digest}", "event_time": now_ms * 1000,
            "date": _day(now_ms), "parsed_ms": now_ms}


def parse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for rb in batches:
        now_ms = int(time.time() * 1000)
        channels = rb.column("channel").to_pylist()
        offsets = rb.column("offset").to_pylist()
        bodies = rb.column("body").to_pylist()
        rows = [parse_message(c, o, b, now_ms) for c, o, b in zip(channels, offsets, bodies,
                                                                   strict=True)]
        yield pa.RecordBatch.from_pylist(rows, schema=ARROW_SCHEMA)
