"""Building DERs and reproducible mixed fleets.

``make_fleet(n, seed)`` always returns the same fleet for the same arguments: exact type counts
by largest remainder over ``mix``, ids numbered per type (``pv-000000``, ``bat-000003``, …),
DERs spread over sites of ~8 DERs (a feeder street), each site in one of the two TMY climates,
sizes drawn from small-DER ranges, and a per-DER seed derived from (seed, der_id) so adding DERs
to a fleet does not change the existing ones' behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ingest.schema import DER_TYPES
from sensors_sim.models.base import DER, NO_FAULTS, FaultConfig, Site, mix_seed
from sensors_sim.models.battery import Battery, BatteryConfig
from sensors_sim.models.diesel import Diesel, DieselConfig
from sensors_sim.models.ev import EVCharger, EVChargerConfig
from sensors_sim.models.hydro import Hydro, HydroConfig
from sensors_sim.models.pv import PV, PVConfig
from sensors_sim.models.wind import Wind, WindConfig

MODELS: dict[str, type[DER]] = {
    "pv": PV,
    "wind": Wind,
    "hydro": Hydro,
    "battery": Battery,
    "ev_charger": EVCharger,
    "diesel": Diesel,
}
CONFIGS: dict[str, type] = {
    "pv": PVConfig,
    "wind": WindConfig,
    "hydro": HydroConfig,
    "battery": BatteryConfig,
    "ev_charger": EVChargerConfig,
    "diesel": DieselConfig,
}
ID_PREFIX = {"pv": "pv", "wind": "wind", "hydro": "hydro", "battery": "bat",
             "ev_charger": "ev", "diesel": "dg"}

# A residential/commercial VPP: mostly rooftop PV, home batteries and chargers.
DEFAULT_MIX: dict[str, float] = {
    "pv": 0.45, "battery": 0.2, "ev_charger": 0.15, "wind": 0.08, "diesel": 0.07, "hydro": 0.05,
}
DERS_PER_SITE = 8
DEFAULT_SITE = Site("site-0000")


def make_der(der_type: str, der_id: str, site: Site = DEFAULT_SITE, seed: int = 0,
             config: Any = None, faults: FaultConfig = NO_FAULTS, interval_s: float = 10.0,
             e_wh_start: int = 0) -> DER:
    """One DER of ``der_type``; ``config`` is the type's config dataclass, a mapping of its
    fields, or None for defaults."""
    if der_type not in MODELS:
        raise ValueError(f"der_type: unknown {der_type!r} (expected one of {', '.join(MODELS)})")
    if isinstance(config, Mapping):
        cls = CONFIGS[der_type]
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(config) - known)
        if bad:
            raise ValueError(f"config.{bad[0]}: not a field of {cls.__name__}")
        config = cls(**config)
    return MODELS[der_type](der_id, site, config, seed=seed, faults=faults,
                            interval_s=interval_s, e_wh_start=e_wh_start)


def type_counts(n: int, mix: Mapping[str, float] | None = None) -> dict[str, int]:
    """Exact counts per type summing to ``n`` (largest remainder; ties by DER_TYPES order)."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    for t, share in mix.items():
        if t not in DER_TYPES:
            raise ValueError(f"mix.{t}: unknown der_type (expected one of {', '.join(DER_TYPES)})")
        if not share >= 0:
            raise ValueError(f"mix.{t}: share must be >= 0 (got {share})")
    total = sum(mix.values())
    if n < 0:
        raise ValueError(f"n: must be >= 0 (got {n})")
    if total <= 0:
        raise ValueError("mix: shares sum to 0")
    exact = {t: n * mix.get(t, 0.0) / total for t in DER_TYPES}
    counts = {t: int(v) for t, v in exact.items()}
    left = n - sum(counts.values())
    order = sorted(DER_TYPES, key=lambda t: (-(exact[t] - counts[t]), DER_TYPES.index(t)))
    for t in order[:left]:
        counts[t] += 1
    return {t: c for t, c in counts.items() if c}


def _sample_config(der_type: str, rng: random.Random) -> Any:
    if der_type == "pv":
        kw = rng.choice((4, 6, 8, 10, 15, 30, 50, 100))
        return PVConfig(rated_w=kw * 1000.0, inverter_w=kw * 1000.0 * rng.uniform(0.85, 1.0),
                        tilt_deg=25.0, azimuth_deg=180.0)
    if der_type == "wind":
        kw = rng.choice((10, 20, 50, 100))
        return WindConfig(rated_w=kw * 1000.0, hub_height_m=rng.choice((18.0, 24.0, 30.0, 37.0)),
                          rotor_rpm_rated=160.0 / (kw / 10) ** 0.5,
                          exposure=rng.uniform(1.1, 1.6))
    if der_type == "hydro":
        q = rng.choice((0.5, 1.0, 2.0, 4.0))
        return HydroConfig(design_flow_m3s=q, gross_head_m=rng.choice((8.0, 15.0, 25.0, 40.0)),
                           peak_doy=rng.uniform(60, 140))
    if der_type == "battery":
        kwh = rng.choice((5, 10, 13.5, 20, 50, 100, 200))
        p = kwh * 1000.0 * rng.choice((0.25, 0.5))
        return BatteryConfig(capacity_wh=kwh * 1000.0, p_max_charge_w=p, p_max_discharge_w=p,
                             soc_init_pct=rng.uniform(20, 80), soh_init_pct=rng.uniform(85, 100))
    if der_type == "ev_charger":
        amps, phases = rng.choice(((16.0, 1), (32.0, 1), (16.0, 3), (32.0, 3)))
        return EVChargerConfig(max_current_a=amps, phases=phases,
                               sessions_per_day=rng.uniform(1.0, 5.0))
    kw = rng.choice((20, 50, 100, 200))
    return DieselConfig(rated_w=kw * 1000.0, tank_l=kw * rng.uniform(3.0, 6.0),
                        fuel_init_pct=rng.uniform(40, 100))


def make_sites(n_sites: int, seed: int) -> list[Site]:
    """Sites on a 230 V / 50 Hz grid (the paper's European setting). Their weather comes from
    the two TMY files pvlib ships, which happen to be US stations: only the weather is theirs."""
    rng = random.Random(mix_seed(seed, "sites"))
    return [Site(f"site-{k:04d}", climate="greensboro" if rng.random() < 0.75 else "sand_point",
                 seed=mix_seed(seed, "site", k)) for k in range(n_sites)]


def make_fleet(n: int, seed: int = 0, mix: Mapping[str, float] | None = None,
               faults: FaultConfig | Mapping[str, FaultConfig] = NO_FAULTS,
               interval_s: float = 10.0) -> list[DER]:
    """A reproducible mixed fleet of ``n`` DERs (see module doc). ``faults`` applies to every
    DER, or per type as a mapping ``{der_type: FaultConfig}``."""
    counts = type_counts(n, mix)
    sites = make_sites(max(1, -(-n // DERS_PER_SITE)), seed)
    rng = random.Random(mix_seed(seed, "fleet"))
    order = [t for t in DER_TYPES for _ in range(counts.get(t, 0))]
    rng.shuffle(order)
    per_type = dict.fromkeys(DER_TYPES, 0)
    fleet: list[DER] = []
    for der_type in order:
        k = per_type[der_type]
        per_type[der_type] = k + 1
        der_id = f"{ID_PREFIX[der_type]}-{k:06d}"
        der_seed = mix_seed(seed, der_id)
        drng = random.Random(der_seed)
        site = sites[drng.randrange(len(sites))]
        fc = faults.get(der_type, NO_FAULTS) if isinstance(faults, Mapping) else faults
        fleet.append(make_der(
            der_type, der_id, site, seed=der_seed, config=_sample_config(der_type, drng),
            faults=fc, interval_s=interval_s, e_wh_start=drng.randrange(0, 50_000_000),
        ))
    return fleet
