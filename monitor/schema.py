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
    "sample_seq",      # per-agent counter from 0: a gap in InfluxDB is a lost sample
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

# Per trigger of a streaming query (StreamingQueryProgress, from the job's listener).
STREAM_PROGRESS = Measurement(
    "spark_stream",
    ("query",),
    ("input_rate", "processed_rate", "batch_duration_ms", "num_input_rows", "state_rows",
     "late_rows_dropped", "executors", "batch_id"),
)

# Per committed micro-batch (from the job's batch writers): what it stored and how late.
# Latency is commit time minus event time: for `twin`, sensor event -> twin state visible.
STREAM_BATCH = Measurement(
    "spark_batch",
    ("query",),
    ("valid_rows", "quarantined_rows", "latency_p50_ms", "latency_p95_ms", "batch_id"),
)

# Per finished Spark task (for straggler detection, Fig. 11). The stage is a field, not a
# tag: stage ids grow without bound and every tag value is a new InfluxDB series.
SPARK_TASK = Measurement(
    "spark_task",
    ("node", "executor"),
    ("duration_ms", "run_ms", "gc_ms", "input_records", "stage"),
)

# Alg. 2 output: one point per emitted label, with its evidence.
DIAGNOSIS = Measurement(
    "rca",
    ("label", "pool", "node", "rule", "mode"),
    ("code", "observed", "threshold", "window_s"),
)

# Fig. 11: a node or task much slower than its peers, flagged live by the diagnoser.
STRAGGLER = Measurement(
    "straggler",
    ("node", "method"),
    ("observed", "median", "threshold", "peers", "stage"),
)

# Alg. 3 output: one point per orchestrator decision/action.
DECISION = Measurement(
    "autoscaler_decision",
    ("action", "pool", "node", "label", "shadow", "policy", "outcome"),
    ("required", "active_before", "active_after", "latency_s", "reason", "rule_path"),
)

# The digital twin (spark_jobs/): latest state per DER, windowed aggregates per site and VPP.
DER_STATE = Measurement(
    "der_state",
    ("der_id", "der_type", "site_id", "health"),
    ("p_w", "q_var", "v_v", "f_hz", "e_wh", "t_c", "soc_pct", "e_cap_wh", "p_max_chg_w",
     "p_max_dis_w", "fuel_pct", "last_seq", "readings", "latency_ms"),
)
AGGREGATE_FIELDS = ("ders", "p_w", "gen_w", "load_w", "storage_wh", "chg_avail_w", "dis_avail_w")
VPP_SITE = Measurement("vpp_site", ("site_id", "der_type"), AGGREGATE_FIELDS)
VPP_TOTAL = Measurement("vpp_total", ("der_type",), AGGREGATE_FIELDS)
QUARANTINE = Measurement("quarantine", ("reason_field", "channel"), ("rows",))

ALL = (PROCESSING, QUEUING, QUEUE, STREAM_LAG, STREAM_PROGRESS, STREAM_BATCH, SPARK_TASK,
       DIAGNOSIS, STRAGGLER, DECISION, DER_STATE, VPP_SITE, VPP_TOTAL, QUARANTINE)
NODE_MEASUREMENT_BY_POOL = {"processing": PROCESSING, "queue": QUEUING, "core": PROCESSING}
