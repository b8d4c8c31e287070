"""Per-trigger progress of every query to InfluxDB (``spark_stream``, ``stream_lag``), and the
event-time latency of a batch."""

from __future__ import annotations

import json
import time

from pyspark.sql.streaming import StreamingQueryListener

from infra import logs
from infra.logs import event
from infra.topology import Topology
from ingest.topology import TELEMETRY_STREAM
from monitor import influx

log = logs.get("stream_job")


def _offsets(value: str | dict | None) -> dict[str, int]:
    """A source offset as progress reports it: JSON text (live event) or already parsed."""
    if not value:
        return {}
    try:
        raw = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return {k: int(v) for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, dict) \
        else {}


class _Idle:
    """A progress-like view of an idle trigger: the query's last progress, with nothing read."""

    def __init__(self, last: dict) -> None:
        self.name = last.get("name")
        self.batchId = last.get("batchId", 0)
        self.inputRowsPerSecond = 0.0
        self.processedRowsPerSecond = 0.0
        self.numInputRows = 0
        self.durationMs = {"triggerExecution": 0}
        self.stateOperators = [_Op(op) for op in last.get("stateOperators", [])]
        self.sources = [_Src(s) for s in last.get("sources", [])]


class _Op:
    def __init__(self, op: dict) -> None:
        self.numRowsTotal = int(op.get("numRowsTotal", 0))
        self.numRowsDroppedByWatermark = 0


class _Src:
    def __init__(self, src: dict) -> None:
        self.endOffset = src.get("endOffset")
        self.latestOffset = src.get("latestOffset")


class ProgressExporter(StreamingQueryListener):
    def __init__(self, topo: Topology, spark) -> None:
        self.topo = topo
        self.spark = spark
        self.client = influx.client(topo)

    def _executors(self) -> int:
        try:
            # The block manager list includes the driver's own.
            return int(self.spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1
        except Exception:
            return -1

    def onQueryStarted(self, e) -> None:
        event(log, "query_started", query=e.name, id=str(e.id))

    def onQueryProgress(self, e) -> None:
        self._export(e.progress, idle=False)

    def onQueryIdle(self, e) -> None:
        # Spark reports an idle trigger here, not in onQueryProgress. "Keeping up with no lag"
        # is evidence too (a scale-down needs it), so an idle query still writes a point:
        # zero rates, and the lag from its last progress.
        try:
            query = self.spark.streams.get(str(e.id))
        except Exception:
            return
        if query is not None and query.lastProgress is not None:
            self._export(_Idle(query.lastProgress), idle=True)

    def _export(self, p, idle: bool) -> None:
        duration = (p.durationMs or {}).get("triggerExecution")
        state_rows = sum(op.numRowsTotal for op in p.stateOperators or [])
        late = sum(op.numRowsDroppedByWatermark for op in p.stateOperators or [])
        now = time.time_ns()
        fields = {
            "input_rate": float(p.inputRowsPerSecond or 0.0),
            "processed_rate": float(p.processedRowsPerSecond or 0.0),
            "batch_duration_ms": float(duration or 0.0),
            "num_input_rows": int(p.numInputRows or 0),
            "state_rows": int(state_rows),
            "late_rows_dropped": int(late),
            "executors": self._executors(),
            "batch_id": int(p.batchId),
        }
        lines = [influx.line("spark_stream", {"query": p.name}, fields, now)]
        for src in p.sources or []:
            done, latest = _offsets(src.endOffset), _offsets(src.latestOffset)
            for ch, end in latest.items():
                committed = done.get(ch, 0)
                lines.append(influx.line("stream_lag", {"node": ch, "stream": TELEMETRY_STREAM},
                                         {"end_offset": end, "committed_offset": committed,
                                          "lag": max(0, end - committed)}, now))
        try:
            influx.write_lines(self.topo, lines, cli=self.client)
        except Exception as exc:
            event(log, "progress_write_failed", query=p.name, error=repr(exc))
        if not idle and (fields["num_input_rows"] or late):
            event(log, "progress", query=p.name, batch_id=p.batchId,
                  rows=fields["num_input_rows"], duration_ms=fields["batch_duration_ms"],
                  input_rate=round(fields["input_rate"], 1),
                  processed_rate=round(fields["processed_rate"], 1), state_rows=state_rows,
                  late_rows_dropped=late, phases=p.durationMs)

    def onQueryTerminated(self, e) -> None:
        event(log, "query_terminated", id=str(e.id), error=e.exception)
