"""Photovoltaic array + inverter, driven by pvlib's TMY irradiance and temperature.

Plane-of-array irradiance comes from the climate's 10-minute profile (``profiles``), which
already carries the hour's mean cloudiness; on top, a site-wide cloud field (two
:class:`ValueNoise` scales, 90 s and 20 s) modulates it around 1 with an amplitude that
depends on how broken the sky is that hour, giving the ramps and brief over-irradiance (cloud
enhancement) that real 10-s PV telemetry shows. Module temperature follows the Faiman model
with a 5-minute thermal lag; DC power has a linear temperature coefficient; the inverter has a
flat efficiency, clips at its AC rating, switches off below 0.2 % of rating (so night is
exactly zero) and runs volt-var.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sensors_sim.models import profiles
from sensors_sim.models.base import (
    DER,
    NO_FAULTS,
    FaultConfig,
    Site,
    ValueNoise,
    check_fraction,
    check_positive,
    mix_seed,
)


@dataclass(frozen=True)
class PVConfig:
    rated_w: float = 10_000.0            # DC nameplate (STC), W
    inverter_w: float | None = None      # AC limit, W; default = rated_w
    tilt_deg: float = 25.0
    azimuth_deg: float = 180.0           # 180 = facing south
    gamma_per_c: float = -0.0037         # power temperature coefficient, 1/°C
    system_losses: float = 0.05          # soiling, wiring, mismatch
    inverter_eff: float = 0.965
    cloud_variability: float = 1.0       # 0 = smooth hourly profile, 1 = realistic ramps
    noise: float = 0.003                 # relative measurement noise

    def __post_init__(self) -> None:
        check_positive(self, "rated_w", "inverter_eff")
        check_fraction(self, "system_losses", "inverter_eff", "noise")
        if self.inverter_w is not None:
            check_positive(self, "inverter_w")
        if not 0 <= self.tilt_deg <= 90:
            raise ValueError(f"PVConfig.tilt_deg: {self.tilt_deg} outside 0..90")
        if not 0 <= self.cloud_variability <= 2:
            raise ValueError(f"PVConfig.cloud_variability: {self.cloud_variability} outside 0..2")


class PV(DER):
    der_type = "pv"

    def __init__(self, der_id: str, site: Site, config: PVConfig | None = None, seed: int = 0,
                 faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
                 e_wh_start: int = 0) -> None:
        super().__init__(der_id, site, seed, faults, interval_s)
        self.config = cfg = config or PVConfig()
        self.rated_w = cfg.inverter_w or cfg.rated_w
        self._poa = profiles.plane_of_array(site.climate, float(cfg.tilt_deg),
                                            float(cfg.azimuth_deg))
        # Clouds are a property of the site: every PV there sees the same field.
        self._cloud_slow = ValueNoise(mix_seed(site.seed, "cloud-slow"), 90.0)
        self._cloud_fast = ValueNoise(mix_seed(site.seed, "cloud-fast"), 20.0)
        self._t_mod: float | None = None
        self._e_wh = float(e_wh_start)
        self._p_dc_per_irr = cfg.rated_w / 1000.0 * (1.0 - cfg.system_losses)
        self._q_max = 0.44 * self.rated_w

    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        cfg = self.config
        w = self.weather
        i, f = w.position(t_s)
        a = self._poa
        poa = a[i] + (a[i + 1] - a[i]) * f
        t_air = w.t_air[i] + (w.t_air[i + 1] - w.t_air[i]) * f
        wind = w.wind10[i] + (w.wind10[i + 1] - w.wind10[i]) * f
        if poa > 0.0:
            amp = (w.variability[i] + (w.variability[i + 1] - w.variability[i]) * f) \
                * cfg.cloud_variability
            n = 0.75 * self._cloud_slow.at(t_s) + 0.25 * self._cloud_fast.at(t_s)
            # n is centred on 0.5: below, a cloud shades the array; above, the edge of a
            # cloud reflects extra light (enhancement), which is real but weaker.
            d = amp * 1.4 * (n - 0.5)
            poa *= 1.0 + (d if d < 0.0 else 0.5 * d)
            poa *= 1.0 + self.rng.gauss(0.0, cfg.noise)
            poa = 0.0 if poa < 0.0 else 1450.0 if poa > 1450.0 else poa
        # Faiman cell/module temperature with thermal lag.
        t_target = t_air + poa / (25.0 + 6.84 * wind)
        if self._t_mod is None:
            self._t_mod = t_target
        elif dt > 0.0:
            self._t_mod += (t_target - self._t_mod) * (1.0 - math.exp(-dt / 300.0))
        t_mod = self._t_mod
        dc = poa * self._p_dc_per_irr * (1.0 + cfg.gamma_per_c * (t_mod - 25.0))
        ac = dc * cfg.inverter_eff
        if ac > self.rated_w:
            ac = self.rated_w
        ac = self._limit(ac)
        if ac < 0.002 * self.rated_w:
            ac = dc = 0.0
        elif ac < dc * cfg.inverter_eff:
            dc = ac / cfg.inverter_eff           # clipped/curtailed: MPPT backs off
        self._e_wh += ac * dt / 3600.0
        v, hz = self._grid(t_s, ac)
        q = self._volt_var(v, self._q_max) if ac > 0.0 else 0.0
        return {
            "p_w": round(ac, 1),
            "q_var": round(q, 1),
            "v_v": round(v, 1),
            "i_a": round(self._current(ac, q, v), 2),
            "f_hz": round(hz, 3),
            "e_wh": int(self._e_wh),
            "t_c": round(t_air + 5.0 + 15.0 * ac / self.rated_w, 1),
            "irr_wm2": round(poa, 1),
            "t_mod_c": round(t_mod, 1),
            "dc_w": round(dc, 1),
        }
