"""Where twin results go besides HDFS: InfluxDB points for Grafana, health events on the
control exchange for the rest of the VPP."""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping

import pika

from infra import logs
from infra.amqp import amqp_params, publish_stored
from infra.logs import event
from infra.topology import Topology
from ingest.topology import CONTROL_EXCHANGE, home_channel
from monitor import influx
from monitor.schema import AGGREGATE_FIELDS, DER_STATE

log = logs.get("stream_job")
_STATE_FIELDS = tuple(f for f in DER_STATE.fields)


def twin_lines(rows: Iterable[Mapping[str, object]]) -> list[str]:
    out = []
    for r in rows:
        tags = {k: r.get(k) for k in DER_STATE.tags}
        fields = {k: r.get(k) for k in _STATE_FIELDS}
        out.append(influx.line(DER_STATE.name, tags, fields, int(r["updated_ms"]) * 1_000_000))
    return out


def _ns(ts: object) -> int:
    return int(ts.timestamp() * 1e9)  # type: ignore[attr-defined]


def aggregate_lines(rows: Iterable[Mapping[str, object]]) -> list[str]:
    """vpp_site per (window, site, type), and vpp_total per (window, type) summed over sites."""
    out = []
    total: dict[tuple[object, str], dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(AGGREGATE_FIELDS, 0.0))
    for r in rows:
        fields = {k: (int(r[k]) if k == "ders" else float(r[k])) for k in AGGREGATE_FIELDS}
        out.append(influx.line("vpp_site", {"site_id": r["site_id"], "der_type": r["der_type"]},
                               fields, _ns(r["window_start"])))
        acc = total[(r["window_start"], str(r["der_type"]))]
        for k in AGGREGATE_FIELDS:
            acc[k] += fields[k]
    for (start, der_type), fields in total.items():
        fields = {k: (int(v) if k == "ders" else v) for k, v in fields.items()}
        out.append(influx.line("vpp_total", {"der_type": der_type}, fields, _ns(start)))
    return out


class HealthPublisher:
    """Publishes DER health changes (``der.health.<der_id>``) with confirms. What could not be
    published stays pending and goes out with the next batch."""

    def __init__(self, topo: Topology, user: str = "stream") -> None:
        self.params = amqp_params(topo, home_channel(topo), user, heartbeat=60)
        self._conn: pika.BlockingConnection | None = None
        self._ch = None
        self.pending: list[tuple[str, bytes]] = []
        self.published = 0

    def _channel(self):
        if self._conn is None or not self._conn.is_open:
            self._conn = pika.BlockingConnection(self.params)
            self._ch = self._conn.channel()
            self._ch.confirm_delivery()
        return self._ch

    def publish(self, rows: Iterable[Mapping[str, object]]) -> int:
        for r in rows:
            body = json.dumps({"der_id": r["der_id"], "der_type": r["der_type"],
                               "site_id": r["site_id"], "health": r["health"],
                               "prev_health": r["prev_health"], "last_ts_ms": r["last_ts_ms"],
                               "updated_ms": r["updated_ms"]}, separators=(",", ":")).encode()
            self.pending.append((f"der.health.{r['der_id']}", body))
        sent = 0
        try:
            ch = self._channel()
            while self.pending:
                key, body = self.pending[0]
                publish_stored(ch, CONTROL_EXCHANGE, key, body)
                self.pending.pop(0)
                sent += 1
        except Exception as exc:
            event(log, "health_publish_deferred", pending=len(self.pending), error=repr(exc))
            self.close()
        self.published += sent
        return sent

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
