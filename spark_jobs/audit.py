"""Count what the job stored: rows of given DERs in the raw and quarantine tables, read over
WebHDFS with pyarrow (a second Spark application could not get cores while the job runs).
The ground truth of "sent == stored exactly once" for tests, the demo and the benches."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from hdfs import InsecureClient
from hdfs.util import HdfsError

from infra.topology import Topology


@dataclass(frozen=True)
class StoredCounts:
    raw_rows: int          # rows of the DERs in the raw table
    raw_distinct: int      # distinct (der_id, seq, ts_ms): == raw_rows means no duplicate
    quarantined: int       # quarantine rows whose payload names one of the DERs
    by_channel: Mapping[str, int] = field(default_factory=dict)   # raw rows per channel read

    def lost(self, confirmed: int) -> int:
        """Confirmed by the broker but in neither table."""
        return confirmed - self.raw_distinct - self.quarantined


def _parquet_files(client: InsecureClient, path: str) -> Iterator[str]:
    try:
        entries = client.list(path, status=True)
    except HdfsError:   # not created yet, or removed by a concurrent commit
        return
    for name, st in entries:
        if name.startswith(("_", ".")):
            continue    # staging directories of an uncommitted batch
        full = f"{path}/{name}"
        if st["type"] == "DIRECTORY":
            yield from _parquet_files(client, full)
        elif name.endswith(".parquet"):
            yield full


def batch_of(file_name: str) -> int | None:
    """The micro-batch id in a published file's name (``b0000000042-part-...``)."""
    head = file_name.split("-", 1)[0]
    return int(head[1:]) if head.startswith("b") and head[1:].isdigit() else None


def _read(client: InsecureClient, path: str, columns: list[str] | None):
    import pyarrow.parquet as pq

    with client.read(path) as fh:
        return pq.read_table(io.BytesIO(fh.read()), columns=columns)


def read_table(topo: Topology, table_path: str, columns: list[str] | None = None,
               batch_column: str | None = None):
    """A whole table as one pandas DataFrame, partition columns (``der_type=pv/...``) included
    as strings, the way Spark's ``read.parquet`` sees a table at rest. Used to check a table
    after the job stopped: while a batch is being published it may show half of it.
    ``batch_column``: add the micro-batch id that published each row (from the file name,
    :func:`spark_jobs.commit.batch_prefix`), to join rows with the job's commit log."""
    import pandas as pd

    client = InsecureClient(topo.webhdfs_url, user="root")
    frames = []
    for f in _parquet_files(client, table_path):
        df = _read(client, f, columns).to_pandas()
        if batch_column is not None:
            df[batch_column] = batch_of(f.rsplit("/", 1)[-1])
        for part in f[len(table_path):].strip("/").split("/")[:-1]:
            key, sep, value = part.partition("=")
            if sep:
                df[key] = value
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stored_counts(topo: Topology, root_path: str, ders: set[str], since_ms: int
                  ) -> StoredCounts:
    """``root_path``: the job's HDFS root as a path (``/vpp``), not a URL."""
    client = InsecureClient(topo.webhdfs_url, user="root")
    rows, keys, by_channel = 0, set(), Counter()
    for f in _parquet_files(client, f"{root_path}/raw"):
        try:
            t = _read(client, f, ["der_id", "seq", "ts_ms", "channel"])
        except HdfsError:
            continue
        for d, s, ts, ch in zip(t.column("der_id").to_pylist(), t.column("seq").to_pylist(),
                                t.column("ts_ms").to_pylist(), t.column("channel").to_pylist(),
                                strict=True):
            if d in ders and ts >= since_ms:
                rows += 1
                keys.add((d, s, ts))
                by_channel[ch] += 1
    quarantined = 0
    for f in _parquet_files(client, f"{root_path}/quarantine"):
        try:
            t = _read(client, f, ["payload", "received_at"])
        except HdfsError:
            continue
        for payload, received in zip(t.column("payload").to_pylist(),
                                     t.column("received_at").to_pylist(), strict=True):
            if received is None or received.timestamp() * 1000 < since_ms:
                continue
            try:
                der = json.loads(payload or "{}").get("der_id")
            except (ValueError, AttributeError):
                der = None
            if der in ders:
                quarantined += 1
    return StoredCounts(rows, len(keys), quarantined, dict(by_channel))
