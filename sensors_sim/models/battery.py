"""Battery energy storage with state-of-charge physics.

State is the stored energy E (Wh). Over each step of length dt the power in effect is the
active setpoint (a VPP :meth:`Battery.command`, else the autonomous daily schedule), clamped
to the power limits and then to what keeps SoC inside [soc_min, soc_max] *exactly*:

    discharging (p > 0):  E -= p·dt / η_discharge
    charging    (p < 0):  E += |p|·dt · η_charge
    always:               E -= E · self_discharge · dt

so the reported power integrates to the change of stored energy (tests check this). The
reading reports the mean AC power over the step that ended at ``ts_ms`` and the SoC at
``ts_ms``. Usable capacity is nameplate × SoH, and SoH fades with throughput (per equivalent
full cycle), so a long run shows a slowly shrinking battery.
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

# Autonomous mode: (start_hour, end_hour, setpoint as a fraction of the power limit), local
# time; positive = discharge. Charge on the midday PV surplus, discharge into the evening peak.
DEFAULT_SCHEDULE: tuple[tuple[float, float, float], ...] = ((10.0, 15.0, -0.6), (17.0, 21.0, 0.7))


@dataclass(frozen=True)
class BatteryConfig:
    capacity_wh: float = 20_000.0
    p_max_charge_w: float = 5_000.0
    p_max_discharge_w: float = 5_000.0
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min_pct: float = 5.0
    soc_max_pct: float = 95.0
    soc_init_pct: float = 50.0
    self_discharge_pct_per_day: float = 0.1
    soh_init_pct: float = 98.0
    soh_fade_pct_per_cycle: float = 0.005
    schedule: tuple[tuple[float, float, float], ...] = DEFAULT_SCHEDULE
    noise_w: float = 2.0                 # std of the power measurement, W

    def __post_init__(self) -> None:
        check_positive(self, "capacity_wh", "p_max_charge_w", "p_max_discharge_w",
                       "eta_charge", "eta_discharge", "soh_init_pct")
        check_fraction(self, "eta_charge", "eta_discharge")
        name = type(self).__name__
        for f in ("soc_min_pct", "soc_max_pct", "soc_init_pct", "soh_init_pct"):
            v = getattr(self, f)
            if not 0.0 <= v <= 100.0:
                raise ValueError(f"{name}.{f}: {v} outside 0..100")
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError(f"{name}.soc_min_pct: must be < soc_max_pct ({self.soc_max_pct})")
        if not self.soc_min_pct <= self.soc_init_pct <= self.soc_max_pct:
            raise ValueError(f"{name}.soc_init_pct: {self.soc_init_pct} outside "
                             f"soc_min_pct..soc_max_pct")
        if self.self_discharge_pct_per_day < 0 or self.soh_fade_pct_per_cycle < 0:
            raise ValueError(f"{name}.self_discharge_pct_per_day/soh_fade_pct_per_cycle: "
                             "must be >= 0")
        for k, (h0, h1, frac) in enumerate(self.schedule):
            if not (0 <= h0 < h1 <= 24 and -1 <= frac <= 1):
                raise ValueError(f"{name}.schedule[{k}]: need 0 <= start < end <= 24 and "
                                 f"-1 <= fraction <= 1 (got {(h0, h1, frac)})")


class Battery(DER):
    der_type = "battery"

    def __init__(self, der_id: str, site: Site, config: BatteryConfig | None = None,
                 seed: int = 0, faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
                 e_wh_start: int = 0) -> None:
        super().__init__(der_id, site, seed, faults, interval_s)
        self.config = cfg = config or BatteryConfig()
        self.rated_w = max(cfg.p_max_charge_w, cfg.p_max_discharge_w)
        self.soh_pct = cfg.soh_init_pct
        self.energy_wh = self.usable_wh * cfg.soc_init_pct / 100.0
        self._setpoint: float | None = None
        self._e_wh = float(e_wh_start)
        self._e_imp_wh = float(e_wh_start) * 1.1
        self._t_cab: float | None = None
        self._sd_per_s = cfg.self_discharge_pct_per_day / 100.0 / 86400.0
        self.last_p_w = 0.0

    @property
    def usable_wh(self) -> float:
        return self.config.capacity_wh * self.soh_pct / 100.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.usable_wh

    def command(self, setpoint_w: float | None) -> float | None:
        """Signed setpoint, W (positive = discharge/export), clamped to the power limits;
        None returns the battery to its autonomous schedule. Returns the clamped setpoint."""
        if setpoint_w is None:
            self._setpoint = None
            return None
        cfg = self.config
        sp = float(setpoint_w)
        self._setpoint = max(-cfg.p_max_charge_w, min(cfg.p_max_discharge_w, sp))
        return self._setpoint

    def _scheduled(self, t_s: float) -> float:
        cfg = self.config
        h = self.weather.local_hour(t_s)
        for h0, h1, frac in cfg.schedule:
            if h0 <= h < h1:
                return frac * (cfg.p_max_discharge_w if frac > 0 else cfg.p_max_charge_w)
        return 0.0

    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        cfg = self.config
        sp = self._setpoint if self._setpoint is not None else self._scheduled(t_s)
        p = max(-cfg.p_max_charge_w, min(cfg.p_max_discharge_w, sp))
        cap = self.usable_wh
        e_min = cap * cfg.soc_min_pct / 100.0
        e_max = cap * cfg.soc_max_pct / 100.0
        e = self.energy_wh
        if dt > 0.0:
            e -= e * self._sd_per_s * dt
            h = dt / 3600.0
            if p > 0.0:
                de = p * h / cfg.eta_discharge
                if e - de < e_min:
                    de = max(0.0, e - e_min)
                    p = de * cfg.eta_discharge / h
                e -= de
            elif p < 0.0:
                de = -p * h * cfg.eta_charge
                if e + de > e_max:
                    de = max(0.0, e_max - e)
                    p = -de / cfg.eta_charge / h
                e += de
            else:
                de = 0.0
            if p > 0.0:
                self._e_wh += p * h
            else:
                self._e_imp_wh -= p * h
            if de and cfg.soh_fade_pct_per_cycle:
                self.soh_pct -= cfg.soh_fade_pct_per_cycle * de / (2.0 * cfg.capacity_wh)
                cap = self.usable_wh
                e_max = cap * cfg.soc_max_pct / 100.0
                e = min(e, e_max)
            self.energy_wh = e
        else:
            # No time has passed: nothing flowed yet, report what would flow.
            if (p > 0.0 and e <= e_min) or (p < 0.0 and e >= e_max):
                p = 0.0
        self.last_p_w = p
        # Power available over the next interval, derated near the SoC bounds.
        horizon_h = self.interval_s / 3600.0
        p_dis = min(cfg.p_max_discharge_w, max(0.0, e - e_min) * cfg.eta_discharge / horizon_h)
        p_chg = min(cfg.p_max_charge_w, max(0.0, e_max - e) / cfg.eta_charge / horizon_h)

        w = self.weather
        i, f = w.position(t_s)
        t_air = w.t_air[i] + (w.t_air[i + 1] - w.t_air[i]) * f
        target = 0.5 * t_air + 12.0 + 10.0 * abs(p) / self.rated_w   # conditioned cabinet
        if self._t_cab is None:
            self._t_cab = target
        elif dt > 0.0:
            self._t_cab += (target - self._t_cab) * (1.0 - math.exp(-dt / 900.0))
        p_meas = p + self.rng.gauss(0.0, cfg.noise_w) if cfg.noise_w and p else p
        v, hz = self._grid(t_s, p)
        q = self._volt_var(v, 0.3 * self.rated_w)
        return {
            "p_w": round(p_meas, 1),
            "q_var": round(q, 1),
            "v_v": round(v, 1),
            "i_a": round(self._current(p, q, v), 2),
            "f_hz": round(hz, 3),
            "e_wh": int(self._e_wh),
            "e_imp_wh": int(self._e_imp_wh),
            "t_c": round(self._t_cab, 1),
            "soc_pct": round(min(100.0, max(0.0, 100.0 * e / cap)), 2),
            "soh_pct": round(self.soh_pct, 2),
            "e_cap_wh": round(cap, 1),
            "p_max_chg_w": round(p_chg, 1),
            "p_max_dis_w": round(p_dis, 1),
        }
