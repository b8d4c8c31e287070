"""What every simulated DER shares: identity, the step/read cycle, the grid it sits on, faults.

A model's physics runs in :meth:`DER._physics` and returns its measurements; :meth:`DER.step`
wraps them in the telemetry envelope and applies the configured faults; :meth:`DER.read`
additionally runs the producer-side filter and only then assigns the sequence number, so
``seq`` counts published readings without gaps (see ``ingest.schema``).

Randomness: each DER owns two ``random.Random`` streams seeded from its seed, one for physics
noise and one for faults, so switching faults on does not change the physical trajectory.
Weather-like quantities shared by DERs (clouds over a site, grid frequency, site voltage) are
*functions of time*, not of call order: :class:`ValueNoise` hashes (seed, time bucket), so two
DERs at one site see the same cloud at the same instant however the runner interleaves them.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ingest import schema
from sensors_sim.models import profiles

_M64 = (1 << 64) - 1
GRID_SEED = 0x6772_6964          # one interconnection: every DER sees the same frequency
_ID_RX = re.compile(schema.ID_PATTERN)


def hash_unit(seed: int, k: int) -> float:
    """Deterministic uniform [0, 1) from (seed, k): splitmix64 finaliser."""
    z = (seed * 0x9E3779B97F4A7C15 + k * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return ((z ^ (z >> 31)) >> 11) * (1.0 / (1 << 53))


class ValueNoise:
    """Smooth noise in [0, 1) that is a pure function of (seed, t): random values at knots
    every ``period_s`` joined by smoothstep ramps (this is what makes cloud edges ramp rather
    than jump). Caches the current knot pair, so sequential calls cost two multiplications."""

    __slots__ = ("_a", "_b", "_k", "period_s", "seed")

    def __init__(self, seed: int, period_s: float) -> None:
        self.seed = seed & _M64
        self.period_s = period_s
        self._k = -(1 << 62)
        self._a = self._b = 0.0

    def at(self, t_s: float) -> float:
        x = t_s / self.period_s
        k = math.floor(x)
        if k != self._k:
            if k == self._k + 1:
                self._a = self._b
            else:
                self._a = hash_unit(self.seed, k)
            self._b = hash_unit(self.seed, k + 1)
            self._k = k
        f = x - k
        f = f * f * (3.0 - 2.0 * f)
        return self._a + (self._b - self._a) * f


def mix_seed(*parts: int | str) -> int:
    """Stable 64-bit seed from ints/strings (``hash()`` of a str is salted per process)."""
    z = 0x84222325CBF29CE4
    for p in parts:
        if isinstance(p, str):
            for ch in p.encode():
                z = ((z ^ ch) * 0x100000001B3) & _M64
        else:
            z = ((z ^ (p & _M64)) * 0x100000001B3) & _M64
        z = int(hash_unit(z, 1) * (1 << 53))
    return z


@dataclass(frozen=True)
class Site:
    """A point of common coupling: weather (climate), grid nominal values, noise seed."""

    site_id: str
    climate: str = "greensboro"
    v_ln: float = 230.0         # nominal line-to-neutral voltage, V
    f_nom: float = 50.0         # nominal grid frequency, Hz
    seed: int = 0

    def __post_init__(self) -> None:
        _check(bool(_ID_RX.fullmatch(self.site_id)), "Site.site_id",
               f"{self.site_id!r} does not match {schema.ID_PATTERN}")
        _check(self.climate in profiles.CLIMATES, "Site.climate",
               f"unknown {self.climate!r} (expected one of {', '.join(profiles.CLIMATES)})")
        _check(50.0 <= self.v_ln <= 400.0, "Site.v_ln", f"{self.v_ln} outside 50..400 V")
        _check(self.f_nom in (50.0, 60.0), "Site.f_nom", f"{self.f_nom} is not 50 or 60 Hz")


def _check(ok: bool, field: str, reason: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {reason}")


def check_positive(obj: object, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        _check(isinstance(v, int | float) and v > 0, f"{type(obj).__name__}.{n}",
               f"must be > 0 (got {v!r})")


def check_fraction(obj: object, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        _check(isinstance(v, int | float) and 0 <= v <= 1, f"{type(obj).__name__}.{n}",
               f"must be within 0..1 (got {v!r})")


@dataclass(frozen=True)
class FaultConfig:
    """Switchable sensor/communication faults, as per-reading probabilities.

    * stuck: the device keeps sending the values of the reading where the episode began (a
      frozen register map) for ~``stuck_s``; after the first, those readings carry
      ``stuck_quality`` (the device's own frozen-value detection; "good" hides it).
    * dropout: the device is silent for ~``dropout_s`` (no reading, no sequence number);
      the twin sees it as a gap in ``ts_ms``.
    * spike: one measurement of one reading is corrupted far outside its physical range;
      ``ingest.schema.validate`` rejects such a reading.
    Episode lengths are exponentially distributed around their mean.
    """

    p_stuck: float = 0.0
    stuck_s: float = 300.0
    stuck_quality: str = "suspect"
    p_dropout: float = 0.0
    dropout_s: float = 60.0
    p_spike: float = 0.0

    def __post_init__(self) -> None:
        check_fraction(self, "p_stuck", "p_dropout", "p_spike")
        check_positive(self, "stuck_s", "dropout_s")
        _check(self.stuck_quality in schema.QUALITIES, "FaultConfig.stuck_quality",
               f"unknown {self.stuck_quality!r} (expected one of {', '.join(schema.QUALITIES)})")

    @property
    def any(self) -> bool:
        return bool(self.p_stuck or self.p_dropout or self.p_spike)


NO_FAULTS = FaultConfig()


class ReadingFilter(Protocol):
    def offer(self, reading: dict[str, Any]) -> bool: ...


class DER:
    """Base of the six models. Subclasses set ``der_type``, build their state in ``__init__``
    and implement ``_physics(t_s, dt_s) -> dict`` of measurements in wire order.

    ``interval_s`` is how often the runner should call :meth:`read`; ``phase_ms`` is a
    deterministic offset within that interval so a large fleet does not report in lockstep.
    """

    der_type: ClassVar[str] = ""
    rated_w: float = 1.0        # nameplate AC power, W; set by each subclass

    def __init__(self, der_id: str, site: Site, seed: int, faults: FaultConfig = NO_FAULTS,
                 interval_s: float = 10.0, phases: int = 3) -> None:
        _check(bool(_ID_RX.fullmatch(der_id)), "der_id",
               f"{der_id!r} does not match {schema.ID_PATTERN}")
        _check(interval_s > 0, "interval_s", f"must be > 0 (got {interval_s!r})")
        _check(phases in (1, 3), "phases", f"must be 1 or 3 (got {phases!r})")
        self.der_id = der_id
        self.site = site
        self.seed = seed
        self.faults = faults
        self._faulty = faults.any
        self.interval_s = float(interval_s)
        self.phase_ms = int(hash_unit(seed, 0xF00D) * interval_s * 1000)
        self.phases = phases
        self.seq = 0
        self.weather = profiles.weather(site.climate)
        self.rng = random.Random(seed)
        self._frng = random.Random(seed ^ 0x5DEECE66D)
        self._t_ms: int | None = None
        self._freq1 = ValueNoise(GRID_SEED, 120.0)
        self._freq2 = ValueNoise(GRID_SEED + 1, 15.0)
        self._vnoise = ValueNoise(mix_seed(site.seed, "voltage"), 300.0)
        self._stuck_until = -1.0
        self._stuck_values: dict[str, Any] | None = None
        self._dropout_until = -1.0
        self._export_limit_w: float | None = None
        fields = [f for f in schema.fields_for(self.der_type)
                  if not f.envelope and f.kind == "float" and f.required_for(self.der_type)]
        self._spike_fields = [(f.name, f.range_for(self.der_type)[1]) for f in fields]

    # -- public cycle ---------------------------------------------------------------------------
    def step(self, t_ms: int) -> dict[str, Any] | None:
        """Advance the physics to ``t_ms`` and return the reading (envelope + measurements,
        ``seq`` not yet assigned: -1), or None when a dropout fault keeps the device silent."""
        last = self._t_ms
        if last is None:
            dt = 0.0
        elif t_ms < last:
            raise ValueError(f"t_ms: {t_ms} is before the previous step {last} of {self.der_id}")
        else:
            dt = (t_ms - last) / 1000.0
        self._t_ms = t_ms
        t_s = t_ms / 1000.0
        values = self._physics(t_s, dt)
        quality = "good"
        if self._faulty:
            values, quality = self._apply_faults(t_s, values)
            if values is None:
                return None
        r: dict[str, Any] = {
            "schema_version": schema.SCHEMA_VERSION,
            "der_id": self.der_id,
            "der_type": self.der_type,
            "site_id": self.site.site_id,
            "ts_ms": t_ms,
            "seq": -1,
            "quality": quality,
        }
        r.update(values)
        return r

    def read(self, t_ms: int, filt: ReadingFilter | None = None) -> dict[str, Any] | None:
        """``step`` + optional producer filter + sequence number: the reading to publish, or
        None (dropout, or suppressed by the filter). Encode it with ``ingest.schema.encode``."""
        r = self.step(t_ms)
        if r is None or (filt is not None and not filt.offer(r)):
            return None
        r["seq"] = self.seq
        self.seq += 1
        return r

    def command(self, setpoint_w: float | None) -> float | None:
        """Generators (PV, wind, hydro): cap export at ``setpoint_w`` W (curtailment, as IEEE
        2030.5 opModMaxLimW); None lifts the cap. Returns the cap applied (clamped at 0)."""
        self._export_limit_w = None if setpoint_w is None else max(0.0, float(setpoint_w))
        return self._export_limit_w

    # -- helpers for subclasses -----------------------------------------------------------------
    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        raise NotImplementedError

    def _grid(self, t_s: float, p_w: float) -> tuple[float, float]:
        """(voltage V, frequency Hz) at the terminals: a site voltage that wanders ±1.2 % and
        rises with export, and one grid frequency for all DERs (±~50 mHz)."""
        site = self.site
        rated = self.rated_w
        v = site.v_ln * (1.0 + 0.024 * (self._vnoise.at(t_s) - 0.5)
                         + 0.015 * p_w / rated) + self.rng.gauss(0.0, 0.05)
        f = (site.f_nom + 0.08 * (self._freq1.at(t_s) - 0.5) + 0.03 * (self._freq2.at(t_s) - 0.5)
             + self.rng.gauss(0.0, 0.0007))
        return v, f

    def _volt_var(self, v: float, q_max: float) -> float:
        """Inverter volt-var droop (IEEE 1547 category B-like): absorb above nominal voltage,
        inject below, saturating at ±q_max over ±5 % deviation."""
        x = (v / self.site.v_ln - 1.0) / 0.05
        return -q_max * (-1.0 if x < -1.0 else 1.0 if x > 1.0 else x)

    def _current(self, p_w: float, q_var: float, v: float) -> float:
        return math.hypot(p_w, q_var) / (self.phases * v) if v > 1.0 else 0.0

    def _limit(self, p_w: float) -> float:
        lim = self._export_limit_w
        return p_w if lim is None or p_w <= lim else lim

    def _apply_faults(self, t_s: float, values: dict[str, Any]
                      ) -> tuple[dict[str, Any] | None, str]:
        f = self.faults
        fr = self._frng
        if t_s < self._dropout_until:
            return None, "good"
        if f.p_dropout and fr.random() < f.p_dropout:
            self._dropout_until = t_s + fr.expovariate(1.0 / f.dropout_s)
            return None, "good"
        quality = "good"
        if t_s < self._stuck_until and self._stuck_values is not None:
            values = self._stuck_values
            quality = f.stuck_quality
        elif f.p_stuck and fr.random() < f.p_stuck:
            self._stuck_until = t_s + fr.expovariate(1.0 / f.stuck_s)
            self._stuck_values = values
        if f.p_spike and fr.random() < f.p_spike and self._spike_fields:
            name, hi = fr.choice(self._spike_fields)
            values = dict(values)
            values[name] = spike_value(hi, fr.random())
        return values, quality


def spike_value(hi: float | None, u: float) -> float:
    """A value certainly above the field's physical max (or absurdly large if unbounded)."""
    if hi is None:
        return 1e12
    return round(hi + max(abs(hi), 1.0) * (1.0 + 9.0 * u), 1)

