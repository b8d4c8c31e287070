"""Small run-of-river hydro plant (≈50 kW – 1 MW).

No installable package ships river-flow series, so the river is an *analytic* profile
(documented fallback): a seasonal cycle (snow-melt/rain peak around ``peak_doy``) times a
site-wide storm factor (day-scale :class:`ValueNoise`, skewed so that a few days a month run
at 2–3× mean flow). The plant leaves a residual (environmental) flow in the river, turbines up
to its design flow, stops below the turbine's minimum flow, and moves the wicket gate slowly
(first-order, 2-minute constant) so 10-s telemetry shows ramps rather than steps.
Power = η·ρ·g·Q·H with a net head that falls quadratically with flow (penstock losses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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

RHO_G = 1000.0 * 9.81


@dataclass(frozen=True)
class HydroConfig:
    design_flow_m3s: float = 2.0
    gross_head_m: float = 20.0
    efficiency: float = 0.85             # turbine × generator at design point
    min_flow_frac: float = 0.15          # turbine minimum, fraction of design flow
    mean_river_flow_m3s: float | None = None   # default 0.8 × design flow
    residual_flow_frac: float = 0.1      # left in the river, fraction of design flow
    seasonal_amplitude: float = 0.6
    peak_doy: float = 100.0              # day of year of the seasonal peak
    head_loss_frac: float = 0.06         # net head loss at design flow
    noise: float = 0.004

    def __post_init__(self) -> None:
        check_positive(self, "design_flow_m3s", "gross_head_m", "efficiency")
        check_fraction(self, "efficiency", "min_flow_frac", "residual_flow_frac",
                       "seasonal_amplitude", "head_loss_frac", "noise")
        if self.mean_river_flow_m3s is not None:
            check_positive(self, "mean_river_flow_m3s")


class Hydro(DER):
    der_type = "hydro"
    GATE_TAU_S = 120.0

    def __init__(self, der_id: str, site: Site, config: HydroConfig | None = None,
                 seed: int = 0, faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
                 e_wh_start: int = 0) -> None:
        super().__init__(der_id, site, seed, faults, interval_s)
        self.config = cfg = config or HydroConfig()
        self.rated_w = cfg.efficiency * RHO_G * cfg.design_flow_m3s * cfg.gross_head_m \
            * (1.0 - cfg.head_loss_frac)
        self._mean_q = cfg.mean_river_flow_m3s or 0.8 * cfg.design_flow_m3s
        self._storm = ValueNoise(mix_seed(site.seed, "rain"), 86400.0)
        self._q: float | None = None
        self._e_wh = float(e_wh_start)
        self._e_imp_wh = 0.0

    def river_flow(self, t_s: float) -> float:
        cfg = self.config
        doy = (t_s + self.weather.tz_s) / 86400.0 % 365.0
        season = 1.0 + cfg.seasonal_amplitude * math.cos(2 * math.pi * (doy - cfg.peak_doy) / 365)
        n = self._storm.at(t_s)
        storm = 1.0 + 2.0 * ((n - 0.7) / 0.3) ** 2 if n > 0.7 else 0.85 + 0.15 * n / 0.7
        return self._mean_q * season * storm

    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        cfg = self.config
        q_design = cfg.design_flow_m3s
        avail = self.river_flow(t_s) - cfg.residual_flow_frac * q_design
        target = avail if avail < q_design else q_design
        if target < cfg.min_flow_frac * q_design:
            target = 0.0
        if self._q is None:
            self._q = target
        elif dt > 0.0:
            self._q += (target - self._q) * (1.0 - math.exp(-dt / self.GATE_TAU_S))
        q = self._q
        if q < 0.5 * cfg.min_flow_frac * q_design:
            q = 0.0
        x = q / q_design
        head = cfg.gross_head_m * (1.0 - cfg.head_loss_frac * x * x)
        # Part-load efficiency drops (Francis-like hill chart, crude).
        eta = cfg.efficiency * (1.0 - 0.25 * (1.0 - x) ** 2) if q > 0.0 else 0.0
        p = eta * RHO_G * q * head * (1.0 + self.rng.gauss(0.0, cfg.noise))
        p = self._limit(p)
        if p <= 0.0:
            p = -0.001 * self.rated_w               # auxiliaries
            self._e_imp_wh -= p * dt / 3600.0
        else:
            self._e_wh += p * dt / 3600.0
        w = self.weather
        i, f = w.position(t_s)
        t_air = w.t_air[i] + (w.t_air[i + 1] - w.t_air[i]) * f
        v, hz = self._grid(t_s, p)
        qv = 0.33 * p if p > 0.0 else 0.0              # synchronous generator at pf 0.95
        return {
            "p_w": round(p, 1),
            "q_var": round(qv, 1),
            "v_v": round(v, 1),
            "i_a": round(self._current(p, qv, v), 2),
            "f_hz": round(hz, 3),
            "e_wh": int(self._e_wh),
            "e_imp_wh": int(self._e_imp_wh),
            "t_c": round(0.5 * t_air + 12.0 + 15.0 * max(p, 0.0) / self.rated_w, 1),
            "flow_m3s": round(q, 3),
            "head_m": round(head, 2),
        }
