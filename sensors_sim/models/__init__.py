"""Simulated DERs: PV, wind, small hydro, battery, EV charger, diesel genset.

Typical use by a runner::

    fleet = make_fleet(10_000, seed=1)
    filt = Filter()                          # optional, sensors_sim.filter
    for der in fleet:
        reading = der.read(t_ms, filt)       # None: dropout or filtered out
        if reading is not None:
            body = ingest.schema.encode(reading)
"""

from __future__ import annotations

from sensors_sim.models.base import DER, NO_FAULTS, FaultConfig, Site
from sensors_sim.models.battery import Battery, BatteryConfig
from sensors_sim.models.diesel import Diesel, DieselConfig
from sensors_sim.models.ev import EVCharger, EVChargerConfig
from sensors_sim.models.fleet import (
    CONFIGS,
    DEFAULT_MIX,
    MODELS,
    make_der,
    make_fleet,
    make_sites,
    type_counts,
)
from sensors_sim.models.hydro import Hydro, HydroConfig
from sensors_sim.models.pv import PV, PVConfig
from sensors_sim.models.wind import Wind, WindConfig

__all__ = [
    "CONFIGS",
    "DEFAULT_MIX",
    "DER",
    "MODELS",
    "NO_FAULTS",
    "PV",
    "Battery",
    "BatteryConfig",
    "Diesel",
    "DieselConfig",
    "EVCharger",
    "EVChargerConfig",
    "FaultConfig",
    "Hydro",
    "HydroConfig",
    "PVConfig",
    "Site",
    "Wind",
    "WindConfig",
    "make_der",
    "make_fleet",
    "make_sites",
    "type_counts",
]
