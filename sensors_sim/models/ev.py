"""AC EV charger (one connector) with arriving and leaving vehicles, speaking OCPP states.

Vehicles arrive as a Poisson process whose rate follows the time of day (a mixture of
Gaussians around ``arrival_peaks_h``: workplace mornings, home evenings), each wanting a
log-normally distributed energy and staying an exponentially distributed time (at least 20
minutes). The session walks the OCPP 1.6 states: Available → Preparing → Charging →
SuspendedEV (battery full) / SuspendedEVSE (offered current below the IEC 61851 minimum of
6 A) → Finishing → Available. Charging power is the offered current (charger limit, or a VPP
smart-charging :meth:`EVCharger.command`) limited by the car's on-board charger, and tapers
over the last 15 % of the requested energy (the CV phase).

Sign: a charging EV imports, so ``p_w`` is negative.
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
    check_positive,
)

MIN_CURRENT_A = 6.0


@dataclass(frozen=True)
class EVChargerConfig:
    max_current_a: float = 32.0
    phases: int = 3
    sessions_per_day: float = 3.0
    arrival_peaks_h: tuple[float, ...] = (8.5, 18.0)
    arrival_spread_h: float = 1.5
    mean_energy_wh: float = 15_000.0
    mean_dwell_h: float = 4.0
    onboard_charger_w: tuple[float, ...] = (3_700.0, 7_400.0, 11_000.0, 22_000.0)
    prepare_s: float = 60.0
    finish_s: float = 30.0

    def __post_init__(self) -> None:
        check_positive(self, "max_current_a", "arrival_spread_h", "mean_energy_wh",
                       "mean_dwell_h", "prepare_s", "finish_s")
        name = type(self).__name__
        if self.phases not in (1, 3):
            raise ValueError(f"{name}.phases: must be 1 or 3 (got {self.phases})")
        if self.sessions_per_day < 0:
            raise ValueError(f"{name}.sessions_per_day: must be >= 0")
        if not self.arrival_peaks_h or not all(0 <= h < 24 for h in self.arrival_peaks_h):
            raise ValueError(f"{name}.arrival_peaks_h: need hours within 0..24")
        if not self.onboard_charger_w or min(self.onboard_charger_w) <= 0:
            raise ValueError(f"{name}.onboard_charger_w: need positive powers")


@dataclass
class Session:
    session_id: str
    need_wh: float
    onboard_w: float
    depart_s: float
    delivered_wh: float = 0.0


class EVCharger(DER):
    der_type = "ev_charger"

    def __init__(self, der_id: str, site: Site, config: EVChargerConfig | None = None,
                 seed: int = 0, faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
                 e_wh_start: int = 0) -> None:
        cfg = config or EVChargerConfig()
        super().__init__(der_id, site, seed, faults, interval_s, phases=cfg.phases)
        self.config = cfg
        self.rated_w = cfg.max_current_a * cfg.phases * site.v_ln
        self.status = "Available"
        self.session: Session | None = None
        self.sessions_started = 0
        self._until = 0.0                      # end of Preparing / Finishing
        self._limit_a: float | None = None
        self._e_imp_wh = float(e_wh_start)
        self._t_cab: float | None = None
        self.last_p_w = 0.0
        norm = len(cfg.arrival_peaks_h) * cfg.arrival_spread_h * math.sqrt(2 * math.pi)
        self._rate_k = cfg.sessions_per_day / norm / 3600.0   # per second per unit density

    def command(self, setpoint_w: float | None) -> float | None:
        """Smart charging: limit the charging power to ``|setpoint_w|`` W (signed like
        ``p_w``, so -7000 and 7000 both mean "at most 7 kW"; V2G is not modelled). 0 pauses
        charging (SuspendedEVSE); None lifts the limit. Returns the power limit applied, W."""
        if setpoint_w is None:
            self._limit_a = None
            return None
        lim_w = min(abs(float(setpoint_w)), self.rated_w)
        self._limit_a = lim_w / (self.config.phases * self.site.v_ln)
        return lim_w

    def arrival_rate(self, t_s: float) -> float:
        """Expected arrivals per second at ``t_s``."""
        cfg = self.config
        h = self.weather.local_hour(t_s)
        s2 = 2.0 * cfg.arrival_spread_h ** 2
        dens = 0.0
        for pk in cfg.arrival_peaks_h:
            d = abs(h - pk)
            d = min(d, 24.0 - d)
            dens += math.exp(-d * d / s2)
        return self._rate_k * dens

    def _offered_a(self) -> float:
        lim = self._limit_a
        a = self.config.max_current_a
        return a if lim is None or lim >= a else lim

    def _physics(self, t_s: float, dt: float) -> dict[str, Any]:
        cfg = self.config
        rng = self.rng
        s = self.session
        p = 0.0
        # Energy flowed over the elapsed step at the power of the previous reading.
        if s is not None and dt > 0.0 and self.last_p_w < 0.0:
            s.delivered_wh += -self.last_p_w * dt / 3600.0
            self._e_imp_wh += -self.last_p_w * dt / 3600.0
        # State transitions at t_s.
        if self.status == "Available":
            if dt > 0.0 and rng.random() < 1.0 - math.exp(-self.arrival_rate(t_s) * dt):
                self.sessions_started += 1
                mu = math.log(cfg.mean_energy_wh) - 0.5 * 0.6 ** 2
                self.session = s = Session(
                    session_id=f"{self.der_id}-{self.sessions_started}",
                    need_wh=min(90_000.0, rng.lognormvariate(mu, 0.6)),
                    onboard_w=rng.choice(cfg.onboard_charger_w),
                    depart_s=t_s + max(1200.0, rng.expovariate(1.0 / (cfg.mean_dwell_h * 3600))),
                )
                self.status = "Preparing"
                self._until = t_s + cfg.prepare_s
        elif s is not None and t_s >= s.depart_s and self.status != "Finishing":
            self.status = "Finishing"
            self._until = t_s + cfg.finish_s
        elif self.status == "Preparing" and t_s >= self._until:
            self.status = "Charging"
        elif self.status == "Finishing" and t_s >= self._until:
            self.status = "Available"
            self.session = s = None
        offered = self._offered_a()
        if self.status in ("Charging", "SuspendedEVSE") and s is not None:
            if s.delivered_wh >= s.need_wh:
                self.status = "SuspendedEV"
            elif offered < MIN_CURRENT_A:
                self.status = "SuspendedEVSE"
            else:
                self.status = "Charging"
        if self.status == "Charging" and s is not None:
            v_nom = self.site.v_ln
            amps = min(offered, s.onboard_w / (cfg.phases * v_nom))
            remaining = s.need_wh - s.delivered_wh
            taper = remaining / (0.15 * s.need_wh)
            if taper < 1.0:
                amps *= max(0.1, taper)
            p = -amps * cfg.phases * v_nom * (1.0 + rng.gauss(0.0, 0.002))
        self.last_p_w = p
        v, hz = self._grid(t_s, p)
        q = 0.05 * p                                   # on-board charger PFC, pf ≈ 0.999
        w = self.weather
        i, f = w.position(t_s)
        t_air = w.t_air[i] + (w.t_air[i + 1] - w.t_air[i]) * f
        target = t_air + 3.0 + 15.0 * -p / self.rated_w
        if self._t_cab is None:
            self._t_cab = target
        elif dt > 0.0:
            self._t_cab += (target - self._t_cab) * (1.0 - math.exp(-dt / 600.0))
        out: dict[str, Any] = {
            "p_w": round(p, 1),
            "q_var": round(q, 1),
            "v_v": round(v, 1),
            "i_a": round(self._current(p, q, v), 2),
            "f_hz": round(hz, 3),
            "e_wh": 0,
            "e_imp_wh": int(self._e_imp_wh),
            "t_c": round(self._t_cab, 1),
            "connector_status": self.status,
        }
        if s is not None:
            out["session_id"] = s.session_id
            out["session_wh"] = round(s.delivered_wh, 1)
        out["i_offered_a"] = round(offered, 1)
        return out
