"""Rewrite measured numbers into autoscaler/model/capacity.yaml in place, comments kept.

Two sweeps measure it: ``make bench-stream`` the processing pool, ``make bench-queue`` the queue
pool. The file has one ``source``; its ``note`` keeps one ``<pool>: <command> (<date>)`` entry
per pool, so writing one pool keeps what the other's sweep wrote."""

from __future__ import annotations

import json
import re

from infra.state import ROOT

CAPACITY_FILE = ROOT / "autoscaler" / "model" / "capacity.yaml"
POOLS = ("processing", "queue")


def _key(section: str, key: str) -> re.Pattern[str]:
    """``section.key``: group 1 up to its value, 2 the value, 3 a trailing comment."""
    return re.compile(rf"(^{section}:\n(?:[ #].*\n|\n)*?  {key}: )([^\n#]*?)(\s*(#.*)?)$", re.M)


def set_key(text: str, section: str, key: str, value: str) -> str:
    """``section.key``'s value replaced (its trailing comment kept); ValueError naming the field
    when the file has no such key."""
    new, n = _key(section, key).subn(lambda m: m.group(1) + value + m.group(3), text, count=1)
    if n != 1:
        raise ValueError(f"capacity.yaml: {section}.{key} not found")
    return new


def _get_key(text: str, section: str, key: str) -> str:
    m = _key(section, key).search(text)
    return m.group(2) if m else ""


def provenance(note: str) -> dict[str, str]:
    """The per-pool entries of a source note ("processing: make ... (2026-12-02); queue: ...")."""
    out = {}
    for part in note.split(";"):
        pool, _, what = part.strip().partition(": ")
        if pool in POOLS and what:
            out[pool] = what
    return out


def update_pool(text: str, pool: str, readings_per_s: float, efficiency: float | None,
                command_line: str, day: str) -> str:
    """capacity.yaml with ``pool``'s measured readings/s (and efficiency, when given) and the
    source saying which sweep measured which pool."""
    if pool not in POOLS:
        raise ValueError(f"capacity.yaml: unknown pool {pool!r}")
    text = set_key(text, pool, "readings_per_s", f"{readings_per_s:.0f}")
    if efficiency is not None:
        text = set_key(text, pool, "scaling_efficiency", f"{efficiency:.2f}")
    raw = _get_key(text, "source", "note")
    try:
        old = provenance(json.loads(raw) if raw.startswith('"') else raw)
    except json.JSONDecodeError:
        old = {}
    old[pool] = f"{command_line} ({day})"
    note = "; ".join(f"{p}: {old.get(p, 'provisional (an estimate)')}" for p in POOLS)
    text = set_key(text, "source", "kind", "measured")
    text = set_key(text, "source", "command", json.dumps(command_line))
    text = set_key(text, "source", "date", day)
    return set_key(text, "source", "note", json.dumps(note))
