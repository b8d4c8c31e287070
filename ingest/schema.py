"""The one telemetry definition: field table, wire encoding and validator for DER readings.

Producer (``sensors_sim``), the Python validator and the Spark parser all derive from the
:data:`FIELDS` table below, so a field added, renamed or re-ranged here changes every consumer at
once and ``docs/telemetry-schema.md`` (generated from this table) says so.

Wire format: one flat JSON object per reading, UTF-8, compact separators, keys in a canonical
order (envelope first, then the type's measurements in table order). Flat and short-keyed because
the fleet sends ~1,000 readings/s through one broker and every byte is paid for by the queue
cluster; a typical reading is 200–300 bytes. Key names carry their unit as suffix (``p_w``,
``soc_pct``) so a reader never has to look the unit up.

Schema version 1 is *closed*: an unknown key is rejected, so adding even an optional field means
``SCHEMA_VERSION = 2`` and a validator that accepts both. That is what makes the reason strings
precise (a misspelt ``p_W`` is reported, not silently dropped).

Sign convention (SunSpec / IEEE 1547): active and reactive power are positive when the DER
exports (injects) into the grid and negative when it imports; a battery discharging and a
generator running report ``p_w > 0``, a charging EV reports ``p_w < 0``.

Sequence numbers: ``seq`` counts the readings a DER actually *published*, from 0, with no gaps.
The producer assigns it after its own filter (deadband, duplicates), and a device that is silent
(dropout) consumes none, so a gap in ``seq`` at the consumer always means loss in transit, and
silence shows up as a gap in ``ts_ms`` instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

DER_TYPES = ("pv", "wind", "hydro", "battery", "ev_charger", "diesel")

# Quality of the measurements in a reading, as the *device* judges them. The three levels are
# the validity levels of IEC 61850-7-3 (good / questionable / invalid) and OPC UA status codes
# (Good / Uncertain / Bad), and map onto IEEE 2030.5 Reading.qualityFlags (valid / questionable).
QUALITIES = ("good", "suspect", "bad")
QUALITY_MEANING = {
    "good": "Measured by the device and passed its own plausibility checks; use as is.",
    "suspect": (
        "Delivered but doubtful: the device detected a possible problem (e.g. a value frozen "
        "for longer than physically plausible, an estimated or substituted value, clock not "
        "synchronised). Keep it, mark it, and prefer other sources in state estimation."
    ),
    "bad": (
        "The device knows the measurements are invalid (sensor failure, meter fault). The "
        "envelope still proves the DER is alive; the measurements must not be used."
    ),
}

# OCPP 1.6 ChargePointStatus (StatusNotification.req). OCPP 2.0.1's ConnectorStatusEnumType is
# coarser: Preparing/Charging/SuspendedEV/SuspendedEVSE/Finishing all map to "Occupied".
CONNECTOR_STATUSES = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)
# Connector states in which a charging session (a transaction) exists.
SESSION_STATUSES = frozenset({"Preparing", "Charging", "SuspendedEVSE", "SuspendedEV", "Finishing"})

# Plausible event-time window: 2000-01-01 .. 2100-01-01 UTC. A ts outside is a unit error
# (seconds or microseconds instead of milliseconds) or an unset device clock.
TS_MIN_MS = 946_684_800_000
TS_MAX_MS = 4_102_444_800_000
MAX_MESSAGE_BYTES = 4096
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"

KINDS = ("float", "int", "str", "bool")


@dataclass(frozen=True)
class FieldSpec:
    """One key of the wire format.

    ``der_types`` are the types whose readings may carry the field, ``required_types`` those
    that must. ``min``/``max`` bound a numeric value for physical plausibility (not the rating
    of one device: the validator does not know it); ``limits`` overrides them per type as
    ``(der_type, min, max)`` triples. ``decimals`` is the resolution the producer rounds to.
    """

    name: str
    kind: str
    unit: str
    description: str
    der_types: tuple[str, ...] = DER_TYPES
    required_types: tuple[str, ...] = DER_TYPES
    envelope: bool = False
    min: float | None = None
    max: float | None = None
    limits: tuple[tuple[str, float, float], ...] = ()
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    decimals: int | None = None
    sunspec: str | None = None
    ieee2030_5: str | None = None
    ocpp: str | None = None
    other: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}.kind: {self.kind!r} not one of {KINDS}")
        if not set(self.required_types) <= set(self.der_types):
            raise ValueError(f"{self.name}.required_types: not a subset of der_types")
        for t, _, _ in self.limits:
            if t not in self.der_types:
                raise ValueError(f"{self.name}.limits: {t!r} not in der_types")

    def range_for(self, der_type: str) -> tuple[float | None, float | None]:
        for t, lo, hi in self.limits:
            if t == der_type:
                return lo, hi
        return self.min, self.max

    def required_for(self, der_type: str) -> bool:
        return der_type in self.required_types


def _common(name: str, kind: str, unit: str, description: str, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, unit, description, **kw)


def _only(types: tuple[str, ...], name: str, kind: str, unit: str, description: str,
          required: bool = True, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, unit, description, der_types=types,
                     required_types=types if required else (), **kw)


# Per-type power limits: generous physical bounds for *small* DERs (≤ 10 MW), so that a
# unit slip (kW sent as W ×1000, or a corrupted register) lands outside.
_P_LIMITS = (
    ("pv", -1e4, 5e6),            # small standby draw at night
    ("wind", -5e4, 5e6),          # yaw/heating draw when idle
    ("hydro", -5e4, 1e7),
    ("battery", -5e6, 5e6),
    ("ev_charger", -1e6, 2.5e5),  # import up to 1 MW (HPC), V2G export up to 250 kW
    ("diesel", -5e4, 5e6),
)
_Q_LIMITS = tuple((t, -max(abs(lo), hi), max(abs(lo), hi)) for t, lo, hi in _P_LIMITS)

PV = ("pv",)
WIND = ("wind",)
HYDRO = ("hydro",)
BATT = ("battery",)
EV = ("ev_charger",)
DIESEL = ("diesel",)

ENVELOPE: tuple[FieldSpec, ...] = (
    FieldSpec("schema_version", "int", "", "Version of this schema the reading follows.",
              envelope=True, min=1, max=max(SUPPORTED_VERSIONS)),
    FieldSpec("der_id", "str", "", "Unique id of the DER, stable across restarts.",
              envelope=True, pattern=ID_PATTERN, sunspec="1.SN (Common model serial number)",
              ieee2030_5="EndDevice.sFDI / DER mRID",
              ocpp="chargePointId (1.6) / stationId+evseId (2.0.1)"),
    FieldSpec("der_type", "str", "", "Kind of DER; selects the measurement fields below.",
              envelope=True, enum=DER_TYPES, ieee2030_5="DERCapability.type (DERType)"),
    FieldSpec("site_id", "str", "", "Point of common coupling (site/meter) the DER sits behind.",
              envelope=True, pattern=ID_PATTERN, ieee2030_5="UsagePoint mRID"),
    FieldSpec("ts_ms", "int", "ms", "Event time: when the values were measured, UTC epoch ms.",
              envelope=True, min=TS_MIN_MS, max=TS_MAX_MS - 1,
              ieee2030_5="Reading.timePeriod.start / DERStatus.readingTime (s)",
              ocpp="MeterValue.timestamp (ISO 8601)"),
    FieldSpec("seq", "int", "", "Per-DER sequence number of published readings, from 0, no "
              "gaps; from 0 again when the DER's gateway restarts (a reading is identified by "
              "der_id, seq and ts_ms).",
              envelope=True, min=0, max=2**63 - 1),
    FieldSpec("quality", "str", "", "Device's judgement of the measurements (see Quality).",
              envelope=True, enum=QUALITIES, ieee2030_5="Reading.qualityFlags",
              other="IEC 61850-7-3 q.validity; OPC UA StatusCode"),
)

MEASUREMENTS: tuple[FieldSpec, ...] = (
    # -- common to every DER: the AC side (SunSpec 701 DERMeasureAC) ----------------------------
    _common("p_w", "float", "W", "Active power, positive = export/discharge.",
            limits=_P_LIMITS, decimals=1, sunspec="701.W", ieee2030_5="ReadingType uom=38 (W)",
            ocpp="Power.Active.Export (minus Power.Active.Import)"),
    _common("q_var", "float", "var", "Reactive power, positive = injected (over-excited).",
            limits=_Q_LIMITS, decimals=1, sunspec="701.Var",
            ieee2030_5="ReadingType uom=63 (var)",
            ocpp="Power.Reactive.Export (minus Power.Reactive.Import)"),
    _common("v_v", "float", "V", "AC voltage line-to-neutral, average of active phases.",
            min=0.0, max=1000.0, decimals=1, sunspec="701.LNV",
            ieee2030_5="ReadingType uom=29 (V)", ocpp="Voltage"),
    _common("i_a", "float", "A", "AC current magnitude per phase, average of active phases.",
            min=0.0, max=10000.0, decimals=2, sunspec="701.A",
            ieee2030_5="ReadingType uom=5 (A)", ocpp="Current.Export / Current.Import"),
    _common("f_hz", "float", "Hz", "Grid frequency at the DER terminals.",
            min=45.0, max=65.0, decimals=3, sunspec="701.Hz",
            ieee2030_5="ReadingType uom=33 (Hz)", ocpp="Frequency"),
    _common("e_wh", "int", "Wh", "Cumulative active energy exported (register, never decreases).",
            min=0, max=10**15, sunspec="701.TotWhInj",
            ieee2030_5="ReadingType uom=72 (Wh), flowDirection=19 (reverse)",
            ocpp="Energy.Active.Export.Register"),
    _common("e_imp_wh", "int", "Wh", "Cumulative active energy imported (register).",
            required_types=("battery", "ev_charger"), min=0, max=10**15,
            sunspec="701.TotWhAbs", ieee2030_5="ReadingType uom=72 (Wh), flowDirection=1",
            ocpp="Energy.Active.Import.Register"),
    _common("t_c", "float", "°C", "Device temperature: inverter cabinet / generator enclosure.",
            min=-40.0, max=120.0, decimals=1, sunspec="701.TmpCab",
            ieee2030_5="ReadingType uom=23 (°C)", ocpp="Temperature"),
    # -- PV --------------------------------------------------------------------------------------
    _only(PV, "irr_wm2", "float", "W/m²", "Plane-of-array irradiance.",
          min=0.0, max=1600.0, decimals=1, sunspec="302.POAI"),
    _only(PV, "t_mod_c", "float", "°C", "Back-of-module temperature.",
          min=-40.0, max=100.0, decimals=1, sunspec="303.TmpBOM"),
    _only(PV, "dc_w", "float", "W", "DC power from the array (inverter input).", required=False,
          min=-1e4, max=6e6, decimals=1, sunspec="714.DCW"),
    # -- wind ------------------------------------------------------------------------------------
    _only(WIND, "wind_ms", "float", "m/s", "Wind speed at hub height (nacelle anemometer).",
          min=0.0, max=75.0, decimals=2, other="IEC 61400-25-2 WNAC.WdSpd"),
    _only(WIND, "rotor_rpm", "float", "rpm", "Rotor speed.",
          min=0.0, max=600.0, decimals=1, other="IEC 61400-25-2 WROT.RotSpd"),
    # -- small hydro (no SunSpec/2030.5/OCPP point exists; IEC 61850-7-410 covers hydro plants) --
    _only(HYDRO, "flow_m3s", "float", "m³/s", "Water flow through the turbine.",
          min=0.0, max=500.0, decimals=3),
    _only(HYDRO, "head_m", "float", "m", "Net head at the turbine.",
          min=0.0, max=2000.0, decimals=2),
    # -- battery (SunSpec 802) -------------------------------------------------------------------
    _only(BATT, "soc_pct", "float", "%", "State of charge, % of usable capacity.",
          min=0.0, max=100.0, decimals=2, sunspec="802.SoC",
          ieee2030_5="DERStatus.stateOfChargeStatus", ocpp="SoC"),
    _only(BATT, "soh_pct", "float", "%", "State of health, % of nameplate capacity left.",
          min=0.0, max=100.0, decimals=2, sunspec="802.SoH"),
    # Usable capacity makes stored energy (soc x capacity) computable by the twin and the VPP
    # aggregate without a side table of nameplates.
    _only(BATT, "e_cap_wh", "float", "Wh", "Usable energy capacity now (nameplate x SoH).",
          min=0.0, max=1e8, decimals=1, sunspec="802.WHRtg (nameplate; here: x SoH)",
          ieee2030_5="DERCapability.rtgWh"),
    _only(BATT, "p_max_chg_w", "float", "W", "Charge power available now (0 when full).",
          min=0.0, max=5e6, decimals=1, sunspec="802.WChaRteMax (nameplate; here: available)",
          ieee2030_5="DERSettings.setMaxChargeRateW"),
    _only(BATT, "p_max_dis_w", "float", "W", "Discharge power available now (0 when empty).",
          min=0.0, max=5e6, decimals=1, sunspec="802.WDisChaRteMax (nameplate; here: available)",
          ieee2030_5="DERSettings.setMaxDischargeRateW"),
    # -- EV charger (OCPP) -----------------------------------------------------------------------
    _only(EV, "connector_status", "str", "", "Connector state.", enum=CONNECTOR_STATUSES,
          ocpp="StatusNotification.status (1.6 ChargePointStatus; 2.0.1 ConnectorStatusEnumType)"),
    _only(EV, "session_id", "str", "", "Charging session; present iff a session is open.",
          required=False, pattern=ID_PATTERN,
          ocpp="transactionId (1.6 StartTransaction.conf; 2.0.1 TransactionEvent)"),
    _only(EV, "session_wh", "float", "Wh", "Energy delivered to the EV in this session.",
          required=False, min=0.0, max=2e5, decimals=1,
          ocpp="Energy.Active.Import.Register minus meterStart"),
    _only(EV, "i_offered_a", "float", "A", "Current the charger offers the EV (smart charging).",
          min=0.0, max=1000.0, decimals=1, ocpp="Current.Offered"),
    # -- diesel genset (no SunSpec genset model; engine data per SAE J1939) ----------------------
    _only(DIESEL, "fuel_pct", "float", "%", "Fuel tank level.",
          min=0.0, max=100.0, decimals=2, other="SAE J1939 SPN 96 (Fuel Level 1)"),
    _only(DIESEL, "fuel_lph", "float", "L/h", "Fuel consumption rate.",
          min=0.0, max=2000.0, decimals=2, other="SAE J1939 SPN 183 (Engine Fuel Rate)"),
    _only(DIESEL, "running", "bool", "", "Engine running (cranking included).",
          ieee2030_5="DERStatus.genConnectStatus bit 2 (operating)"),
)

FIELDS: tuple[FieldSpec, ...] = ENVELOPE + MEASUREMENTS
ENVELOPE_NAMES: tuple[str, ...] = tuple(f.name for f in ENVELOPE)
_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
assert len(_BY_NAME) == len(FIELDS), "duplicate field name"


def fields_for(der_type: str) -> tuple[FieldSpec, ...]:
    """Envelope + the measurements a reading of ``der_type`` may carry, in wire order."""
    if der_type not in DER_TYPES:
        raise ValueError(f"der_type: unknown {der_type!r}")
    return ENVELOPE + tuple(f for f in MEASUREMENTS if der_type in f.der_types)


def measurement_names(der_type: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields_for(der_type) if not f.envelope)


def field_spec(name: str) -> FieldSpec:
    return _BY_NAME[name]


# --------------------------------------------------------------------------------------------
# Reading and wire encoding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """A validated reading: the envelope as attributes, measurements in ``values``."""

    der_id: str
    der_type: str
    site_id: str
    ts_ms: int
    seq: int
    quality: str
    values: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": self.schema_version,
            "der_id": self.der_id,
            "der_type": self.der_type,
            "site_id": self.site_id,
            "ts_ms": self.ts_ms,
            "seq": self.seq,
            "quality": self.quality,
        }
        d.update(self.values)
        return d


# One encoder object: json.dumps with non-default arguments builds a new encoder per call,
# which is a measurable share of a 10,000-DER fleet's CPU.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=True)
_ORDER: dict[str, tuple[str, ...]] = {t: tuple(f.name for f in fields_for(t)) for t in DER_TYPES}


def canonical(reading: Reading | Mapping[str, Any]) -> dict[str, Any]:
    """The reading as a dict in wire key order (unknown keys last, sorted)."""
    d = reading.to_dict() if isinstance(reading, Reading) else reading
    order = _ORDER.get(d.get("der_type"))  # type: ignore[arg-type]
    if order is None:
        return dict(sorted(d.items()))
    out = {k: d[k] for k in order if k in d}
    if len(out) != len(d):
        out.update(sorted((k, v) for k, v in d.items() if k not in out))
    return out


def encode(reading: Reading | Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, keys in canonical order. Does not validate (hot path); NaN/inf raise
    ``ValueError`` because they are not JSON."""
    return _ENCODER.encode(canonical(reading)).encode()


class DecodeError(ValueError):
    """The payload is not a JSON object."""


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"not JSON: {name} is not a JSON number")


def decode(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse one message into a dict; raises :class:`DecodeError` with the reason."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"not UTF-8: {e}") from None
    else:
        text = data
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as e:
        raise DecodeError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"not a JSON object: got {_json_kind(obj)}")
    return obj


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object" if isinstance(v, dict) else type(v).__name__


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Either ``reading`` (valid) or ``reason`` naming the offending ``field`` (None when the
    message as a whole is at fault, e.g. not JSON)."""

    reading: Reading | None = None
    reason: str | None = None
    field: str | None = None

    @property
    def ok(self) -> bool:
        return self.reading is not None

    def __bool__(self) -> bool:
        return self.reading is not None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return repr(v if len(v) <= 40 else v[:40] + "...")
    return repr(v)


def _bad(name: str | None, reason: str) -> ValidationResult:
    return ValidationResult(None, f"{name}: {reason}" if name else reason, name)


# Precompiled per-type tables: (name, kind, required, lo, hi, enum, regex).
_Check = tuple[str, str, bool, float | None, float | None, frozenset[str] | None, Any]
_TABLE: dict[str, tuple[_Check, ...]] = {}
for _t in DER_TYPES:
    _rows = []
    for _f in fields_for(_t):
        if _f.name in ("schema_version", "der_type"):
            continue  # checked first, they select the table
        _lo, _hi = _f.range_for(_t)
        _rows.append((
            _f.name, _f.kind, _f.required_for(_t), _lo, _hi,
            frozenset(_f.enum) if _f.enum else None,
            re.compile(_f.pattern) if _f.pattern else None,
        ))
    _TABLE[_t] = tuple(_rows)
_ALLOWED: dict[str, frozenset[str]] = {t: frozenset(_ORDER[t]) for t in DER_TYPES}
_ANY_TYPE: dict[str, tuple[str, ...]] = {f.name: f.der_types for f in MEASUREMENTS}
_ENVELOPE_SET = frozenset(ENVELOPE_NAMES)


def _check_value(name: str, kind: str, v: Any, lo: Any, hi: Any, enum: Any, rx: Any,
                 der_type: str) -> str | None:
    """Reason string for one present, non-null value, or None if it is fine."""
    if kind == "float":
        if type(v) is not float and type(v) is not int:
            return f"not a number (got {_json_kind(v)} {_fmt(v)})"
        if not math.isfinite(v):
            return f"not finite ({v})"
    elif kind == "int":
        if type(v) is not int:
            return f"not an integer (got {_json_kind(v)} {_fmt(v)})"
    elif kind == "str":
        if type(v) is not str:
            return f"not a string (got {_json_kind(v)} {_fmt(v)})"
        if enum is not None and v not in enum:
            return f"unknown {_fmt(v)} (expected one of {', '.join(sorted(enum))})"
        if rx is not None and not rx.fullmatch(v):
            return f"{_fmt(v)} does not match {rx.pattern}"
        return None
    elif kind == "bool" and type(v) is not bool:
        return f"not a boolean (got {_json_kind(v)} {_fmt(v)})"
    if lo is not None and v < lo:
        return f"{_fmt(v)} below min {_fmt(lo)} for der_type {der_type}"
    if hi is not None and v > hi:
        return f"{_fmt(v)} above max {_fmt(hi)} for der_type {der_type}"
    return None


def validate(payload: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> ValidationResult:
    """Check one message against the schema; never raises on bad input.

    Checks run in a fixed order (size, JSON, version, type, envelope and measurements in table
    order, unknown keys, cross-field rules) and the first failure is reported, so a given
    malformed message always gets the same reason.
    """
    if isinstance(payload, Mapping):
        d = payload
    else:
        if len(payload) > MAX_MESSAGE_BYTES:
            return _bad(None, f"too large: {len(payload)} bytes above max {MAX_MESSAGE_BYTES}")
        try:
            d = decode(payload)
        except DecodeError as e:
            return _bad(None, str(e))

    if "schema_version" not in d:
        return _bad("schema_version", "missing")
    ver = d["schema_version"]
    if type(ver) is not int:
        return _bad("schema_version", f"not an integer (got {_json_kind(ver)} {_fmt(ver)})")
    if ver not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, sorted(SUPPORTED_VERSIONS)))
        return _bad("schema_version", f"{ver} not supported (supported: {supported})")
    if "der_type" not in d:
        return _bad("der_type", "missing")
    der_type = d["der_type"]
    if type(der_type) is not str:
        return _bad("der_type", f"not a string (got {_json_kind(der_type)} {_fmt(der_type)})")
    if der_type not in _TABLE:
        return _bad("der_type", f"unknown {_fmt(der_type)} (expected one of "
                                f"{', '.join(DER_TYPES)})")

    for name, kind, required, lo, hi, enum, rx in _TABLE[der_type]:
        v = d.get(name)
        if v is None:
            if name not in d:
                if required:
                    return _bad(name, "missing")
                continue
            if required:
                return _bad(name, "null")
            continue  # an optional field may be null: same as absent
        reason = _check_value(name, kind, v, lo, hi, enum, rx, der_type)
        if reason is not None:
            return _bad(name, reason)

    allowed = _ALLOWED[der_type]
    if len(d) > len(allowed) or not allowed.issuperset(d):
        for k in d:
            if k not in allowed:
                if k in _ANY_TYPE:
                    return _bad(k, f"not a field of der_type {der_type} "
                                   f"(only {', '.join(_ANY_TYPE[k])})")
                return _bad(k, "unknown field")

    reason_field = _cross_check(der_type, d)
    if reason_field is not None:
        return _bad(reason_field[0], reason_field[1])

    values = {k: v for k, v in d.items() if k not in _ENVELOPE_SET and v is not None}
    return ValidationResult(Reading(
        der_id=d["der_id"], der_type=der_type, site_id=d["site_id"], ts_ms=d["ts_ms"],
        seq=d["seq"], quality=d["quality"], values=values, schema_version=ver,
    ))



# Cross-field rules, kept few and each one physical: mirrored in SQL by sql_checks().
CROSS_RULES: tuple[tuple[str, str, str], ...] = (
    ("ev_charger", "session_id", "present iff connector_status is one of "
     + ", ".join(sorted(SESSION_STATUSES))),
    ("ev_charger", "session_wh", "present iff session_id is present"),
    ("diesel", "p_w", "<= 0 while running is false (a stopped engine cannot export)"),
    ("diesel", "fuel_lph", "== 0 while running is false"),
)


def _cross_check(der_type: str, d: Mapping[str, Any]) -> tuple[str, str] | None:
    if der_type == "ev_charger":
        status = d["connector_status"]
        has_session = d.get("session_id") is not None
        if status in SESSION_STATUSES and not has_session:
            return "session_id", f"missing while connector_status is {status}"
        if status not in SESSION_STATUSES and has_session:
            return "session_id", f"present while connector_status is {status}"
        if has_session != (d.get("session_wh") is not None):
            if has_session:
                return "session_wh", "missing while session_id is present"
            return "session_wh", "present without session_id"
    elif der_type == "diesel" and d["running"] is False:
        if d["p_w"] > 0:
            return "p_w", f"{_fmt(d['p_w'])} > 0 while running is false"
        if d["fuel_lph"] > 0:
            return "fuel_lph", f"{_fmt(d['fuel_lph'])} > 0 while running is false"
    return None


# --------------------------------------------------------------------------------------------
# Plain-data view for other engines (Spark, docs)
# --------------------------------------------------------------------------------------------


def field_specs() -> list[dict[str, Any]]:
    """The field table as plain data (JSON-serialisable), one dict per field in wire order."""
    out = []
    for f in FIELDS:
        out.append({
            "name": f.name,
            "kind": f.kind,
            "unit": f.unit,
            "description": f.description,
            "envelope": f.envelope,
            "der_types": list(f.der_types),
            "required_types": list(f.required_types),
            "ranges": {t: list(f.range_for(t)) for t in f.der_types},
            "enum": list(f.enum) if f.enum else None,
            "pattern": f.pattern,
            "decimals": f.decimals,
            "standards": {k: v for k, v in (("sunspec", f.sunspec), ("ieee2030_5", f.ieee2030_5),
                                            ("ocpp", f.ocpp), ("other", f.other)) if v},
        })
    return out


_SPARK_TYPES = {"float": "DoubleType", "int": "LongType", "str": "StringType",
                "bool": "BooleanType"}


def spark_schema() -> Any:
    """``pyspark.sql.types.StructType`` of the union of all fields (a stream mixes types, so
    every measurement is nullable; envelope fields are not). pyspark is imported lazily."""
    from pyspark.sql import types as T

    return T.StructType([
        T.StructField(f.name, getattr(T, _SPARK_TYPES[f.kind])(), nullable=not f.envelope)
        for f in FIELDS
    ])


@dataclass(frozen=True)
class SqlCheck:
    """``predicate`` is TRUE for a valid row; ``reason`` evaluates to the reason string of a
    failing row and NULL otherwise. Both are plain SQL over the columns of :func:`spark_schema`.

    SQL cannot see JSON types: after ``from_json`` a wrongly typed value is just NULL, so the
    SQL checks catch missing/null, foreign-field, enum, range and cross-field errors (not id
    patterns nor unknown keys, which a typed struct cannot hold), while the Python
    :func:`validate` remains the reference (a Python data source can call it in ``read()``).
    """

    field: str
    predicate: str
    reason: str


def _sql_lit(v: Any) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    return repr(float(v)) if isinstance(v, float) else str(v)


def _sql_in(col: str, values: Any) -> str:
    return f"{col} IN ({', '.join(_sql_lit(v) for v in values)})"


def sql_checks(dialect: str = "spark") -> tuple[SqlCheck, ...]:
    """SQL predicates equivalent to :func:`validate` on already-typed columns.

    ``dialect`` only changes the string cast (``spark``: ``CAST(x AS STRING)``; ``sqlite``:
    ``CAST(x AS TEXT)``) so the same expressions can be unit-tested without a JVM.
    """
    cast = {"spark": "CAST({} AS STRING)", "sqlite": "CAST({} AS TEXT)"}[dialect]
    checks: list[SqlCheck] = []

    def add(fld: str, pred: str, reason_sql: str) -> None:
        # A check whose inputs are NULL cannot decide and passes: the NULL itself is reported
        # by the "missing" check of that column, which comes first.
        pred = f"COALESCE(({pred}), TRUE)"
        checks.append(SqlCheck(fld, pred, f"CASE WHEN NOT {pred} THEN {reason_sql} END"))

    def msg(fld: str, text: str) -> str:
        return _sql_lit(f"{fld}: {text}")

    versions = sorted(SUPPORTED_VERSIONS)
    add("schema_version", "schema_version IS NOT NULL", msg("schema_version", "missing"))
    add("schema_version", f"schema_version IS NULL OR {_sql_in('schema_version', versions)}",
        f"'schema_version: ' || {cast.format('schema_version')} || ' not supported'")
    add("der_type", "der_type IS NOT NULL", msg("der_type", "missing"))
    add("der_type", f"der_type IS NULL OR {_sql_in('der_type', DER_TYPES)}",
        "'der_type: unknown ' || der_type")
    for f in FIELDS:
        if f.name in ("schema_version", "der_type"):
            continue
        col = f.name
        if f.required_types:
            req = ("TRUE" if set(f.required_types) == set(DER_TYPES)
                   else _sql_in("der_type", f.required_types))
            add(col, f"NOT ({req}) OR {col} IS NOT NULL", msg(col, "missing"))
        if set(f.der_types) != set(DER_TYPES):
            add(col, f"{col} IS NULL OR der_type IS NULL OR {_sql_in('der_type', f.der_types)}",
                f"'{col}: not a field of der_type ' || der_type")
        if f.enum:
            add(col, f"{col} IS NULL OR {_sql_in(col, f.enum)}",
                f"'{col}: unknown ' || {cast.format(col)}")
        if f.kind in ("float", "int"):
            # One unscoped check when the bounds do not depend on the type (keeps the
            # expression small enough for Spark's code generator), else one per type.
            scoped = [(t, *f.range_for(t)) for t in f.der_types] if f.limits \
                else [(None, f.min, f.max)]
            for t, lo, hi in scoped:
                scope = f" OR NOT (der_type = {_sql_lit(t)})" if t else ""
                suffix = f" for der_type {t}" if t else ""
                if lo is not None:
                    add(col, f"{col} IS NULL{scope} OR {col} >= {_sql_lit(lo)}",
                        f"'{col}: ' || {cast.format(col)} || ' below min {_fmt(lo)}{suffix}'")
                if hi is not None:
                    add(col, f"{col} IS NULL{scope} OR {col} <= {_sql_lit(hi)}",
                        f"'{col}: ' || {cast.format(col)} || ' above max {_fmt(hi)}{suffix}'")
    sessions = _sql_in("connector_status", sorted(SESSION_STATUSES))
    ev = "der_type <> 'ev_charger' OR connector_status IS NULL"
    add("session_id", f"{ev} OR NOT ({sessions}) OR session_id IS NOT NULL",
        "'session_id: missing while connector_status is ' || connector_status")
    add("session_id", f"{ev} OR {sessions} OR session_id IS NULL",
        "'session_id: present while connector_status is ' || connector_status")
    add("session_wh", "der_type <> 'ev_charger' OR "
        "((session_id IS NULL) = (session_wh IS NULL))",
        msg("session_wh", "present iff session_id is present"))
    stopped = "der_type = 'diesel' AND running = FALSE"
    add("p_w", f"NOT ({stopped}) OR p_w IS NULL OR p_w <= 0",
        f"'p_w: ' || {cast.format('p_w')} || ' > 0 while running is false'")
    add("fuel_lph", f"NOT ({stopped}) OR fuel_lph IS NULL OR fuel_lph <= 0",
        f"'fuel_lph: ' || {cast.format('fuel_lph')} || ' > 0 while running is false'")
    return tuple(checks)


def sql_reject_reason(dialect: str = "spark") -> str:
    """One SQL expression: the first failing check's reason, or NULL for a valid row.

    Nested in groups: SQLite caps a function at 127 arguments, and the check list grows with
    the schema."""
    reasons = [c.reason for c in sql_checks(dialect)]
    groups = ["COALESCE(" + ", ".join(reasons[i:i + 64]) + ")"
              for i in range(0, len(reasons), 64)]
    return groups[0] if len(groups) == 1 else "COALESCE(" + ", ".join(groups) + ")"
