"""The one metric schema (Telegraf-style): measurement names, tags and numeric fields.

Writers (monitor agents, the metrics writer, the stream-progress exporter, the diagnoser, the
orchestrator) and readers (diagnoser, model features, Grafana dashboards) import these names
instead of spelling strings, so a renamed field breaks loudly in tests.

Percentages are 0..100 of the node's *own* limit (a container capped at 0.5 CPU and fully busy
reads 100), rates are per second, durations are milliseconds, sizes are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: tuple[str, ...]
    fields: tuple[str, ...]


# Alg. 1, Table I / Table II: one point per node per sample.
NODE_TAGS = ("cluster", "node", "role")
NODE_FIELDS = (
    "cpu",             # % of the node's CPU quota
    "memory",          # % of the node's memory limit (RSS + page cache the kernel counts)
    "disk",            # % of the data filesystem used
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
    "processes",
)
PROCESSING = Measurement("processing_cluster", NODE_TAGS, NODE_FIELDS)   # Table I
QUEUING = Measurement("queuing_cluster", NODE_TAGS, NODE_FIELDS)         # Table II

# Per queue of every active channel, from the RabbitMQ management API.
QUEUE = Measurement(
    "rabbitmq_queue",
    ("node", "queue"),
    ("messages", "publish_rate", "deliver_rate", "consumers", "bytes"),
)

# Per telemetry stream: how far the stream consumer (Spark) is behind the stream's end.
STREAM_LAG = Measurement("stream_lag", ("node", "stream"),
                         ("end_offset", "committed_offset", "lag"))

# Per trigger of a streaming query (StreamingQueryProgress).
STREAM_PROGRESS = Measurement(
    "spark_stream",
    ("query",),
    ("input_rate", "processed_rate", "batch_duration_ms", "num_input_rows", "state_rows",
     "latency_p50_ms", "latency_p95_ms", "executors"),
)

# Per finished Spark task (for straggler detection, Fig. 11).
SPARK_TASK = Measurement(
    "spark_task",
    ("node", "executor", "stage"),
    ("duration_ms", "run_ms", "gc_ms", "input_records"),
)

# Alg. 2 output: one point per emitted label, with its evidence.
DIAGNOSIS = Measurement(
    "rca",
    ("label", "pool", "node", "rule", "mode"),
    ("code", "observed", "threshold", "window_s"),
)

# Alg. 3 output: one point per orchestrator decision/action.
DECISION = Measurement(
    "autoscaler_decision",
    ("action", "pool", "node", "label", "shadow"),
    ("required", "active_before", "active_after", "latency_s"),
)

ALL = (PROCESSING, QUEUING, QUEUE, STREAM_LAG, STREAM_PROGRESS, SPARK_TASK, DIAGNOSIS, DECISION)
NODE_MEASUREMENT_BY_POOL = {"processing": PROCESSING, "queue": QUEUING, "core": PROCESSING}
