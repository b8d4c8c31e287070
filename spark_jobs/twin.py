"""Per-DER digital twin: the latest state of each DER, kept in Spark state (one group per DER).

The fold is pure (dicts in, dict out) and unit-tested; :func:`update_twin` adapts it to
``applyInPandasWithState``. A group's processing-time timeout marks a DER *stale* when it goes
quiet for ``stale_after_s``; the next reading makes it live again.

Health: ``stale`` (no reading for stale_after_s) > ``bad`` (device says its measurements are
invalid) > ``suspect`` (device doubts them, e.g. a frozen value) > ``ok``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

TWIN_VALUES = ("p_w", "q_var", "v_v", "f_hz", "e_wh", "t_c", "soc_pct", "e_cap_wh",
               "p_max_chg_w", "p_max_dis_w", "fuel_pct")
STATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("der_type", "string"), ("site_id", "string"), ("last_seq", "bigint"),
    ("last_ts_ms", "bigint"), ("readings", "bigint"), ("quality", "string"),
    ("health", "string"),
    *((name, "double") for name in TWIN_VALUES),
    ("running", "boolean"), ("connector_status", "string"),
)
OUTPUT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("der_id", "string"), *STATE_COLUMNS, ("prev_health", "string"), ("updated_ms", "bigint"),
    ("latency_ms", "bigint"),
)
HEALTH_RANK = {"ok": 0, "suspect": 1, "bad": 2, "stale": 3}


def ddl(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{n} {t}" for n, t in columns)


def health_of(quality: str) -> str:
    return {"bad": "bad", "suspect": "suspect"}.get(quality, "ok")


def _clean(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def fold(state: dict[str, Any] | None, readings: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Apply readings (any order, duplicates allowed) to a DER's state. A reading older than the
    state (lower seq) only counts; the newest reading by seq sets the values."""
    st = dict(state) if state else None
    for r in sorted(readings, key=lambda r: int(r["seq"])):
        seq = int(r["seq"])
        if st is None:
            st = {name: None for name, _ in STATE_COLUMNS}
            st.update(last_seq=-1, readings=0)
        if seq <= st["last_seq"]:
            continue  # duplicate or out of date: the twin already reflects something newer
        st["readings"] += 1
        st["last_seq"] = seq
        st["last_ts_ms"] = int(r["ts_ms"])
        st["der_type"] = r["der_type"]
        st["site_id"] = r["site_id"]
        st["quality"] = r["quality"]
        st["health"] = health_of(r["quality"])
        for name in TWIN_VALUES:
            v = _clean(r.get(name))
            if v is not None or st.get(name) is None:
                st[name] = None if v is None else float(v)
        if _clean(r.get("running")) is not None:
            st["running"] = bool(r["running"])
        if _clean(r.get("connector_status")) is not None:
            st["connector_status"] = r["connector_status"]
    return st


def update_twin(stale_after_s: float):
    """The ``applyInPandasWithState`` function for one DER group."""
    import pandas as pd

    names = [n for n, _ in STATE_COLUMNS]
    out_names = [n for n, _ in OUTPUT_COLUMNS]

    def func(key: tuple, pdfs: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        (der_id,) = key
        now_ms = int(time.time() * 1000)
        prev = dict(zip(names, state.get, strict=True)) if state.exists else None
        prev_health = prev["health"] if prev else None
        timed_out = state.hasTimedOut
        if timed_out:
            if prev is None or prev_health == "stale":
                return
            new = dict(prev, health="stale")
        else:
            rows: list[dict[str, Any]] = []
            for pdf in pdfs:
                rows.extend(pdf.to_dict("records"))
            try:
                new = fold(prev, rows)
            except (TypeError, ValueError) as exc:
                sample = {k: rows[0].get(k) for k in list(rows[0])[:14]} if rows else {}
                raise ValueError(f"twin {der_id}: cannot fold {len(rows)} rows ({exc}); "
                                 f"first row: {sample}") from exc
            if new is None:
                return
        state.update(tuple(new[n] for n in names))
        if not timed_out:  # a stale DER stays stale, silently, until it reports again
            state.setTimeoutDuration(int(stale_after_s * 1000))
        latency = now_ms - new["last_ts_ms"] if new["last_ts_ms"] is not None else None
        row = {"der_id": der_id, **new, "prev_health": prev_health, "updated_ms": now_ms,
               "latency_ms": latency}
        yield pd.DataFrame([[row[n] for n in out_names]], columns=out_names)

    return func
