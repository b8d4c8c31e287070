"""Small wind turbine (10–100 kW): TMY wind, windpowerlib power curve, turbulence and gusts.

Mean wind is the climate's 10 m TMY wind speed lifted to hub height (Hellman, exponent 1/7)
and scaled by a site ``exposure`` factor (a ridge or open coast sees more than the airport
mast the TMY comes from). On top: turbulence as an Ornstein–Uhlenbeck process (intensity
``turbulence`` with a 20 s time constant, exact discretisation so any step length works) and
gusts that arrive as a Poisson process and decay over ~15 s. Above cut-out the turbine stops
(storm control) and restarts only once the wind has dropped 5 m/s below it, as real
controllers do to avoid cycling. Rotor speed: variable speed between cut-in and rated, idling
below cut-in, braked in a storm.
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
    check_fraction,
    check_positive,
)


@dataclass(frozen=True)
class WindConfig:
    rated_w: float = 50_000.0
    turbine_type: str = "E-53/800"       # shape of the curve (OEDB name), scaled to rated_w
    hub_height_m: float = 30.0
    rotor_rpm_rated: float = 60.0
    exposure: float = 1.3
    turbulence: float = 0.12             # turbulence intensity (std / mean)
    gusts_per_hour: float = 6.0
    restart_margin_ms: float = 5.0
    noise: float = 0.01

    def __post_init__(self) -> None:
        check_positive(self, "rated_w", "hub_height_m", "rotor_rpm_rated", "exposure")
        check_fraction(self, "turbulence", "noise")
        if self.gusts_per_hour < 0:
            raise ValueError(f"WindConfig.gusts_per_hour: must be >= 0 (got {self.gusts_per_hour})")


class Wind(DER):
    der_type = "wind"
    TAU_S = 20.0
    GUST_DECAY_S = 15.0

    def __init__(self, der_id: str, site: Site, config: WindConfig | None = None, seed: int = 0,
                 faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
                 e_wh_start: int = 0) -> None:
        super().__init__(der_id, site, seed, faults, interval_s)
        self.config = cfg = config or WindConfig()
        self.rated_w = cfg.rated_w
        self.curve = profiles.power_curve(cfg.turbine_type)
        self._lift = profiles.hub_height_factor(cfg.hub_height_m) * cfg.exposure
        self._x = self.rng.gauss(0.0, 1.0)       # turbulence state, stationary N(0, 1)
        self._gust = 0.0
        self._storm = False
        self._e_wh = float(e_wh_start)
        self._e_imp_wh = 0.0
        self._t_nacelle: float | None = None

    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        cfg = self.config
        w = self.weather
        rng = self.rng
        i, f = w.position(t_s)
        u_mean = (w.wind10[i] + (w.wind10[i + 1] - w.wind10[i]) * f) * self._lift
        t_air = w.t_air[i] + (w.t_air[i + 1] - w.t_air[i]) * f
        if dt > 0.0:
            a = math.exp(-dt / self.TAU_S)
            self._x = a * self._x + math.sqrt(1.0 - a * a) * rng.gauss(0.0, 1.0)
            self._gust *= math.exp(-dt / self.GUST_DECAY_S)
            if rng.random() < 1.0 - math.exp(-cfg.gusts_per_hour * dt / 3600.0):
                self._gust += u_mean * rng.uniform(0.25, 0.6)
        u = u_mean * (1.0 + cfg.turbulence * self._x) + self._gust
        if u < 0.0:
            u = 0.0
        curve = self.curve
        if self._storm:
            if u < curve.cut_out_ms - cfg.restart_margin_ms:
                self._storm = False
        elif u >= curve.cut_out_ms:
            self._storm = True
        if self._storm:
            p = 0.0
            rpm = 0.0
        else:
            p = self._limit(curve.fraction(u) * self.rated_w)
            if u < curve.cut_in_ms:
                rpm = 0.15 * cfg.rotor_rpm_rated * u / curve.cut_in_ms
            else:
                x = (u - curve.cut_in_ms) / (curve.rated_ms - curve.cut_in_ms)
                rpm = cfg.rotor_rpm_rated * (0.4 + 0.6 * (x if x < 1.0 else 1.0))
            if p > 0.0:
                p *= 1.0 + rng.gauss(0.0, cfg.noise)
                if p > self.rated_w:
                    p = self.rated_w
        if p <= 0.0:
            p = -0.002 * self.rated_w             # controller, yaw and heating draw when idle
            self._e_imp_wh -= p * dt / 3600.0
        else:
            self._e_wh += p * dt / 3600.0
        # Nacelle warms with load; first-order with a 10-minute constant.
        target = t_air + 4.0 + 20.0 * max(p, 0.0) / self.rated_w
        if self._t_nacelle is None:
            self._t_nacelle = target
        elif dt > 0.0:
            self._t_nacelle += (target - self._t_nacelle) * (1.0 - math.exp(-dt / 600.0))
        v, hz = self._grid(t_s, p)
        q = 0.2 * p if p > 0.0 else 0.0           # induction generator, pf ≈ 0.98
        return {
            "p_w": round(p, 1),
            "q_var": round(-q, 1),
            "v_v": round(v, 1),
            "i_a": round(self._current(p, q, v), 2),
            "f_hz": round(hz, 3),
            "e_wh": int(self._e_wh),
            "e_imp_wh": int(self._e_imp_wh),
            "t_c": round(self._t_nacelle, 1),
            "wind_ms": round(u, 2),
            "rotor_rpm": round(rpm * (1.0 + rng.gauss(0.0, 0.005)), 1),
        }
