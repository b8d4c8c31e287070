"""Typed view of ``diagnoser/rules.yaml``: the improved engine's rules are data, not code.

Loading validates everything up front and raises :class:`RulesError` whose message names every
offending field (``rules[3].for_s: must be > 0``), so a bad rule file fails when the diagnoser
starts, not at 3 a.m. when the rule would first have fired.

Semantics (modelled on Prometheus alerting rules; see ``engine.py``): a rule's ``when`` is a tree
of ``all``/``any`` over *signals*; a signal reduces one metric over the window (``over_time``,
per entity) and across entities (``across``) and compares the result with ``enter`` while the
rule is not latched and with ``exit`` while it is (hysteresis). The condition must hold for
``for_s`` before the rule fires, and the rule keeps firing for ``keep_firing_for_s`` after it
stops holding.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.topology import POOLS
from infra.yamlfile import FieldErrors, read_yaml
from monitor.schema import (
    NODE_FIELDS,
    NODE_MEASUREMENT_BY_POOL,
    QUEUE,
    STREAM_LAG,
    STREAM_PROGRESS,
)

from .labels import RcaLabel

DEFAULT_PATH = Path(__file__).with_name("rules.yaml")

# metric family -> fields. Families map onto monitor.schema measurements:
#   node.*     processing_cluster / queuing_cluster (the rule's pool picks which nodes)
#   queue.*    rabbitmq_queue            stream.*   stream_lag
#   progress.* spark_stream              pool.*     derived from node.* and the active count
# Two derived fields: queue.publish_excess = (publish_rate - deliver_rate) / publish_rate and
# progress.rate_deficit = (input_rate - processed_rate) / input_rate, both per sample.
METRICS: dict[str, tuple[str, ...]] = {
    "node": NODE_FIELDS,
    "queue": (*QUEUE.fields, "publish_excess"),
    "stream": STREAM_LAG.fields,
    "progress": (*STREAM_PROGRESS.fields, "rate_deficit"),
    # Mean pool CPU if one active node were put to sleep: sum of node CPU / (active - 1).
    "pool": ("cpu_after_scale_down",),
}
OVER_TIME = ("last", "mean", "min", "max", "p95", "slope")
ACROSS = ("max", "min", "mean", "sum")
OPS = (">=", "<=")
RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")   # becomes an InfluxDB tag value


class RulesError(ValueError):
    """A rules file is invalid; the message names every offending field."""


@dataclass(frozen=True)
class Signal:
    """``metric`` reduced over the window and compared with a threshold, with hysteresis.

    ``op: ">="`` enters at value >= ``enter`` and holds while value >= ``exit`` (exit <= enter);
    ``op: "<="`` mirrors it (exit >= enter). ``missing`` is the signal's truth when the window
    holds no data for the metric: false by default, so no rule fires on silence.
    """

    metric: str
    op: str
    enter: float
    exit: float
    over_time: str = "mean"
    across: str = "max"
    pool: str | None = None
    missing: bool = False

    @property
    def family(self) -> str:
        return self.metric.split(".", 1)[0]

    @property
    def field(self) -> str:
        return self.metric.split(".", 1)[1]


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


Condition = Signal | AllOf | AnyOf


@dataclass(frozen=True)
class Rule:
    id: str
    label: RcaLabel
    for_s: float
    keep_firing_for_s: float
    when: Condition
    unless: tuple[str, ...] = ()
    description: str = ""

    @property
    def pool(self) -> str:
        pool = self.label.pool
        assert pool is not None   # the loader refuses label `none`
        return pool


@dataclass(frozen=True)
class EngineSettings:
    # What the service queries and how often it evaluates: every rule reads the last window_s
    # seconds, every interval_s seconds.
    window_s: float = 60.0
    interval_s: float = 10.0
    # Longer than this between two evaluations and no for_s clock can claim continuity.
    max_gap_s: float = 90.0
    # After a pool's active count changes, its rules are held quiet this long (see engine.py);
    # at least window_s, so no sample from before the change is judged again.
    cooldown_s: float = 90.0


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    settings: EngineSettings = EngineSettings()
    source: Path | None = None

    def inputs(self) -> dict[str, tuple[str, ...]]:
        """measurement -> fields the rules read (plus those ``build_window`` requires), for the
        service's queries over the last ``settings.window_s`` seconds."""
        return inputs(self.rules)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"unknown rule {rule_id!r}; known: {', '.join(r.id for r in self.rules)}")


# Derived fields and the schema fields they are computed from.
_DERIVED_FROM = {
    "publish_excess": ("publish_rate", "deliver_rate"),
    "rate_deficit": ("input_rate", "processed_rate"),
    "cpu_after_scale_down": ("cpu",),
}
# Fields build_window refuses a point without (see window._INPUTS).
_REQUIRED = {"node": ("cpu", "memory"), "queue": ("messages",), "stream": ("lag",),
             "progress": ("input_rate", "processed_rate")}


def _signals(cond: Condition) -> list[Signal]:
    if isinstance(cond, Signal):
        return [cond]
    return [s for c in cond.items for s in _signals(c)]


def inputs(rules: tuple[Rule, ...]) -> dict[str, tuple[str, ...]]:
    wanted: dict[str, set[str]] = {}
    for rule in rules:
        for sig in _signals(rule.when):
            family = "node" if sig.family == "pool" else sig.family
            if family == "node":
                name = NODE_MEASUREMENT_BY_POOL[sig.pool or rule.pool].name
            else:
                name = {"queue": QUEUE, "stream": STREAM_LAG,
                        "progress": STREAM_PROGRESS}[family].name
            fields = wanted.setdefault(name, set(_REQUIRED[family]))
            fields.update(_DERIVED_FROM.get(sig.field, (sig.field,)))
    return {name: tuple(sorted(f)) for name, f in sorted(wanted.items())}


# ---------------------------------------------------------------------------------------------
# loading and validation




def _unknown_keys(raw: dict[str, Any], allowed: set[str], path: str, errs: FieldErrors) -> None:
    for key in raw:
        if key not in allowed:
            errs.add(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _number(raw: dict[str, Any], key: str, path: str, errs: FieldErrors,
            default: float | None = None) -> float | None:
    if key not in raw:
        if default is None:
            errs.add(f"{path}.{key}", "required field is missing")
        return default
    value = raw[key]
    # bool is an int subclass; `for_s: yes` is a typo, not 1 s.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errs.add(f"{path}.{key}", f"expected a finite number, got {value!r}")
        return None
    return float(value)


def _choice(raw: dict[str, Any], key: str, path: str, errs: FieldErrors, allowed: tuple[str, ...],
            default: str | None = None) -> str | None:
    if key not in raw:
        if default is None:
            errs.add(f"{path}.{key}", "required field is missing")
        return default
    value = raw[key]
    if value not in allowed:
        errs.add(f"{path}.{key}", f"must be one of {', '.join(allowed)}, got {value!r}")
        return None
    return value


def _parse_signal(raw: dict[str, Any], path: str, errs: FieldErrors) -> Signal | None:
    _unknown_keys(raw, {"metric", "op", "enter", "exit", "over_time", "across", "pool",
                        "missing"}, path, errs)
    metric = raw.get("metric")
    family, _, fname = metric.partition(".") if isinstance(metric, str) else ("", "", "")
    if family not in METRICS or fname not in METRICS[family]:
        known = ", ".join(f"{f}.{x}" for f, xs in METRICS.items() for x in xs)
        errs.add(f"{path}.metric", f"unknown metric {metric!r} (known: {known})")
        metric = None
    op = _choice(raw, "op", path, errs, OPS)
    enter = _number(raw, "enter", path, errs)
    # No exit means no hysteresis: the rule holds exactly as long as it would enter.
    exit_ = _number(raw, "exit", path, errs) if "exit" in raw else enter
    over_time = _choice(raw, "over_time", path, errs, OVER_TIME, default="mean")
    across = _choice(raw, "across", path, errs, ACROSS, default="max")
    pool = raw.get("pool")
    if pool is not None:
        if pool not in POOLS:
            errs.add(f"{path}.pool", f"must be one of {', '.join(POOLS)}, got {pool!r}")
        elif family not in ("node", "pool"):
            errs.add(f"{path}.pool", f"only node.* and pool.* metrics belong to a pool, "
                                     f"not {metric}")
    missing = raw.get("missing", False)
    if not isinstance(missing, bool):
        errs.add(f"{path}.missing", f"expected true or false, got {missing!r}")
    if op is not None and enter is not None and exit_ is not None:
        if op == ">=" and exit_ > enter:
            errs.add(f"{path}.exit", f"must be <= enter ({enter:g}) for op >=: the rule enters "
                                     f"at enter and holds until below exit")
        if op == "<=" and exit_ < enter:
            errs.add(f"{path}.exit", f"must be >= enter ({enter:g}) for op <=: the rule enters "
                                     f"at enter and holds until above exit")
    if None in (metric, op, enter, exit_, over_time, across) or not isinstance(missing, bool):
        return None
    return Signal(metric, op, enter, exit_, over_time, across, pool, missing)


def _parse_condition(raw: Any, path: str, errs: FieldErrors, depth: int = 0) -> Condition | None:
    if not isinstance(raw, dict):
        errs.add(path, f"expected a mapping (a signal, or all:/any: a list), got "
                       f"{type(raw).__name__}")
        return None
    if depth > 4:
        errs.add(path, "nested deeper than 4 levels")
        return None
    groups = [k for k in ("all", "any") if k in raw]
    if not groups:
        return _parse_signal(raw, path, errs)
    if len(raw) != 1:
        errs.add(path, "a group has exactly one key, all or any")
        return None
    key = groups[0]
    items = raw[key]
    if not isinstance(items, list) or not items:
        errs.add(f"{path}.{key}", "expected a non-empty list of conditions")
        return None
    parsed = [_parse_condition(item, f"{path}.{key}[{i}]", errs, depth + 1)
              for i, item in enumerate(items)]
    if any(p is None for p in parsed):
        return None
    return (AllOf if key == "all" else AnyOf)(tuple(parsed))  # type: ignore[arg-type]


def _parse_rule(raw: Any, path: str, errs: FieldErrors) -> Rule | None:
    if not isinstance(raw, dict):
        errs.add(path, f"expected a mapping, got {type(raw).__name__}")
        return None
    _unknown_keys(raw, {"id", "label", "description", "for_s", "keep_firing_for_s", "unless",
                        "when"}, path, errs)
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        errs.add(f"{path}.id", f"must be lower-case letters, digits and '_', starting with a "
                               f"letter, got {rule_id!r}")
        rule_id = None
    actionable = tuple(lb.tag for lb in RcaLabel if lb is not RcaLabel.NO_ACTION)
    label_tag = _choice(raw, "label", path, errs, actionable)
    for_s = _number(raw, "for_s", path, errs)
    if for_s is not None and for_s <= 0:
        # for_s: 0 would be AutoDiagn's instantaneous rule, which is what this engine replaces.
        errs.add(f"{path}.for_s", f"must be > 0, got {for_s:g}")
        for_s = None
    keep = _number(raw, "keep_firing_for_s", path, errs, default=0.0)
    if keep is not None and keep < 0:
        errs.add(f"{path}.keep_firing_for_s", f"must be >= 0, got {keep:g}")
        keep = None
    unless = raw.get("unless", [])
    if not isinstance(unless, list) or not all(isinstance(u, str) for u in unless):
        errs.add(f"{path}.unless", f"expected a list of rule ids, got {unless!r}")
        unless = None
    description = raw.get("description", "")
    if not isinstance(description, str):
        errs.add(f"{path}.description", "expected a string")
    if "when" not in raw:
        errs.add(f"{path}.when", "required field is missing")
        when = None
    else:
        when = _parse_condition(raw["when"], f"{path}.when", errs)
    if None in (rule_id, label_tag, for_s, keep, unless, when):
        return None
    return Rule(rule_id, RcaLabel.from_tag(label_tag), for_s, keep, when,  # type: ignore[arg-type]
                tuple(unless), description if isinstance(description, str) else "")


def parse_rules(raw: Any, source: Path | str = DEFAULT_PATH) -> RuleSet:
    errs = FieldErrors("rules", RulesError)
    if not isinstance(raw, dict):
        errs.add("rules_file", f"expected a mapping, got {type(raw).__name__}")
        errs.raise_if_any(source)
    _unknown_keys(raw, {"version", "engine", "rules"}, "rules_file", errs)
    if raw.get("version") != 1:
        errs.add("version", f"must be 1, got {raw.get('version')!r}")

    eraw = raw.get("engine", {})
    if not isinstance(eraw, dict):
        errs.add("engine", f"expected a mapping, got {type(eraw).__name__}")
        eraw = {}
    _unknown_keys(eraw, {"window_s", "interval_s", "max_gap_s", "cooldown_s"}, "engine", errs)
    defaults = EngineSettings()
    values: dict[str, float | None] = {
        key: _number(eraw, key, "engine", errs, default=getattr(defaults, key))
        for key in ("window_s", "interval_s", "max_gap_s", "cooldown_s")
    }
    for key in ("window_s", "interval_s", "max_gap_s"):
        value = values[key]
        if value is not None and value <= 0:
            errs.add(f"engine.{key}", f"must be > 0, got {value:g}")
            values[key] = None
    window_s, interval_s = values["window_s"], values["interval_s"]
    max_gap, cooldown = values["max_gap_s"], values["cooldown_s"]
    if window_s is not None and interval_s is not None and interval_s > window_s:
        errs.add("engine.interval_s", f"{interval_s:g} is longer than window_s {window_s:g}: "
                                      f"samples between windows would never be read")
    if max_gap is not None and interval_s is not None and max_gap <= interval_s:
        errs.add("engine.max_gap_s", f"must be > interval_s ({interval_s:g}), or every "
                                     f"evaluation restarts the clocks")
    if cooldown is not None and window_s is not None and cooldown < window_s:
        errs.add("engine.cooldown_s", f"must be >= window_s ({window_s:g}): a shorter cooldown "
                                      f"judges samples taken before the scale again")

    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        errs.add("rules", "expected a non-empty list of rules")
        rules_raw = []
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, body in enumerate(rules_raw):
        rule = _parse_rule(body, f"rules[{i}]", errs)
        if rule is None:
            continue
        if rule.id in seen:
            errs.add(f"rules[{i}].id", f"duplicate id {rule.id!r}, already rules[{seen[rule.id]}]")
            continue
        seen[rule.id] = i
        rules.append(rule)
    for rule in rules:
        i = seen[rule.id]
        for j, other in enumerate(rule.unless):
            if other == rule.id:
                errs.add(f"rules[{i}].unless[{j}]", "a rule cannot be suppressed by itself")
            elif other not in seen and len(rules) == len(rules_raw):
                errs.add(f"rules[{i}].unless[{j}]", f"unknown rule id {other!r}")

    errs.raise_if_any(source)
    settings = EngineSettings(**{k: v for k, v in values.items() if v is not None})
    return RuleSet(tuple(rules), settings, Path(source) if source else None)


def rules_path() -> Path:
    return Path(os.environ.get("VPP_DIAGNOSER_RULES") or DEFAULT_PATH)


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleSet:
    """Rules from ``path``, else ``$VPP_DIAGNOSER_RULES``, else ``diagnoser/rules.yaml``."""
    src = Path(path) if path is not None else rules_path()
    return parse_rules(read_yaml(src, "rules", RulesError), src)
