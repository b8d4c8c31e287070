"""sensors_sim.filter: deadband, heartbeat, duplicates, counters, and seq after filtering."""

from __future__ import annotations

from itertools import pairwise

import pytest

from ingest import schema
from sensors_sim.filter import Filter, FilterConfig
from sensors_sim.models import BatteryConfig, Site, make_der

BASE = {
    "schema_version": 1, "der_id": "bat-000001", "der_type": "battery", "site_id": "site-0001",
    "ts_ms": 1_750_000_000_000, "seq": -1, "quality": "good", "p_w": 1000.0, "q_var": 0.0,
    "v_v": 230.0, "i_a": 1.5, "f_hz": 50.0, "e_wh": 100, "e_imp_wh": 50, "t_c": 20.0,
    "soc_pct": 50.0, "soh_pct": 98.0, "p_max_chg_w": 5000.0, "p_max_dis_w": 5000.0,
}


def at(s: float, **changes) -> dict:
    return {**BASE, "ts_ms": BASE["ts_ms"] + int(s * 1000), **changes}


def test_deadband_suppresses_small_changes_against_the_last_sent_reading():
    f = Filter(FilterConfig(max_silence_s=60.0))
    assert f.offer(at(0))
    assert not f.offer(at(10, p_w=1030.0))             # within 50 W
    assert not f.offer(at(20, p_w=1045.0, e_wh=105))   # registers are not compared
    assert f.offer(at(30, p_w=1060.0))                 # 60 W from the last *sent* (1000)
    assert not f.offer(at(40, p_w=1020.0))             # 40 W from 1060
    assert f.stats() == {"passed": 2, "suppressed_deadband": 3, "dropped_duplicate": 0,
                         "heartbeats": 0}


def test_heartbeat_after_max_silence_even_without_change():
    f = Filter(FilterConfig(max_silence_s=60.0))
    sent = [s for s in range(0, 200, 10) if f.offer(at(s))]
    assert sent == [0, 60, 120, 180]
    assert f.stats()["heartbeats"] == 3
    assert f.stats()["suppressed_deadband"] == 16


def test_quality_strings_bools_and_field_sets_always_pass():
    f = Filter()
    assert f.offer(at(0))
    assert f.offer(at(10, quality="suspect"))
    assert f.offer(at(20, quality="suspect", v_v=230.0, p_w=1000.0, soc_pct=50.1, t_c=20.1)) \
        is False
    ev = {**BASE, "der_id": "ev-1", "der_type": "ev_charger", "connector_status": "Available"}
    assert f.offer(ev)
    assert f.offer({**ev, "ts_ms": ev["ts_ms"] + 10_000, "connector_status": "Preparing"})
    assert f.offer({**ev, "ts_ms": ev["ts_ms"] + 20_000, "connector_status": "Preparing",
                    "session_id": "ev-1-1", "session_wh": 0.0})


def test_exact_duplicates_are_dropped_and_counted():
    f = Filter(FilterConfig(deadband=False))
    r = at(0)
    assert f.offer(r)
    assert not f.offer(dict(r))                        # retransmission
    assert not f.offer({**r, "seq": 5})                # seq is not content
    assert f.offer(at(0, p_w=999.0))                   # same time, new content: a correction
    assert f.offer(at(10))                             # no deadband configured
    assert f.stats()["dropped_duplicate"] == 2 and f.stats()["passed"] == 3


def test_filters_are_per_der():
    f = Filter()
    assert f.offer(at(0))
    assert f.offer({**at(1), "der_id": "bat-000002"})
    assert not f.offer(at(2))
    f.forget("bat-000001")
    assert f.offer(at(3))


def test_seq_is_assigned_after_filtering_so_it_has_no_gaps():
    der = make_der("battery", "bat-000003", Site("site-0001"), seed=1,
                   config=BatteryConfig(schedule=()))             # idle: almost constant
    f = Filter(FilterConfig(max_silence_s=60.0))
    start = 1_750_000_000_000
    out = [r for k in range(360) if (r := der.read(start + 10_000 * k, f)) is not None]
    assert [r["seq"] for r in out] == list(range(len(out)))
    assert 50 <= len(out) <= 120                      # ~1 per minute of 1 per 10 s
    gaps = [(b["ts_ms"] - a["ts_ms"]) / 1000 for a, b in pairwise(out)]
    assert max(gaps) <= 60
    st = f.stats()
    assert st["passed"] == len(out) and st["passed"] + st["suppressed_deadband"] == 360
    assert all(schema.validate(r).ok for r in out)


def test_config_is_validated():
    with pytest.raises(ValueError, match=r"FilterConfig.max_silence_s: must be > 0"):
        FilterConfig(max_silence_s=0)
    with pytest.raises(ValueError, match=r"FilterConfig.deadbands.p_w: must be a number >= 0"):
        FilterConfig(deadbands={"p_w": -1})
