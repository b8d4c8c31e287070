"""The VPP twin's streaming job (spark-submit it with ``make submit-stream``).

Three queries, one read of RabbitMQ:

``ingest``      RabbitMQ streams -> parse/validate -> dedupe (der_id, seq, ts_ms) in a watermark
                -> raw parquet (by DER type and date) + quarantine parquet, exactly once
``twin``        raw table (file stream) -> per-DER state (Spark state by DER bucket, staleness)
                -> HDFS state log + InfluxDB ``der_state`` + health events on vpp.control
``aggregates``  raw table (file stream) -> per site and DER type windowed aggregates
                -> HDFS + InfluxDB ``vpp_site`` / ``vpp_total``

Checkpoints live on HDFS; a driver killed with SIGKILL resumes from them with nothing lost and
nothing duplicated. Progress of every trigger goes to InfluxDB ``spark_stream``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass

from infra import logs
from infra.logs import event
from infra.topology import Topology, load_topology
from monitor import influx
from spark_jobs import aggregates, parse, twin
from spark_jobs.commit import commit_batch, ensure_dirs, has_data
from spark_jobs.progress import ProgressExporter
from spark_jobs.pyfiles import project_zip
from spark_jobs.rabbitmq_source import RabbitStreamSource, source_options
from spark_jobs.session import build_session
from spark_jobs.sinks import HealthPublisher, aggregate_lines, twin_lines

log = logs.get("stream_job")
QUERIES = ("ingest", "twin", "aggregates")


@dataclass(frozen=True)
class JobConfig:
    root: str
    trigger_s: float = 2.0
    twin_trigger_s: float = 5.0
    max_rows_per_trigger: int = 30_000
    starting_offsets: str = "earliest"
    watermark_s: int = 300
    window_s: int = 10
    agg_watermark_s: int = 20
    stale_after_s: float = 60.0
    queries: tuple[str, ...] = QUERIES

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"


def start_ingest(spark, topo: Topology, cfg: JobConfig, metrics: influx.InfluxDBClient):
    from pyspark.sql import functions as F

    opts = source_options(topo, maxRowsPerTrigger=str(cfg.max_rows_per_trigger),
                          startingOffsets=cfg.starting_offsets)
    raw = spark.readStream.format("rabbitmq_stream").options(**opts).load()
    parsed = raw.select("channel", "offset", "body").mapInArrow(parse.parse_batches,
                                                                 parse.spark_ddl())
    deduped = (parsed.withWatermark("event_time", f"{cfg.watermark_s} seconds")
                     .dropDuplicatesWithinWatermark(["dedupe_key"]))
    raw_cols = list(parse.RAW_COLUMNS)
    raw_path, quarantine_path = cfg.path("raw"), cfg.path("quarantine")

    def write(batch, batch_id: int) -> None:
        # One pass computes the counts and the event-time quantiles; each table is then written
        # by one task (a micro-batch is small: per-task overhead, not data, dominates here).
        batch = batch.persist()
        try:
            stats = batch.agg(
                F.count_if("valid").alias("valid"), F.count_if(~F.col("valid")).alias("bad"),
                F.percentile_approx(F.when(F.col("valid"), F.unix_millis("event_time")),
                                    F.array(F.lit(0.5), F.lit(0.05)), 1000).alias("q"),
            ).collect()[0]
            n_valid, n_bad = int(stats["valid"]), int(stats["bad"])
            n_files = 0
            if n_valid:
                valid = batch.filter("valid").select(*raw_cols).coalesce(1)
                n_files = commit_batch(spark, valid, raw_path, batch_id, ["der_type", "date"])
            if n_bad:
                bad = batch.filter("NOT valid").select(
                    "channel", "offset", "reason", "reason_field", "payload", "date",
                    F.col("event_time").alias("received_at")).coalesce(1)
                commit_batch(spark, bad, quarantine_path, batch_id, ["date"])
            # Latency measured after the commit: commit time minus event time.
            now_ms = time.time() * 1000
            q = stats["q"] or [None, None]
            lat = [None if v is None else now_ms - v for v in q]
            influx.write_lines(topo, [influx.line(
                "spark_batch", {"query": "ingest"},
                {"valid_rows": n_valid, "quarantined_rows": n_bad, "latency_p50_ms": lat[0],
                 "latency_p95_ms": lat[1], "batch_id": batch_id}, time.time_ns())], cli=metrics)
            event(log, "batch_committed", query="ingest", batch_id=batch_id, valid=n_valid,
                  quarantined=n_bad, files=n_files,
                  latency_p50_ms=None if lat[0] is None else round(lat[0]),
                  latency_p95_ms=None if lat[1] is None else round(lat[1]))
        finally:
            batch.unpersist()

    return (deduped.writeStream.queryName("ingest").foreachBatch(write)
            .option("checkpointLocation", cfg.path("checkpoints/ingest"))
            .trigger(processingTime=f"{cfg.trigger_s} seconds").start())


def _raw_stream(spark, cfg: JobConfig):
    # The file source moves partition columns (der_type, date) to the end; pin the order so
    # every downstream operator, Python ones included, sees one layout.
    return (spark.readStream.schema(parse.spark_ddl(parse.RAW_COLUMNS))
            .parquet(cfg.path("raw"))
            .select(*parse.RAW_COLUMNS))


def start_twin(spark, topo: Topology, cfg: JobConfig, metrics, health: HealthPublisher):
    from pyspark.sql.streaming.state import GroupStateTimeout

    readings = _raw_stream(spark, cfg).withColumn("twin_bucket", twin.bucket_of())
    states = readings.groupBy("twin_bucket").applyInPandasWithState(
        twin.update_twin(cfg.stale_after_s), twin.ddl(twin.OUTPUT_COLUMNS),
        twin.ddl(twin.BUCKET_STATE_COLUMNS), "update", GroupStateTimeout.ProcessingTimeTimeout)
    state_path = cfg.path("twin")

    def write(batch, batch_id: int) -> None:
        batch = batch.persist()
        try:
            rows = [r.asDict() for r in batch.collect()]
            if rows:
                commit_batch(spark, batch.coalesce(1), state_path, batch_id)
            influx.write_lines(topo, twin_lines(rows), cli=metrics)
            changed = [r for r in rows if r["health"] != r["prev_health"]]
            health.publish(changed)
            lats = sorted(r["latency_ms"] for r in rows
                          if r["latency_ms"] is not None and r["health"] != "stale")
            if lats:
                influx.write_lines(topo, [influx.line(
                    "spark_batch", {"query": "twin"},
                    {"latency_p50_ms": float(lats[len(lats) // 2]),
                     "latency_p95_ms": float(lats[min(len(lats) - 1, int(len(lats) * 0.95))]),
                     "valid_rows": len(rows), "batch_id": batch_id}, time.time_ns())],
                    cli=metrics)
            event(log, "batch_committed", query="twin", batch_id=batch_id, updated=len(rows),
                  health_changes=len(changed))
        finally:
            batch.unpersist()

    return (states.writeStream.queryName("twin").outputMode("update").foreachBatch(write)
            .option("checkpointLocation", cfg.path("checkpoints/twin"))
            .trigger(processingTime=f"{cfg.twin_trigger_s} seconds").start())


def start_aggregates(spark, topo: Topology, cfg: JobConfig, metrics):
    readings = (_raw_stream(spark, cfg)
                .withWatermark("event_time", f"{cfg.agg_watermark_s} seconds")
                # A batch re-published after a crash may be read twice from the raw table.
                .dropDuplicatesWithinWatermark(["der_id", "seq", "ts_ms"]))
    agg = aggregates.build(readings, cfg.window_s)
    agg_path = cfg.path("aggregates")

    def write(batch, batch_id: int) -> None:
        batch = batch.persist()
        try:
            rows = [r.asDict() for r in batch.collect()]
            if rows:
                commit_batch(spark, batch.coalesce(1), agg_path, batch_id)
            influx.write_lines(topo, aggregate_lines(rows), cli=metrics)
            event(log, "batch_committed", query="aggregates", batch_id=batch_id,
                  windows=len({r["window_start"] for r in rows}), rows=len(rows))
        finally:
            batch.unpersist()

    return (agg.writeStream.queryName("aggregates").outputMode("append").foreachBatch(write)
            .option("checkpointLocation", cfg.path("checkpoints/aggregates"))
            .trigger(processingTime=f"{cfg.twin_trigger_s} seconds").start())


def parse_args(argv: list[str] | None) -> tuple[JobConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="telemetry_job", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="HDFS root of tables and checkpoints "
                   "(default: <hdfs>/vpp)")
    p.add_argument("--trigger-s", type=float, default=2.0)
    p.add_argument("--twin-trigger-s", type=float, default=5.0)
    p.add_argument("--max-rows-per-trigger", type=int, default=30_000)
    p.add_argument("--starting-offsets", default="earliest",
                   help='earliest, latest, or JSON {"channel-0": 123, ...}')
    p.add_argument("--watermark-s", type=int, default=300,
                   help="dedupe horizon: a re-sent reading later than this is dropped (counted)")
    p.add_argument("--window-s", type=int, default=10)
    p.add_argument("--agg-watermark-s", type=int, default=20)
    p.add_argument("--stale-after-s", type=float, default=60.0)
    p.add_argument("--queries", default=",".join(QUERIES))
    p.add_argument("--run-for-s", type=float, default=None, help="stop after this long")
    p.add_argument("--until-idle-s", type=float, default=None,
                   help="stop once every query made no progress for this long")
    args = p.parse_args(argv)
    queries = tuple(q for q in args.queries.split(",") if q)
    for name, value in (("--trigger-s", args.trigger_s), ("--twin-trigger-s", args.twin_trigger_s),
                        ("--max-rows-per-trigger", args.max_rows_per_trigger),
                        ("--watermark-s", args.watermark_s), ("--window-s", args.window_s),
                        ("--stale-after-s", args.stale_after_s)):
        if not value > 0:
            p.error(f"{name} must be > 0, got {value}")
    if unknown := sorted(set(queries) - set(QUERIES)):
        p.error(f"--queries: unknown {unknown} (allowed: {', '.join(QUERIES)})")
    if args.starting_offsets not in ("earliest", "latest"):
        try:
            offsets = json.loads(args.starting_offsets)
            assert isinstance(offsets, dict) and all(isinstance(v, int) for v in offsets.values())
        except (ValueError, AssertionError):
            p.error("--starting-offsets must be earliest, latest or a JSON object of ints")
    return JobConfig(root=args.root or "", trigger_s=args.trigger_s,
                     twin_trigger_s=args.twin_trigger_s,
                     max_rows_per_trigger=args.max_rows_per_trigger,
                     starting_offsets=args.starting_offsets, watermark_s=args.watermark_s,
                     window_s=args.window_s, agg_watermark_s=args.agg_watermark_s,
                     stale_after_s=args.stale_after_s, queries=queries), args


SESSION_CONF = {
    # Fixed for the life of a checkpoint: one state partition per worker at 3 workers.
    "spark.sql.shuffle.partitions": "3",
    "spark.sql.streaming.stateStore.providerClass":
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "5000",
    "spark.sql.streaming.metricsEnabled": "true",
    "spark.python.worker.reuse": "true",
}


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    logs.setup("stream_job")
    topo = load_topology()
    if not cfg.root:
        cfg = JobConfig(**{**cfg.__dict__, "root": f"{topo.hdfs_url}/vpp"})
    influx.ensure_database(topo)
    metrics = influx.client(topo)
    spark = build_session(topo, "vpp-telemetry", SESSION_CONF)
    spark.sparkContext.setLogLevel("WARN")
    spark.sparkContext.addPyFile(project_zip())
    spark.dataSource.register(RabbitStreamSource)
    spark.streams.addListener(ProgressExporter(topo, spark))
    health = HealthPublisher(topo)
    ensure_dirs(spark, cfg.path("raw"), cfg.path("quarantine"))

    started = []
    if "ingest" in cfg.queries:
        started.append(start_ingest(spark, topo, cfg, metrics))
    # The raw-table readers start once the table holds data: a file stream infers its partition
    # columns (der_type, date) when it starts, and on an empty table it would infer none and
    # then misread the partitioned files that arrive later.
    waiting = {name: fn for name, fn in (
        ("twin", lambda: start_twin(spark, topo, cfg, metrics, health)),
        ("aggregates", lambda: start_aggregates(spark, topo, cfg, metrics)),
    ) if name in cfg.queries}
    event(log, "started", queries=[q.name for q in started], waiting_for_data=list(waiting),
          root=cfg.root)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    last_progress: float | None = None  # idle is only judged once every query has triggered
    seen: dict[str, int] = {}
    code = 0
    while not stop.is_set():
        if waiting and has_data(spark, cfg.path("raw"), partition_depth=2):
            for name, start in waiting.items():
                started.append(start())
                event(log, "started", queries=[name])
            waiting = {}
        if any(q.exception() for q in started):
            for q in started:
                if q.exception():
                    text = str(q.exception())
                    # py4j wraps the cause at the end of a long trace: keep both ends.
                    brief = text if len(text) <= 3000 else f"{text[:800]} ... {text[-2200:]}"
                    event(log, "query_failed", query=q.name, error=brief)
            code = 1
            break
        for q in started:
            lp = q.lastProgress
            if lp and lp.get("numInputRows", 0) > 0 and seen.get(q.name) != lp["batchId"]:
                seen[q.name] = lp["batchId"]
                last_progress = time.monotonic()
            # A batch with data still running is not idle: one batch may take longer than
            # --until-idle-s on a half-CPU worker. (isTriggerActive is also true during the
            # empty triggers every few seconds, so it cannot say "busy".)
            if q.status.get("isDataAvailable"):
                last_progress = time.monotonic()
        if args.run_for_s is not None and time.monotonic() - t0 > args.run_for_s:
            break
        all_triggered = not waiting and all(q.lastProgress for q in started)
        if (args.until_idle_s is not None and all_triggered
                and time.monotonic() - (last_progress or t0) > args.until_idle_s):
            event(log, "idle", idle_s=args.until_idle_s)
            break
        stop.wait(1.0)
    for q in started:
        q.stop()
    health.close()
    event(log, "stopped", code=code, ran_s=round(time.monotonic() - t0, 1))
    spark.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
