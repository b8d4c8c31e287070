"""Scenario files: which DERs are on, when, and how fast they report.

A scenario (YAML, see ``sensors_sim/scenarios/``) is a list of phases in time order; each phase
adds groups of DERs and/or removes groups (or the last N members of a group)::

    name: processing_level
    duration_s: 480
    defaults: {interval_s: 1.0, burst: 1}
    phases:
      - at_s: 0
        add: [{group: base, der_type: pv, count: 2, burst: 200}]
      - at_s: 160
        add: [{group: extra, der_type: battery, count: 3, burst: 200}]
      - at_s: 320
        remove: [{group: extra, count: 2}]

A DER of a group emits ``burst`` readings every ``interval_s`` (spread evenly over the
interval), so its rate is ``burst / interval_s`` readings/s. Scenarios describe the *shape* of a
load (Fig. 12: a channel overloaded by two extra DERs; Fig. 13: processing load up then down);
``rate_scale`` (in the file, overridable by the runner) multiplies every rate so the same shape
can be sized to the measured capacity of a given machine.

Loading validates everything and raises :class:`ScenarioError` naming each offending field
(``phases[2].at_s: must be >= previous phase (30)``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ingest.schema import DER_TYPES
from sensors_sim.models.base import mix_seed
from sensors_sim.models.fleet import CONFIGS, ID_PREFIX

SCENARIO_DIR = Path(__file__).with_name("scenarios")
GROUP_RX = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
MAX_RATE_PER_DER = 100_000.0   # readings/s: beyond this a file is surely a typo


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names every offending field."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"invalid scenario {source}:\n  " + "\n  ".join(errors))


@dataclass(frozen=True)
class DerSpec:
    """One simulated DER of a scenario. ``config`` is passed to ``make_der`` as a mapping."""

    der_id: str
    der_type: str
    group: str
    interval_s: float
    burst: int
    seed: int
    channel: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def rate_per_s(self, rate_scale: float = 1.0) -> float:
        return self.burst * rate_scale / self.interval_s


@dataclass(frozen=True)
class GroupAdd:
    group: str
    der_type: str
    count: int
    interval_s: float
    burst: int
    channel: str | None
    seed: int | None
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def members(self, scenario_seed: int) -> tuple[DerSpec, ...]:
        out = []
        for i in range(self.count):
            der_id = f"{ID_PREFIX[self.der_type]}-{self.group}-{i:03d}"
            seed = mix_seed(self.seed, i) if self.seed is not None \
                else mix_seed(scenario_seed, der_id)
            out.append(DerSpec(der_id, self.der_type, self.group, self.interval_s, self.burst,
                               seed, self.channel, self.config))
        return tuple(out)


@dataclass(frozen=True)
class GroupRemove:
    group: str
    count: int | None = None       # None: the whole group


@dataclass(frozen=True)
class Phase:
    at_s: float
    add: tuple[GroupAdd, ...] = ()
    remove: tuple[GroupRemove, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    phases: tuple[Phase, ...]
    description: str = ""
    rate_scale: float = 1.0
    seed: int = 0
    source: str = "<memory>"

    def with_rate_scale(self, rate_scale: float) -> Scenario:
        if not rate_scale > 0:
            raise ValueError(f"rate_scale: must be > 0 (got {rate_scale})")
        return Scenario(self.name, self.duration_s, self.phases, self.description, rate_scale,
                        self.seed, self.source)


@dataclass(frozen=True)
class TimelineStep:
    at_s: float
    active: tuple[DerSpec, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    rate_per_s: float               # offered readings/s of all active DERs, rate_scale applied
    note: str = ""


# ---------------------------------------------------------------------------------------------
# queries


def _apply(phase: Phase, active: dict[str, DerSpec], seed: int) -> tuple[list[str], list[str]]:
    added, removed = [], []
    for rm in phase.remove:
        members = sorted((d for d in active.values() if d.group == rm.group),
                         key=lambda d: d.der_id)
        drop = members if rm.count is None else members[len(members) - rm.count:]
        for d in drop:
            del active[d.der_id]
            removed.append(d.der_id)
    for add in phase.add:
        for d in add.members(seed):
            active[d.der_id] = d
            added.append(d.der_id)
    return added, removed


def active_at(scenario: Scenario, t_s: float) -> frozenset[DerSpec]:
    """DERs that are on at ``t_s`` seconds after the scenario start (phases with
    ``at_s <= t_s`` applied in order). The runner stops at ``duration_s``."""
    active: dict[str, DerSpec] = {}
    for ph in scenario.phases:
        if ph.at_s > t_s:
            break
        _apply(ph, active, scenario.seed)
    return frozenset(active.values())


def timeline(scenario: Scenario) -> tuple[TimelineStep, ...]:
    """One step per phase: who is on from then, who joined/left, and the offered rate."""
    active: dict[str, DerSpec] = {}
    steps = []
    for ph in scenario.phases:
        added, removed = _apply(ph, active, scenario.seed)
        on = tuple(sorted(active.values(), key=lambda d: d.der_id))
        rate = sum(d.rate_per_s(scenario.rate_scale) for d in on)
        steps.append(TimelineStep(ph.at_s, on, tuple(added), tuple(removed), rate, ph.note))
    return tuple(steps)


# ---------------------------------------------------------------------------------------------
# loading and validation


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, msg: str) -> None:
        self.items.append(f"{path}: {msg}")


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _take(raw: Mapping[str, Any], key: str, path: str, errs: _Errors, kind: str,
          default: Any = ...) -> Any:
    p = f"{path}.{key}" if path else key
    if key not in raw:
        if default is ...:
            errs.add(p, "required field is missing")
            return None
        return default
    v = raw[key]
    ok = {"number": _num(v), "int": isinstance(v, int) and not isinstance(v, bool),
          "str": isinstance(v, str), "list": isinstance(v, list),
          "mapping": isinstance(v, dict)}[kind]
    if not ok:
        errs.add(p, f"expected {kind}, got {v!r}")
        return None
    return v


def _unknown(raw: Mapping[str, Any], allowed: set[str], path: str, errs: _Errors) -> None:
    for k in raw:
        if k not in allowed:
            p = f"{path}.{k}" if path else str(k)
            errs.add(p, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _parse_add(raw: Any, path: str, defaults: Mapping[str, Any], errs: _Errors
               ) -> GroupAdd | None:
    if not isinstance(raw, dict):
        errs.add(path, f"expected a mapping, got {raw!r}")
        return None
    _unknown(raw, {"group", "der_type", "count", "interval_s", "burst", "channel", "seed",
                   "config"}, path, errs)
    group = _take(raw, "group", path, errs, "str")
    der_type = _take(raw, "der_type", path, errs, "str")
    count = _take(raw, "count", path, errs, "int", 1)
    interval = _take(raw, "interval_s", path, errs, "number", defaults.get("interval_s", 10.0))
    burst = _take(raw, "burst", path, errs, "int", defaults.get("burst", 1))
    channel = _take(raw, "channel", path, errs, "str", defaults.get("channel"))
    seed = _take(raw, "seed", path, errs, "int", None)
    config = _take(raw, "config", path, errs, "mapping", {})
    bad = False
    if group is not None and not GROUP_RX.fullmatch(group):
        errs.add(f"{path}.group", f"{group!r} does not match {GROUP_RX.pattern}")
        bad = True
    if der_type is not None and der_type not in DER_TYPES:
        errs.add(f"{path}.der_type",
                 f"unknown der_type {der_type!r} (expected one of {', '.join(DER_TYPES)})")
        bad = True
    if count is not None and count < 1:
        errs.add(f"{path}.count", f"must be >= 1 (got {count})")
        bad = True
    if interval is not None and not interval > 0:
        errs.add(f"{path}.interval_s", f"must be > 0 (got {interval})")
        bad = True
    if burst is not None and burst < 1:
        errs.add(f"{path}.burst", f"must be >= 1 (got {burst})")
        bad = True
    if burst and interval and interval > 0 and burst / interval > MAX_RATE_PER_DER:
        errs.add(f"{path}.burst", f"{burst / interval:g} readings/s per DER above "
                                  f"{MAX_RATE_PER_DER:g}")
        bad = True
    if config and der_type in CONFIGS:
        cls = CONFIGS[der_type]
        for k in config:
            if k not in cls.__dataclass_fields__:
                errs.add(f"{path}.config.{k}", f"not a field of {cls.__name__}")
                bad = True
        if not bad:
            try:
                cls(**config)
            except (TypeError, ValueError) as e:
                errs.add(f"{path}.config", str(e))
                bad = True
    if bad or None in (group, der_type, count, interval, burst) or config is None:
        return None
    return GroupAdd(group, der_type, count, float(interval), burst, channel, seed, dict(config))


def _parse_remove(raw: Any, path: str, errs: _Errors) -> GroupRemove | None:
    if isinstance(raw, str):
        return GroupRemove(raw)
    if not isinstance(raw, dict):
        errs.add(path, f"expected a group name or a mapping, got {raw!r}")
        return None
    _unknown(raw, {"group", "count"}, path, errs)
    group = _take(raw, "group", path, errs, "str")
    count = _take(raw, "count", path, errs, "int", None)
    if count is not None and count < 1:
        errs.add(f"{path}.count", f"must be >= 1 (got {count})")
        return None
    return None if group is None else GroupRemove(group, count)


def parse_scenario(raw: Any, source: str = "<memory>") -> Scenario:
    errs = _Errors()
    if not isinstance(raw, dict):
        raise ScenarioError(source, [f"(top level): expected a mapping, got {raw!r}"])
    _unknown(raw, {"name", "description", "duration_s", "rate_scale", "seed", "defaults",
                   "phases"}, "", errs)
    name = _take(raw, "name", "", errs, "str")
    description = _take(raw, "description", "", errs, "str", "")
    duration = _take(raw, "duration_s", "", errs, "number")
    rate_scale = _take(raw, "rate_scale", "", errs, "number", 1.0)
    seed = _take(raw, "seed", "", errs, "int", 0)
    defaults = _take(raw, "defaults", "", errs, "mapping", {}) or {}
    _unknown(defaults, {"interval_s", "burst", "channel"}, "defaults", errs)
    for k, kind in (("interval_s", "number"), ("burst", "int"), ("channel", "str")):
        if k in defaults:
            _take(defaults, k, "defaults", errs, kind)
    phases_raw = _take(raw, "phases", "", errs, "list") or []
    if rate_scale is not None and not rate_scale > 0:
        errs.add("rate_scale", f"must be > 0 (got {rate_scale})")
    if duration is not None and not duration > 0:
        errs.add("duration_s", f"must be > 0 (got {duration})")
    if "phases" in raw and not phases_raw:
        errs.add("phases", "must list at least one phase")

    phases: list[Phase] = []
    groups_seen: set[str] = set()
    active: dict[str, int] = {}            # group -> members on
    prev_at: float | None = None
    for i, ph in enumerate(phases_raw):
        path = f"phases[{i}]"
        if not isinstance(ph, dict):
            errs.add(path, f"expected a mapping, got {ph!r}")
            continue
        _unknown(ph, {"at_s", "add", "remove", "note"}, path, errs)
        at = _take(ph, "at_s", path, errs, "number")
        note = _take(ph, "note", path, errs, "str", "")
        adds_raw = _take(ph, "add", path, errs, "list", []) or []
        rms_raw = _take(ph, "remove", path, errs, "list", []) or []
        if not adds_raw and not rms_raw and "add" not in ph and "remove" not in ph:
            errs.add(path, "needs add and/or remove")
        if at is not None:
            if at < 0:
                errs.add(f"{path}.at_s", f"must be >= 0 (got {at})")
            elif prev_at is not None and at < prev_at:
                errs.add(f"{path}.at_s", f"must be >= previous phase ({prev_at:g})")
            elif duration is not None and at >= duration:
                errs.add(f"{path}.at_s", f"must be < duration_s ({duration:g})")
            prev_at = at if prev_at is None or at >= prev_at else prev_at
        removes = []
        for j, r in enumerate(rms_raw):
            rpath = f"{path}.remove[{j}]"
            rm = _parse_remove(r, rpath, errs)
            if rm is None:
                continue
            on = active.get(rm.group, 0)
            if on == 0:
                known = ", ".join(sorted(g for g, n in active.items() if n)) or "none"
                errs.add(rpath, f"group {rm.group!r} has no active DERs (active: {known})")
                continue
            if rm.count is not None and rm.count > on:
                errs.add(f"{rpath}.count", f"{rm.count} above the {on} active in {rm.group!r}")
                continue
            active[rm.group] = on - (rm.count if rm.count is not None else on)
            removes.append(rm)
        adds = []
        for j, a in enumerate(adds_raw):
            apath = f"{path}.add[{j}]"
            ga = _parse_add(a, apath, defaults, errs)
            if ga is None:
                continue
            if ga.group in groups_seen:
                errs.add(f"{apath}.group", f"{ga.group!r} already used (group names are unique "
                                           "in a scenario)")
                continue
            groups_seen.add(ga.group)
            active[ga.group] = ga.count
            adds.append(ga)
        phases.append(Phase(float(at) if at is not None else 0.0, tuple(adds), tuple(removes),
                            note or ""))

    if errs.items:
        raise ScenarioError(source, errs.items)
    return Scenario(name=name, duration_s=float(duration), phases=tuple(phases),
                    description=description or "", rate_scale=float(rate_scale), seed=seed,
                    source=source)


def scenario_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A path as given, or a shipped scenario by name (``queue_level``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return p
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def load_scenario(name_or_path: str | os.PathLike[str]) -> Scenario:
    src = scenario_path(name_or_path)
    try:
        text = src.read_text()
    except OSError as e:
        shipped = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise ScenarioError(str(src), [f"(file): cannot read: {e.strerror} "
                                       f"(shipped scenarios: {shipped})"]) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(str(src), [f"(file): not valid YAML: {e}"]) from e
    return parse_scenario(raw, str(src))


def shipped_scenarios() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
