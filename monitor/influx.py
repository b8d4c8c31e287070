"""InfluxDB adapter: line protocol over ``/write``, InfluxQL over ``/query`` (DESIGN.md: the one
API path that also works on InfluxDB 2.x and 3.x compatibility endpoints).

:func:`line` is pure and checks every point against :mod:`monitor.schema`, so nothing writes a
measurement or field that the dashboards and the diagnoser do not know.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from influxdb import InfluxDBClient

from infra.topology import Topology
from monitor.schema import ALL

DATABASE = "vpp"
_BY_NAME = {m.name: m for m in ALL}
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


class PointError(ValueError):
    pass


def _field_value(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def line(measurement: str, tags: Mapping[str, object], fields: Mapping[str, object],
         time_ns: int | None = None) -> str:
    m = _BY_NAME.get(measurement)
    if m is None:
        raise PointError(f"measurement {measurement!r} is not in monitor.schema")
    bad_tags = sorted(set(tags) - set(m.tags))
    bad_fields = sorted(set(fields) - set(m.fields))
    if bad_tags or bad_fields:
        raise PointError(f"{measurement}: unknown tags {bad_tags} / fields {bad_fields}")
    tag_part = "".join(
        f",{k}={str(v).translate(_TAG_ESCAPES)}" for k, v in sorted(tags.items())
        if v is not None and str(v) != "")
    values = [(k, _field_value(v)) for k, v in fields.items()]
    field_part = ",".join(f"{k}={v}" for k, v in values if v is not None)
    if not field_part:
        raise PointError(f"{measurement}: a point needs at least one non-null field")
    out = f"{measurement.translate(_MEAS_ESCAPES)}{tag_part} {field_part}"
    return out if time_ns is None else f"{out} {int(time_ns)}"


def client(topo: Topology, timeout: float = 10.0) -> InfluxDBClient:
    node = topo.only("influxdb")
    return InfluxDBClient(host=topo.bind_host, port=node.ports["http"], database=DATABASE,
                          timeout=timeout)


def ensure_database(topo: Topology) -> None:
    client(topo).create_database(DATABASE)  # idempotent in InfluxDB 1.x


def write_lines(topo: Topology, lines: Iterable[str], precision: str = "n",
                cli: InfluxDBClient | None = None) -> int:
    batch = list(lines)
    if batch:
        (cli or client(topo)).write_points(batch, protocol="line", time_precision=precision,
                                           batch_size=5000)
    return len(batch)
