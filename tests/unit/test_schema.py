"""ingest.schema: wire format, the validator's reasons, and the views for Spark and the docs."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from ingest import schema, schema_doc

PV = {
    "schema_version": 1, "der_id": "pv-000123", "der_type": "pv", "site_id": "site-0012",
    "ts_ms": 1_750_521_600_000, "seq": 7, "quality": "good", "p_w": 8234.5, "q_var": -120.3,
    "v_v": 231.4, "i_a": 11.87, "f_hz": 50.012, "e_wh": 12_345_678, "t_c": 38.2,
    "irr_wm2": 812.3, "t_mod_c": 45.1, "dc_w": 8577.6,
}
EV = {
    "schema_version": 1, "der_id": "ev-000042", "der_type": "ev_charger", "site_id": "site-0007",
    "ts_ms": 1_750_521_600_000, "seq": 0, "quality": "good", "p_w": -10987.2, "q_var": -549.4,
    "v_v": 229.1, "i_a": 16.0, "f_hz": 49.987, "e_wh": 0, "e_imp_wh": 2_824_924, "t_c": 31.5,
    "connector_status": "Charging", "session_id": "ev-000042-17", "session_wh": 5321.4,
    "i_offered_a": 32.0,
}
DIESEL = {
    "schema_version": 1, "der_id": "dg-000001", "der_type": "diesel", "site_id": "site-0001",
    "ts_ms": 1_750_521_600_000, "seq": 3, "quality": "good", "p_w": 0.0, "q_var": 0.0,
    "v_v": 230.2, "i_a": 0.0, "f_hz": 50.0, "e_wh": 100, "e_imp_wh": 5, "t_c": 20.0,
    "fuel_pct": 55.0, "fuel_lph": 0.0, "running": False,
}
BATTERY = {
    "schema_version": 1, "der_id": "bat-000001", "der_type": "battery", "site_id": "site-0001",
    "ts_ms": 1_750_521_600_000, "seq": 3, "quality": "suspect", "p_w": -2500.0, "q_var": 10.0,
    "v_v": 230.2, "i_a": 3.6, "f_hz": 50.0, "e_wh": 100, "e_imp_wh": 5, "t_c": 20.0,
    "soc_pct": 55.0, "soh_pct": 97.5, "e_cap_wh": 9750.0, "p_max_chg_w": 5000.0,
    "p_max_dis_w": 5000.0,
}


def _with(base: dict, **changes) -> bytes:
    d = dict(base)
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


_DROP = object()


def test_encode_is_compact_canonical_and_round_trips():
    shuffled = dict(reversed(list(PV.items())))
    body = schema.encode(shuffled)
    assert body == schema.encode(PV)
    assert list(json.loads(body)) == list(PV)            # envelope first, then table order
    assert b" " not in body
    assert 150 <= len(body) <= 300
    assert schema.decode(body) == PV
    res = schema.validate(body)
    assert res.ok and res.reason is None
    assert res.reading.to_dict() == PV
    assert schema.encode(res.reading) == body


@pytest.mark.parametrize("reading", [PV, EV, DIESEL, BATTERY])
def test_valid_readings_of_each_shape(reading):
    res = schema.validate(schema.encode(reading))
    assert res, res.reason
    assert res.reading.der_type == reading["der_type"]


def test_encode_refuses_nan_because_it_is_not_json():
    with pytest.raises(ValueError):
        schema.encode({**PV, "p_w": math.nan})


# (case id, payload, exact reason). Every malformed case must get its own reason.
MALFORMED = [
    ("not-json", b"hello", "not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("not-utf8", b'{"a": "\xff"}', None),
    ("array", b"[1, 2]", "not a JSON object: got array"),
    ("too-large", b"{" + b" " * 5000 + b"}", "too large: 5002 bytes above max 4096"),
    ("nan-literal", _with(PV).replace(b"8234.5", b"NaN"), "not JSON: NaN is not a JSON number"),
    ("version-missing", _with(PV, schema_version=_DROP), "schema_version: missing"),
    ("version-string", _with(PV, schema_version="1"),
     "schema_version: not an integer (got string '1')"),
    ("version-2", _with(PV, schema_version=2), "schema_version: 2 not supported (supported: 1)"),
    ("type-missing", _with(PV, der_type=_DROP), "der_type: missing"),
    ("type-number", _with(PV, der_type=5), "der_type: not a string (got number 5)"),
    ("type-unknown", _with(PV, der_type="nuclear"),
     "der_type: unknown 'nuclear' (expected one of pv, wind, hydro, battery, ev_charger, "
     "diesel)"),
    ("id-missing", _with(PV, der_id=_DROP), "der_id: missing"),
    ("id-empty", _with(PV, der_id=""), f"der_id: '' does not match {schema.ID_PATTERN}"),
    ("id-space", _with(PV, der_id="pv 1"), f"der_id: 'pv 1' does not match {schema.ID_PATTERN}"),
    ("site-number", _with(PV, site_id=12), "site_id: not a string (got number 12)"),
    ("ts-float", _with(PV, ts_ms=1.5e12), "ts_ms: not an integer (got number 1.5e+12)"),
    ("ts-string", _with(PV, ts_ms="now"), "ts_ms: not an integer (got string 'now')"),
    ("ts-seconds", _with(PV, ts_ms=1_750_521_600),
     "ts_ms: 1750521600 below min 946684800000 for der_type pv"),
    ("ts-null", _with(PV, ts_ms=None), "ts_ms: null"),
    ("seq-missing", _with(PV, seq=_DROP), "seq: missing"),
    ("seq-negative", _with(PV, seq=-1), "seq: -1 below min 0 for der_type pv"),
    ("seq-bool", _with(PV, seq=True), "seq: not an integer (got boolean True)"),
    ("quality-unknown", _with(PV, quality="meh"),
     "quality: unknown 'meh' (expected one of bad, good, suspect)"),
    ("p-huge", _with(PV, p_w=1.2e9), "p_w: 1.2e+09 above max 5e+06 for der_type pv"),
    ("p-negative", _with(PV, p_w=-2e4), "p_w: -20000 below min -10000 for der_type pv"),
    ("p-string", _with(PV, p_w="big"), "p_w: not a number (got string 'big')"),
    ("p-null", _with(PV, p_w=None), "p_w: null"),
    ("v-missing", _with(PV, v_v=_DROP), "v_v: missing"),
    ("f-zero", _with(PV, f_hz=0), "f_hz: 0 below min 45 for der_type pv"),
    ("e-float", _with(PV, e_wh=12.5), "e_wh: not an integer (got number 12.5)"),
    ("irr-high", _with(PV, irr_wm2=2000.0), "irr_wm2: 2000 above max 1600 for der_type pv"),
    ("foreign-field", _with(PV, wind_ms=3.0), "wind_ms: not a field of der_type pv (only wind)"),
    ("unknown-field", _with(PV, foo=1), "foo: unknown field"),
    ("soc-high", _with(BATTERY, soc_pct=101.0), "soc_pct: 101 above max 100 for der_type battery"),
    ("e-imp-missing", _with(BATTERY, e_imp_wh=_DROP), "e_imp_wh: missing"),
    ("status-unknown", _with(EV, connector_status="Idle"),
     "connector_status: unknown 'Idle' (expected one of Available, Charging, Faulted, "
     "Finishing, Preparing, Reserved, SuspendedEV, SuspendedEVSE, Unavailable)"),
    ("session-missing", _with(EV, session_id=_DROP, session_wh=_DROP),
     "session_id: missing while connector_status is Charging"),
    ("session-stale", _with(EV, connector_status="Available"),
     "session_id: present while connector_status is Available"),
    ("session-wh-missing", _with(EV, session_wh=_DROP),
     "session_wh: missing while session_id is present"),
    ("session-wh-orphan", _with(EV, connector_status="Available", session_id=_DROP),
     "session_wh: present without session_id"),
    ("running-string", _with(DIESEL, running="yes"), "running: not a boolean (got string 'yes')"),
    ("stopped-exporting", _with(DIESEL, p_w=5000.0), "p_w: 5000 > 0 while running is false"),
    ("stopped-burning", _with(DIESEL, fuel_lph=3.2), "fuel_lph: 3.2 > 0 while running is false"),
]


@pytest.mark.parametrize(("payload", "reason"), [(p, r) for _, p, r in MALFORMED],
                         ids=[c for c, _, _ in MALFORMED])
def test_each_malformed_case_is_rejected_with_its_reason(payload, reason):
    res = schema.validate(payload)
    assert not res.ok and res.reading is None
    if reason is None:
        assert res.reason.startswith("not UTF-8: ")
    else:
        assert res.reason == reason
    if res.field is not None:
        assert res.reason.startswith(res.field + ": ")


def test_malformed_reasons_are_distinct():
    reasons = [schema.validate(p).reason for _, p, _ in MALFORMED]
    assert len(set(reasons)) == len(reasons)


def test_validate_accepts_mappings_and_checks_finiteness_there():
    assert schema.validate(PV).ok
    res = schema.validate({**PV, "p_w": math.inf})
    assert res.reason == "p_w: not finite (inf)"


def test_optional_field_may_be_absent_or_null():
    no_dc = {k: v for k, v in PV.items() if k != "dc_w"}
    assert schema.validate(no_dc).ok
    res = schema.validate({**PV, "dc_w": None})
    assert res.ok and "dc_w" not in res.reading.values


def test_ints_are_accepted_where_floats_are_expected_but_bools_are_not():
    assert schema.validate({**PV, "p_w": 8234}).ok
    assert schema.validate({**PV, "p_w": True}).reason == "p_w: not a number (got boolean True)"


def test_field_specs_are_plain_json_data():
    specs = schema.field_specs()
    json.dumps(specs)
    names = [s["name"] for s in specs]
    assert names == [f.name for f in schema.FIELDS]
    assert len(set(names)) == len(names)
    by = {s["name"]: s for s in specs}
    assert by["p_w"]["ranges"]["pv"] == [-1e4, 5e6]
    assert by["p_w"]["standards"]["sunspec"] == "701.W"
    assert by["soc_pct"]["der_types"] == ["battery"]
    for s in specs:
        if not s["envelope"] and s["kind"] in ("float", "int"):
            assert s["unit"], f"{s['name']} has no unit"
            assert all(lo is not None and hi is not None for lo, hi in s["ranges"].values())


def test_fields_for_every_type_start_with_the_envelope():
    for t in schema.DER_TYPES:
        names = [f.name for f in schema.fields_for(t)]
        assert tuple(names[:len(schema.ENVELOPE_NAMES)]) == schema.ENVELOPE_NAMES
        assert {"p_w", "q_var", "v_v", "i_a", "f_hz", "e_wh", "t_c"} <= set(names)
    with pytest.raises(ValueError, match="der_type: unknown 'nuclear'"):
        schema.fields_for("nuclear")


def test_spark_schema_is_the_union_of_all_fields():
    T = pytest.importorskip("pyspark.sql.types")
    st = schema.spark_schema()
    assert [f.name for f in st.fields] == [f.name for f in schema.FIELDS]
    by = {f.name: f for f in st.fields}
    assert isinstance(by["ts_ms"].dataType, T.LongType) and not by["ts_ms"].nullable
    assert isinstance(by["p_w"].dataType, T.DoubleType) and by["p_w"].nullable
    assert isinstance(by["running"].dataType, T.BooleanType)


# SQL checks on typed columns, run on sqlite (no JVM in unit tests; the same expressions were
# checked on Spark 4.3 by hand). Type errors are out of SQL's reach by design.
SQL_CASES = [
    ("valid-pv", PV, None),
    ("valid-ev", EV, None),
    ("valid-diesel", DIESEL, None),
    ("valid-battery", BATTERY, None),
    ("p-huge", {**PV, "p_w": 1.2e9}, "p_w"),
    ("seq-missing", {k: v for k, v in PV.items() if k != "seq"}, "seq"),
    ("version-2", {**PV, "schema_version": 2}, "schema_version"),
    ("type-unknown", {**PV, "der_type": "nuclear"}, "der_type"),
    ("foreign-field", {**PV, "wind_ms": 3.0}, "wind_ms"),
    ("quality-unknown", {**PV, "quality": "meh"}, "quality"),
    ("soc-high", {**BATTERY, "soc_pct": 101.0}, "soc_pct"),
    ("e-imp-missing", {k: v for k, v in BATTERY.items() if k != "e_imp_wh"}, "e_imp_wh"),
    ("session-missing", {k: v for k, v in EV.items() if k not in ("session_id", "session_wh")},
     "session_id"),
    ("session-stale", {**EV, "connector_status": "Available"}, "session_id"),
    ("stopped-exporting", {**DIESEL, "p_w": 5000.0}, "p_w"),
    ("stopped-burning", {**DIESEL, "fuel_lph": 3.2}, "fuel_lph"),
]


def test_sql_checks_agree_with_validate():
    cols = [f.name for f in schema.FIELDS]
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE r (case_id TEXT, {', '.join(cols)})")
    for case_id, row, _ in SQL_CASES:
        db.execute(f"INSERT INTO r VALUES (?, {', '.join('?' * len(cols))})",
                   [case_id, *[row.get(c) for c in cols]])
    reason = schema.sql_reject_reason("sqlite")
    got = dict(db.execute(f"SELECT case_id, {reason} FROM r").fetchall())
    preds = " AND ".join(c.predicate for c in schema.sql_checks("sqlite"))
    valid = {r[0] for r in db.execute(f"SELECT case_id FROM r WHERE {preds}")}
    for case_id, row, fld in SQL_CASES:
        py = schema.validate(row)
        if fld is None:
            assert py.ok and got[case_id] is None and case_id in valid, (case_id, got[case_id])
        else:
            assert py.field == fld, (case_id, py.reason)
            assert got[case_id] is not None and got[case_id].startswith(fld + ": "), \
                (case_id, got[case_id])
            assert case_id not in valid


def test_doc_is_generated_from_the_code_and_up_to_date():
    assert schema_doc.DOC_PATH.read_text() == schema_doc.render(), \
        "docs/telemetry-schema.md is stale: run python -m ingest.schema_doc"
    text = schema_doc.DOC_PATH.read_text()
    for f in schema.FIELDS:
        assert f"`{f.name}`" in text
    assert schema.validate(schema_doc.EXAMPLE).ok
    assert schema.validate(schema_doc.EXAMPLE_EV).ok
