"""Weather and turbine profiles the DER models sample, precomputed once per process.

Sources (shipped inside installed packages, so nothing is downloaded at run time):

* **pvlib** ships two TMY3 files (typical meteorological year, hourly): Greensboro NC
  (``723170TYA.CSV``) and Sand Point AK (``703165TY.csv``). From them we take GHI/DHI, air
  temperature and 10 m wind speed, and use pvlib's solar position and transposition to build
  plane-of-array irradiance on a 10-minute grid (hourly TMY values interpolated as a clearness
  index, then shaped by the sun's actual path, so sunrise and sunset are sharp).
* **windpowerlib** ships the OEDB turbine library (``oedb/power_curves.csv``); the smallest
  curves (Enercon E-53/800 and E48/800) are normalised to 0..1 and scaled to the small rated
  power of each simulated turbine. Small turbines have the same dimensionless shape to first
  order (cut-in ~3 m/s, rated ~12-13 m/s, cut-out 25 m/s).

If pvlib or windpowerlib cannot be imported, :func:`weather` and :func:`power_curve` fall back
to analytic profiles (Haurwitz clear sky with day-scale cloudiness, sinusoidal temperature,
Weibull-like wind; a cubic power curve) and say so in ``source``.

Hot-path rule: a DER step only indexes ``array('d')`` tables (no numpy, no pandas) because a
numpy scalar costs ~100 ns per operation and the fleet does ~1,000 steps per second on a
shared core.
"""

from __future__ import annotations

import bisect
import calendar
import os
from array import array
from dataclasses import dataclass
from functools import cache

BIN_S = 600                     # 10-minute grid
YEAR_S = 365 * 86400
N_BINS = YEAR_S // BIN_S        # 52,560

CLIMATES: dict[str, str] = {
    "greensboro": "723170TYA.CSV",
    "sand_point": "703165TY.csv",
}

# Year starts (UTC epoch seconds of Jan 1 00:00) 1970..2100, for a cheap day-of-year lookup.
_YEAR_STARTS = [calendar.timegm((y, 1, 1, 0, 0, 0)) for y in range(1970, 2101)]


@dataclass
class Weather:
    """One climate on a 10-minute grid of a 365-day typical year, local standard time.

    Arrays have ``N_BINS + 1`` entries (the last repeats the first) so interpolation between
    bin ``i`` and ``i + 1`` never needs a modulo.
    """

    name: str
    source: str
    latitude: float
    longitude: float
    tz_s: int
    ghi: array               # W/m², global horizontal
    dhi: array               # W/m², diffuse horizontal
    zenith_cos: array        # cos of apparent solar zenith, clipped at 0
    sun_azimuth: array       # degrees
    t_air: array             # °C
    wind10: array            # m/s at 10 m
    variability: array       # 0..1: how broken the sky is (drives sub-hourly cloud ramps)

    def position(self, t_s: float) -> tuple[int, float]:
        """(bin, fraction) of an epoch time on the grid; bins are centred on their midpoint."""
        tl = t_s + self.tz_s
        k = bisect.bisect_right(_YEAR_STARTS, tl) - 1
        s = tl - _YEAR_STARTS[k] if k >= 0 else tl % YEAR_S
        if s >= YEAR_S:          # Dec 31 of a leap year: reuse Dec 30
            s -= 86400
        x = (s - BIN_S / 2) / BIN_S
        if x < 0:
            x += N_BINS
        i = int(x)
        return i, x - i

    def local_hour(self, t_s: float) -> float:
        return ((t_s + self.tz_s) % 86400) / 3600.0

    def weekday(self, t_s: float) -> int:
        """0 = Monday (1970-01-01 was a Thursday)."""
        return int(((t_s + self.tz_s) // 86400 + 3) % 7)


def _to_array(values: object) -> array:
    vals = [float(v) for v in values]  # type: ignore[attr-defined]
    vals.append(vals[0])
    return array("d", vals)


def _tmy_path(climate: str) -> str:
    import pvlib

    return os.path.join(os.path.dirname(pvlib.__file__), "data", CLIMATES[climate])


@cache
def weather(climate: str = "greensboro") -> Weather:
    """The climate's profile: from pvlib's TMY3 file, or analytic if pvlib is unavailable."""
    if climate not in CLIMATES:
        raise ValueError(f"climate: unknown {climate!r} (expected one of {', '.join(CLIMATES)})")
    try:
        return _weather_from_tmy(climate)
    except ImportError:
        return analytic_weather(climate)


def _weather_from_tmy(climate: str) -> Weather:
    import numpy as np
    import pandas as pd
    import pvlib
    from pvlib.iotools import read_tmy3

    df, meta = read_tmy3(_tmy_path(climate), coerce_year=2021, map_variables=True)
    tz_h = float(meta["TZ"])
    lat, lon, alt = float(meta["latitude"]), float(meta["longitude"]), float(meta["altitude"])
    # Hour-ending labels: row j covers [j, j+1) h of the year; centre at j + 0.5 h.
    centres = (np.arange(len(df)) + 0.5) * 3600.0
    mids = np.arange(N_BINS) * BIN_S + BIN_S / 2
    period = len(df) * 3600.0

    def interp(v: np.ndarray) -> np.ndarray:
        return np.interp(mids, centres, v, period=period)

    ghi_h = df["ghi"].to_numpy(float)
    etr_h = df["ghi_extra"].to_numpy(float)
    dhi_h = df["dhi"].to_numpy(float)
    # Clearness index and diffuse fraction per hour; night hours are filled from the
    # neighbouring daylight hours so that interpolation does not drag dawn values to zero.
    kt = pd.Series(np.where(etr_h > 0, np.clip(ghi_h / np.maximum(etr_h, 1e-9), 0, 1), np.nan))
    kt = kt.interpolate(limit_direction="both").fillna(0).to_numpy()
    kd = pd.Series(np.where(ghi_h > 0, np.clip(dhi_h / np.maximum(ghi_h, 1e-9), 0, 1), np.nan))
    kd = kd.interpolate(limit_direction="both").fillna(1).to_numpy()

    tz_name = f"Etc/GMT{-int(tz_h):+d}" if tz_h != 0 else "UTC"
    idx = pd.date_range("2021-01-01", periods=N_BINS, freq=f"{BIN_S}s", tz=tz_name)
    idx = idx + pd.Timedelta(seconds=BIN_S / 2)
    sp = pvlib.solarposition.get_solarposition(idx, lat, lon, alt, method="nrel_numpy")
    cosz = np.clip(np.cos(np.radians(sp["apparent_zenith"].to_numpy())), 0, 1)
    e0 = pvlib.irradiance.get_extra_radiation(idx).to_numpy()
    ghi = np.clip(interp(kt) * e0 * cosz, 0, 1400)
    dhi = np.minimum(ghi, interp(kd) * ghi)
    kt10 = interp(kt)
    # Broken skies (kt around 0.45) vary most within the hour; clear and overcast skies least.
    variability = np.clip(1 - np.abs(kt10 - 0.45) / 0.3, 0, 1) * 0.9 + 0.05
    return Weather(
        name=climate,
        source=f"pvlib {pvlib.__version__} TMY3 {CLIMATES[climate]}",
        latitude=lat, longitude=lon, tz_s=int(tz_h * 3600),
        ghi=_to_array(ghi), dhi=_to_array(dhi), zenith_cos=_to_array(cosz),
        sun_azimuth=_to_array(sp["azimuth"].to_numpy()),
        t_air=_to_array(interp(df["temp_air"].to_numpy(float))),
        wind10=_to_array(np.clip(interp(df["wind_speed"].to_numpy(float)), 0, None)),
        variability=_to_array(variability),
    )


def analytic_weather(climate: str = "greensboro", seed: int = 7) -> Weather:
    """Fallback profile without pvlib: Haurwitz clear-sky GHI under a simple solar geometry,
    daily clearness drawn from a seeded generator, sinusoidal annual/daily temperature and an
    AR(1) wind around a seasonal mean. Shapes are right (zero at night, summer peaks); values
    are not those of any real place."""
    import numpy as np

    lat, lon, tz_h = {"greensboro": (36.1, -79.95, -5.0),
                      "sand_point": (55.3, -160.5, -9.0)}.get(climate, (45.0, 0.0, 0.0))
    rng = np.random.default_rng(seed)
    t = np.arange(N_BINS) * BIN_S + BIN_S / 2             # local standard time, s of year
    doy = t / 86400.0
    decl = np.radians(23.45) * np.sin(2 * np.pi * (284 + doy) / 365)
    solar_h = (t % 86400) / 3600 + (lon - 15 * tz_h) / 15   # no equation of time
    ha = np.radians(15 * (solar_h - 12))
    phi = np.radians(lat)
    cosz = np.clip(np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(ha), 0, 1)
    clear = np.where(cosz > 0, 1098 * cosz * np.exp(-0.057 / np.maximum(cosz, 1e-3)), 0)
    kt_day = np.clip(rng.normal(0.75, 0.2, 366), 0.15, 1.0)
    kt = kt_day[doy.astype(int)]
    ghi = clear * kt
    dhi = ghi * np.clip(1.1 - kt, 0.1, 1)
    az = (np.degrees(ha) + 180) % 360
    t_air = 14 - 10 * np.cos(2 * np.pi * (doy - 15) / 365) \
        - 5 * np.cos(2 * np.pi * ((t % 86400) / 86400 - 0.125))
    w = np.empty(N_BINS)
    x = 0.0
    eps = rng.normal(0, 1, N_BINS)
    for i in range(N_BINS):                                # AR(1), 10-min step, ~6 h memory
        x = 0.972 * x + 0.235 * eps[i]
        w[i] = x
    wind = np.clip((4.5 + 1.5 * np.cos(2 * np.pi * doy / 365)) * (1 + 0.45 * w), 0, None)
    variability = np.clip(1 - np.abs(kt - 0.45) / 0.3, 0, 1) * 0.9 + 0.05
    return Weather(
        name=climate, source="analytic fallback (pvlib unavailable)",
        latitude=lat, longitude=lon, tz_s=int(tz_h * 3600),
        ghi=_to_array(ghi), dhi=_to_array(dhi), zenith_cos=_to_array(cosz),
        sun_azimuth=_to_array(az), t_air=_to_array(t_air), wind10=_to_array(wind),
        variability=_to_array(variability),
    )


@cache
def plane_of_array(climate: str, tilt_deg: float, azimuth_deg: float) -> array:
    """Plane-of-array irradiance (W/m²) on the climate's grid for one module orientation,
    by pvlib's isotropic transposition; a numpy re-implementation of the same formula if pvlib
    is unavailable. Cached: a fleet shares a handful of orientations."""
    import numpy as np

    w = weather(climate)
    ghi = np.frombuffer(w.ghi, dtype=float)[:-1]
    dhi = np.frombuffer(w.dhi, dtype=float)[:-1]
    cosz = np.frombuffer(w.zenith_cos, dtype=float)[:-1]
    az = np.frombuffer(w.sun_azimuth, dtype=float)[:-1]
    dni = np.where(cosz > 0.05, (ghi - dhi) / np.maximum(cosz, 0.05), 0.0)
    zen = np.degrees(np.arccos(cosz))
    try:
        import pvlib

        poa = pvlib.irradiance.get_total_irradiance(
            tilt_deg, azimuth_deg, zen, az, dni, ghi, dhi, albedo=0.2, model="isotropic",
        )["poa_global"]
        poa = np.asarray(poa, dtype=float)
    except ImportError:
        t, a = np.radians(tilt_deg), np.radians(azimuth_deg)
        zr, ar = np.radians(zen), np.radians(az)
        cos_aoi = np.cos(zr) * np.cos(t) + np.sin(zr) * np.sin(t) * np.cos(ar - a)
        poa = (dni * np.clip(cos_aoi, 0, None) + dhi * (1 + np.cos(t)) / 2
               + ghi * 0.2 * (1 - np.cos(t)) / 2)
    poa = np.clip(np.nan_to_num(poa, nan=0.0), 0, 1400)
    poa[cosz <= 0] = 0.0
    return _to_array(poa)


# --------------------------------------------------------------------------------------------
# Wind turbine power curves
# --------------------------------------------------------------------------------------------

CURVE_STEP = 0.05               # m/s per table entry
CURVE_MAX_MS = 40.0


@dataclass(frozen=True)
class PowerCurve:
    """Dimensionless power curve (0..1 of rated) tabulated every 0.05 m/s from 0 to 40 m/s."""

    turbine_type: str
    source: str
    table: array
    cut_in_ms: float
    rated_ms: float
    cut_out_ms: float

    def fraction(self, u: float) -> float:
        if u <= 0.0 or u >= CURVE_MAX_MS:
            return 0.0
        x = u / CURVE_STEP
        i = int(x)
        t = self.table
        return t[i] + (t[i + 1] - t[i]) * (x - i)


def _tabulate(speeds: list[float], fracs: list[float]) -> array:
    n = int(CURVE_MAX_MS / CURVE_STEP) + 2
    out = array("d", bytes(8 * n))
    last = speeds[-1]
    for k in range(n):
        u = k * CURVE_STEP
        if u > last:                 # beyond the curve: cut-out
            break
        j = bisect.bisect_right(speeds, u)
        if j == 0:
            continue
        if j >= len(speeds):
            out[k] = fracs[-1]
            continue
        u0, u1 = speeds[j - 1], speeds[j]
        out[k] = fracs[j - 1] + (fracs[j] - fracs[j - 1]) * (u - u0) / (u1 - u0)
    return out


def _curve_from(turbine_type: str, source: str, speeds: list[float],
                fracs: list[float]) -> PowerCurve:
    top = max(fracs)
    # Normalise (some curves peak at 1.012 × nominal) and drop the sub-0.5 % tail: a turbine
    # controller does not connect for that. Cut-in is then the last speed with zero output.
    fracs = [f / top if f / top >= 0.005 else 0.0 for f in fracs]
    first = next(i for i, f in enumerate(fracs) if f > 0.0)
    cut_in = speeds[first - 1] if first > 0 else speeds[0]
    rated = next(s for s, f in zip(speeds, fracs, strict=True) if f >= 0.995)
    return PowerCurve(turbine_type, source, _tabulate(speeds, fracs), cut_in, rated, speeds[-1])


@cache
def power_curve(turbine_type: str = "E-53/800") -> PowerCurve:
    """Normalised power curve of an OEDB turbine from windpowerlib's shipped library; a cubic
    analytic curve (cut-in 3, rated 12, cut-out 25 m/s) if windpowerlib is unavailable."""
    try:
        import windpowerlib
        from windpowerlib import WindTurbine
    except ImportError:
        return analytic_power_curve()
    wt = WindTurbine(turbine_type=turbine_type, hub_height=50)
    pc = wt.power_curve
    return _curve_from(
        turbine_type, f"windpowerlib {windpowerlib.__version__} oedb power_curves.csv",
        [float(v) for v in pc["wind_speed"]], [float(v) for v in pc["value"]],
    )


def analytic_power_curve(cut_in: float = 3.0, rated: float = 12.0,
                         cut_out: float = 25.0) -> PowerCurve:
    speeds = [i * 0.5 for i in range(int(cut_out / 0.5) + 1)]
    fracs = [0.0 if s < cut_in else min(1.0, ((s - cut_in) / (rated - cut_in)) ** 3)
             for s in speeds]
    return _curve_from("analytic-cubic", "analytic fallback (windpowerlib unavailable)",
                       speeds, fracs)


def hub_height_factor(hub_height_m: float, measured_at_m: float = 10.0) -> float:
    """Wind-speed ratio hub/measurement height by the Hellman power law (exponent 1/7), via
    windpowerlib when available."""
    try:
        from windpowerlib.wind_speed import hellman
    except ImportError:
        return (hub_height_m / measured_at_m) ** (1 / 7)
    return float(hellman(1.0, measured_at_m, hub_height_m, hellman_exponent=1 / 7))


def lerp(a: array, i: int, f: float) -> float:
    """Linear interpolation between entries i and i+1 (use inline on hot paths)."""
    v = a[i]
    return v + (a[i + 1] - v) * f


def clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x
