"""Capacity of one node per scalable pool, from ``capacity.yaml``: the ground truth of the labels.

The resource model must not re-learn the diagnoser's thresholds, so its targets are computed from
what one channel and one worker *sustain* (readings/s). Those numbers come from a capacity sweep
(a bench writes the YAML with ``source.kind: measured``); until one has run, the shipped file is
``provisional``. The node CPU/memory model (linear in utilisation between an idle and a busy
value) is what the simulator uses to turn load into the percentages the monitor reports.

Loading validates everything up front and raises :class:`CapacityError` whose message names each
offending field (``processing.scaling_efficiency: must be within (0, 1], got 1.5``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from infra.topology import SCALABLE_POOLS
from infra.yamlfile import FieldErrors, read_yaml

DEFAULT_PATH = Path(__file__).with_name("capacity.yaml")
SOURCE_KINDS = ("provisional", "measured")

_COMMON = ("cpus", "readings_per_s", "scaling_efficiency", "cpu_idle_pct", "cpu_busy_pct",
           "memory_idle_pct", "memory_busy_pct")
_EXTRA = {"queue": ("publish_share",), "processing": ("batch_overhead_ms",)}
_DEFAULTS = {"publish_share": 0.6, "batch_overhead_ms": 400.0}


class CapacityError(ValueError):
    """A capacity file is invalid; the message names every offending field."""


@dataclass(frozen=True)
class CapacitySource:
    """Where the numbers come from: ``provisional`` estimates or a ``measured`` sweep."""

    kind: str
    command: str | None = None     # the bench command that wrote the file (measured)
    date: str | None = None        # ISO date of the sweep (measured)
    note: str = ""

    def describe(self) -> str:
        if self.kind == "measured":
            return f"measured {self.date} by `{self.command}`"
        return f"provisional ({self.note})" if self.note else "provisional"


@dataclass(frozen=True)
class PoolCapacity:
    """One node of ``pool``. ``readings_per_s`` is the sustained rate of ONE node; each further
    node adds ``scaling_efficiency`` of that (so n nodes sustain c * (1 + e * (n - 1)))."""

    pool: str
    cpus: float
    readings_per_s: float
    scaling_efficiency: float
    cpu_idle_pct: float
    cpu_busy_pct: float
    memory_idle_pct: float
    memory_busy_pct: float
    publish_share: float = 0.6          # queue: share of a reading's cost spent publishing
    batch_overhead_ms: float = 400.0    # processing: micro-batch duration at zero load

    def total(self, nodes: int) -> float:
        """Readings/s that ``nodes`` active nodes sustain together (0 for no node)."""
        if nodes <= 0:
            return 0.0
        return self.readings_per_s * (1.0 + self.scaling_efficiency * (nodes - 1))

    def utilisation(self, load: float, nodes: int) -> float:
        """Load as a share of what ``nodes`` sustain; every node carries the same share."""
        cap = self.total(nodes)
        if cap <= 0:
            return math.inf if load > 0 else 0.0
        return max(0.0, load) / cap

    def cpu_pct(self, utilisation: float) -> float:
        """A node's CPU (% of its quota) at ``utilisation`` (1 = flat out; clipped to 0..1)."""
        u = min(1.0, max(0.0, utilisation))
        return self.cpu_idle_pct + (self.cpu_busy_pct - self.cpu_idle_pct) * u

    def memory_pct(self, utilisation: float) -> float:
        u = min(1.0, max(0.0, utilisation))
        return self.memory_idle_pct + (self.memory_busy_pct - self.memory_idle_pct) * u

    def nodes_for(self, demand: float, lo: int, hi: int) -> int:
        """The smallest count in ``lo..hi`` whose sustained rate covers ``demand`` readings/s;
        ``hi`` when none does (the pool cannot do more: the bench must size the load)."""
        if lo > hi:
            raise ValueError(f"nodes_for: lo {lo} is above hi {hi}")
        for n in range(max(lo, 1), hi + 1):
            if self.total(n) >= demand:
                return n
        return hi


@dataclass(frozen=True)
class RequiredCounts:
    """The resource model's answer (the paper's R_tot^req): nodes each pool needs."""

    queue: int
    processing: int

    def __post_init__(self) -> None:
        for name in SCALABLE_POOLS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"required.{name}: must be a count >= 0, got {value!r}")

    def of(self, pool: str) -> int:
        if pool not in SCALABLE_POOLS:
            raise KeyError(f"no required count for pool {pool!r}")
        return int(getattr(self, pool))

    def as_dict(self) -> dict[str, int]:
        return {"queue": self.queue, "processing": self.processing}


@dataclass(frozen=True)
class Capacity:
    version: int
    source: CapacitySource
    queue: PoolCapacity
    processing: PoolCapacity
    path: Path = field(default=DEFAULT_PATH, compare=False)

    def pool(self, name: str) -> PoolCapacity:
        if name == "queue":
            return self.queue
        if name == "processing":
            return self.processing
        raise KeyError(f"no capacity for pool {name!r} (pools: {', '.join(SCALABLE_POOLS)})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for the model card): the numbers the labels were computed from."""
        return {"version": self.version, "source": asdict(self.source),
                "queue": asdict(self.queue), "processing": asdict(self.processing),
                "path": str(self.path)}


# ---------------------------------------------------------------------------------------------
# loading and validation




def _number(raw: Mapping[str, Any], key: str, path: str, errs: FieldErrors,
            default: float | None = None) -> float | None:
    here = f"{path}.{key}"
    if key not in raw:
        if default is None:
            errs.add(here, "required field is missing")
        return default
    value = raw[key]
    # bool is an int subclass: `true` readings/s is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errs.add(here, f"expected a finite number, got {value!r}")
        return None
    return float(value)


def _unknown(raw: Mapping[str, Any], allowed: tuple[str, ...] | set[str], path: str,
             errs: FieldErrors) -> None:
    for key in raw:
        if key not in allowed:
            errs.add(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _parse_source(raw: Any, errs: FieldErrors) -> CapacitySource:
    if not isinstance(raw, Mapping):
        errs.add("source", f"expected a mapping with kind/command/date, got {raw!r}")
        return CapacitySource("provisional")
    _unknown(raw, {"kind", "command", "date", "note"}, "source", errs)
    kind = raw.get("kind")
    command, when, note = raw.get("command"), raw.get("date"), raw.get("note") or ""
    if kind not in SOURCE_KINDS:
        errs.add("source.kind", f"must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    if command is not None and not isinstance(command, str):
        errs.add("source.command", f"expected a string, got {command!r}")
        command = None
    if isinstance(when, date):          # YAML reads an unquoted 2026-01-31 as a date
        when = when.isoformat()
    if when is not None:
        try:
            date.fromisoformat(str(when))
        except ValueError:
            errs.add("source.date", f"expected an ISO date YYYY-MM-DD, got {when!r}")
            when = None
    if kind == "measured":
        # A measured file that does not say how it was measured cannot be reproduced.
        if not command:
            errs.add("source.command", "required when kind is measured (the bench command)")
        if not when:
            errs.add("source.date", "required when kind is measured (date of the sweep)")
    return CapacitySource(kind if kind in SOURCE_KINDS else "provisional", command,
                          None if when is None else str(when), str(note))


def _parse_pool(name: str, raw: Any, errs: FieldErrors) -> PoolCapacity | None:
    if not isinstance(raw, Mapping):
        errs.add(name, f"expected a mapping, got {raw!r}")
        return None
    keys = _COMMON + _EXTRA[name]
    _unknown(raw, set(keys), name, errs)
    values: dict[str, float | None] = {
        k: _number(raw, k, name, errs, _DEFAULTS.get(k)) for k in keys}
    checks = {
        "cpus": (lambda v: 0.05 <= v <= 64, "must be within 0.05..64"),
        "readings_per_s": (lambda v: v > 0, "must be > 0"),
        "scaling_efficiency": (lambda v: 0 < v <= 1, "must be within (0, 1]"),
        "publish_share": (lambda v: 0 < v < 1, "must be within (0, 1)"),
        "batch_overhead_ms": (lambda v: v >= 0, "must be >= 0"),
    }
    for key in keys:
        v = values[key]
        if v is None:
            continue
        if key.endswith("_pct"):
            if not 0 <= v <= 100:
                errs.add(f"{name}.{key}", f"must be within 0..100, got {v:g}")
                values[key] = None
        elif key in checks and not checks[key][0](v):
            errs.add(f"{name}.{key}", f"{checks[key][1]}, got {v:g}")
            values[key] = None
    for what in ("cpu", "memory"):
        idle, busy = values[f"{what}_idle_pct"], values[f"{what}_busy_pct"]
        if idle is not None and busy is not None and busy <= idle:
            errs.add(f"{name}.{what}_busy_pct", f"{busy:g} must be above {what}_idle_pct {idle:g}")
            values[f"{what}_busy_pct"] = None
    if any(v is None for v in values.values()):
        return None
    return PoolCapacity(pool=name, **{k: float(v) for k, v in values.items() if v is not None})


def parse_capacity(raw: Any, source: Path = DEFAULT_PATH) -> Capacity:
    errs = FieldErrors("capacity file", CapacityError)
    if not isinstance(raw, Mapping):
        errs.add("capacity", f"expected a mapping, got {type(raw).__name__}")
        errs.raise_if_any(source)
    _unknown(raw, {"version", "source", *SCALABLE_POOLS}, "capacity", errs)
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:
        errs.add("version", f"must be 1, got {version!r}")
    src = _parse_source(raw.get("source"), errs) if "source" in raw else None
    if src is None:
        errs.add("source", "required: kind (provisional|measured), command, date")
    pools = {}
    for name in SCALABLE_POOLS:
        if name not in raw:
            errs.add(name, "required pool capacity is missing")
            continue
        pools[name] = _parse_pool(name, raw[name], errs)
    errs.raise_if_any(source)
    assert src is not None and pools["queue"] is not None and pools["processing"] is not None
    return Capacity(1, src, pools["queue"], pools["processing"], source)


def capacity_path() -> Path:
    return Path(os.environ.get("VPP_CAPACITY") or DEFAULT_PATH)


def load_capacity(path: str | os.PathLike[str] | None = None) -> Capacity:
    src = Path(path) if path is not None else capacity_path()
    return parse_capacity(read_yaml(src, "capacity file", CapacityError), src)
