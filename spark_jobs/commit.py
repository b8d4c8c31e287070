"""Exactly-once parquet tables from ``foreachBatch`` (which by itself is at-least-once).

A micro-batch re-runs with the same id and the same offsets after a driver crash. Each batch is
written to ``<table>/_staging/<id>`` (overwrite: a re-run replaces it), its files are renamed
into the table's partitions with the batch id in their name, and ``<table>/_commits/<id>`` is
created last. A batch whose marker exists is skipped; a batch that crashed between the renames
and the marker first deletes its own half-published files. Readers of the table never see
``_staging``/``_commits`` (Spark ignores paths starting with ``_``).
"""

from __future__ import annotations

from collections.abc import Sequence


def _fs(spark, path: str):
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), jvm.org.apache.hadoop.fs.Path


def ensure_dirs(spark, *paths: str) -> None:
    """Create tables' directories (a file-stream query cannot start on a missing path)."""
    for path in paths:
        fs, Path = _fs(spark, path)
        fs.mkdirs(Path(path))


def has_data(spark, table: str, partition_depth: int) -> bool:
    """Whether any batch has published a data file into ``table`` yet."""
    fs, Path = _fs(spark, table)
    depth = "/*" * partition_depth
    return bool(fs.globStatus(Path(f"{table}{depth}/*.parquet")))


def batch_prefix(batch_id: int) -> str:
    return f"b{batch_id:010d}-"


def is_committed(spark, table: str, batch_id: int) -> bool:
    fs, Path = _fs(spark, table)
    return bool(fs.exists(Path(f"{table}/_commits/{batch_id}")))


def commit_batch(spark, df, table: str, batch_id: int, partition_by: Sequence[str] = ()) -> int:
    """Write ``df`` into ``table`` once for ``batch_id``. Returns the number of files published
    (0 when the batch was already committed or empty)."""
    fs, Path = _fs(spark, table)
    marker = Path(f"{table}/_commits/{batch_id}")
    if fs.exists(marker):
        return 0
    prefix = batch_prefix(batch_id)
    depth = "/*" * len(partition_by)
    for stale in fs.globStatus(Path(f"{table}{depth}/{prefix}*")) or []:
        fs.delete(stale.getPath(), False)  # half-published by a crashed attempt
    stage = f"{table}/_staging/{batch_id}"
    writer = df.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(stage)
    published = 0
    files = fs.listFiles(Path(stage), True)
    stage_uri = fs.makeQualified(Path(stage)).toString()
    table_uri = fs.makeQualified(Path(table)).toString()
    while files.hasNext():
        status = files.next()
        src = status.getPath()
        name = src.getName()
        if not name.endswith(".parquet"):
            continue  # _SUCCESS, .crc
        rel_dir = src.getParent().toString()[len(stage_uri):].lstrip("/")
        dest_dir = Path(f"{table_uri}/{rel_dir}" if rel_dir else table_uri)
        fs.mkdirs(dest_dir)
        fs.rename(src, Path(dest_dir, prefix + name))
        published += 1
    fs.mkdirs(Path(f"{table}/_commits"))
    fs.create(marker, True).close()
    fs.delete(Path(stage), True)
    return published
