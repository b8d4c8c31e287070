"""Diesel genset: start/stop, load setpoint, fuel consumption, refuelling.

Fuel use follows the linear (Willans-line) generator fuel curve used by HOMER:
``F [L/h] = a·P_rated[kW] + b·P_out[kW]`` with a = 0.08145 and b = 0.246 L/kWh by default.
The engine cranks and warms for ``start_delay_s`` (running, no output), then ramps to its
setpoint (first-order, 5 s), which is clamped to [min_load, rated] because running a diesel
below ~30 % load wet-stacks it. With no VPP command it follows a local-time schedule (evening
peak support by default). Fuel only ever decreases while the engine runs; a tank below
``refuel_below_pct`` is refilled ``refuel_delay_s`` after the engine stopped; an empty tank
stops the engine.
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
    check_fraction,
    check_positive,
)

DEFAULT_SCHEDULE: tuple[tuple[float, float, float], ...] = ((17.0, 20.0, 0.6),)


@dataclass(frozen=True)
class DieselConfig:
    rated_w: float = 100_000.0
    tank_l: float = 600.0
    fuel_init_pct: float = 80.0
    fuel_a_lph_per_kw_rated: float = 0.08145
    fuel_b_l_per_kwh: float = 0.246
    min_load_frac: float = 0.3
    start_delay_s: float = 15.0
    refuel_below_pct: float = 20.0
    refuel_delay_s: float = 4 * 3600.0
    schedule: tuple[tuple[float, float, float], ...] = DEFAULT_SCHEDULE
    weekdays_only: bool = True

    def __post_init__(self) -> None:
        check_positive(self, "rated_w", "tank_l", "fuel_a_lph_per_kw_rated", "fuel_b_l_per_kwh",
                       "start_delay_s", "refuel_delay_s")
        check_fraction(self, "min_load_frac")
        name = type(self).__name__
        for f in ("fuel_init_pct", "refuel_below_pct"):
            v = getattr(self, f)
            if not 0.0 <= v <= 100.0:
                raise ValueError(f"{name}.{f}: {v} outside 0..100")
        for k, (h0, h1, frac) in enumerate(self.schedule):
            if not (0 <= h0 < h1 <= 24 and 0 <= frac <= 1):
                raise ValueError(f"{name}.schedule[{k}]: need 0 <= start < end <= 24 and "
                                 f"0 <= load fraction <= 1 (got {(h0, h1, frac)})")


class Diesel(DER):
    der_type = "diesel"
    RAMP_TAU_S = 5.0

    def __init__(self, der_id: str, site: Site, config: DieselConfig | None = None,
                 seed: int = 0, faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
                 e_wh_start: int = 0) -> None:
        super().__init__(der_id, site, seed, faults, interval_s)
        self.config = cfg = config or DieselConfig()
        self.rated_w = cfg.rated_w
        self.fuel_l = cfg.tank_l * cfg.fuel_init_pct / 100.0
        self.state = "stopped"                 # stopped | starting | running
        self.p_w = 0.0
        self._ready_at = 0.0
        self._refuel_at: float | None = None
        self._setpoint: float | None = None
        self._e_wh = float(e_wh_start)
        self._e_imp_wh = 0.0
        self._t_encl: float | None = None

    @property
    def running(self) -> bool:
        return self.state != "stopped"

    def command(self, setpoint_w: float | None) -> float | None:
        """0 stops the engine, > 0 starts it (if needed) and sets the load, clamped to
        [min_load, rated]; None returns to the autonomous schedule. Returns the setpoint."""
        if setpoint_w is None:
            self._setpoint = None
            return None
        self._setpoint = self._clamp(float(setpoint_w))
        return self._setpoint

    def start(self, setpoint_w: float | None = None) -> float | None:
        return self.command(self.rated_w * 0.6 if setpoint_w is None else setpoint_w)

    def stop(self) -> float | None:
        return self.command(0.0)

    def _clamp(self, sp: float) -> float:
        if sp <= 0.0:
            return 0.0
        cfg = self.config
        return max(cfg.min_load_frac * cfg.rated_w, min(cfg.rated_w, sp))

    def _scheduled(self, t_s: float) -> float:
        cfg = self.config
        if cfg.weekdays_only and self.weather.weekday(t_s) >= 5:
            return 0.0
        h = self.weather.local_hour(t_s)
        for h0, h1, frac in cfg.schedule:
            if h0 <= h < h1:
                return self._clamp(frac * cfg.rated_w)
        return 0.0

    def fuel_rate_lph(self) -> float:
        cfg = self.config
        if self.state == "stopped":
            return 0.0
        idle = cfg.fuel_a_lph_per_kw_rated * cfg.rated_w / 1000.0
        if self.state == "starting":
            return 0.5 * idle
        return idle + cfg.fuel_b_l_per_kwh * self.p_w / 1000.0

    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        cfg = self.config
        # 1. What flowed over the elapsed step, in the state the step began with.
        if dt > 0.0 and self.state != "stopped":
            self.fuel_l -= self.fuel_rate_lph() * dt / 3600.0
            self._e_wh += self.p_w * dt / 3600.0
            if self.fuel_l <= 0.0:
                self.fuel_l = 0.0
                self.state, self.p_w = "stopped", 0.0
        elif dt > 0.0:
            self._e_imp_wh += 0.002 * cfg.rated_w * dt / 3600.0   # block heater, charger
        # 2. Decide the state at t_s.
        target = self._setpoint if self._setpoint is not None else self._scheduled(t_s)
        if self.fuel_l <= 0.0:
            target = 0.0
        if target <= 0.0:
            self.state, self.p_w = "stopped", 0.0
        elif self.state == "stopped":
            self.state = "starting"
            self._ready_at = t_s + cfg.start_delay_s
        if self.state == "starting" and t_s >= self._ready_at:
            self.state = "running"
        if self.state == "running":
            if dt > 0.0:
                self.p_w += (target - self.p_w) * (1.0 - math.exp(-dt / self.RAMP_TAU_S))
            else:
                self.p_w = target
        # 3. Refuel a low tank while stopped.
        tank_pct = 100.0 * self.fuel_l / cfg.tank_l
        if self.state == "stopped":
            if self._refuel_at is None and tank_pct < cfg.refuel_below_pct:
                self._refuel_at = t_s + cfg.refuel_delay_s
            elif self._refuel_at is not None and t_s >= self._refuel_at:
                self.fuel_l = cfg.tank_l
                self._refuel_at = None
        else:
            self._refuel_at = None
        tank_pct = 100.0 * self.fuel_l / cfg.tank_l

        w = self.weather
        i, f = w.position(t_s)
        t_air = w.t_air[i] + (w.t_air[i + 1] - w.t_air[i]) * f
        target_t = t_air + (8.0 + 25.0 * self.p_w / cfg.rated_w if self.running else 2.0)
        if self._t_encl is None:
            self._t_encl = target_t
        elif dt > 0.0:
            self._t_encl += (target_t - self._t_encl) * (1.0 - math.exp(-dt / 600.0))
        p = self.p_w
        if p > 0.0:
            p *= 1.0 + self.rng.gauss(0.0, 0.004)
        v, hz = self._grid(t_s, p)
        q = 0.484 * p                                 # synchronous machine at pf 0.9
        return {
            "p_w": round(p, 1),
            "q_var": round(q, 1),
            "v_v": round(v, 1),
            "i_a": round(self._current(p, q, v), 2),
            "f_hz": round(hz, 3),
            "e_wh": int(self._e_wh),
            "e_imp_wh": int(self._e_imp_wh),
            "t_c": round(self._t_encl, 1),
            "fuel_pct": round(tank_pct, 2),
            "fuel_lph": round(self.fuel_rate_lph(), 2),
            "running": self.running,
        }
