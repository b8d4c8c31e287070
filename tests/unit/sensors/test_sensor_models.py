"""DER models: physically plausible, schema-valid, reproducible; faults behave as documented."""

from __future__ import annotations

import calendar
import re
import statistics
from itertools import pairwise

import pytest

from ingest import schema
from sensors_sim.models import (
    MODELS,
    Battery,
    BatteryConfig,
    Diesel,
    DieselConfig,
    EVCharger,
    EVChargerConfig,
    FaultConfig,
    Hydro,
    HydroConfig,
    PVConfig,
    Site,
    Wind,
    WindConfig,
    make_der,
    make_fleet,
    profiles,
    type_counts,
)
from sensors_sim.models.pv import PV

SITE = Site("site-0001", climate="greensboro", seed=5)
TZ_S = 5 * 3600                                          # Greensboro: UTC-5, standard time
MONDAY_JUNE = calendar.timegm((2025, 6, 16, 0, 0, 0)) + TZ_S   # local midnight, Monday


def run(der, start_s: float, days: float, step_s: float) -> list[dict]:
    out = []
    for k in range(int(days * 86400 / step_s)):
        r = der.read(int((start_s + k * step_s) * 1000))
        if r is not None:
            out.append(r)
    return out


def local_hour(r: dict) -> float:
    return ((r["ts_ms"] / 1000 - TZ_S) % 86400) / 3600


def assert_all_valid(readings: list[dict]) -> None:
    for r in readings:
        res = schema.validate(schema.encode(r))
        assert res.ok, (res.reason, r)


# -- PV ------------------------------------------------------------------------------------------

def test_pv_over_a_june_week_is_zero_at_night_and_bounded_by_its_rating():
    pv = PV("pv-000001", SITE, PVConfig(rated_w=10_000.0, inverter_w=9_000.0), seed=1)
    rs = run(pv, MONDAY_JUNE, 7, 60)
    assert_all_valid(rs)
    night = [r for r in rs if local_hour(r) < 4.5 or local_hour(r) > 21.0]
    assert night and all(r["p_w"] == 0 and r["irr_wm2"] == 0 and r["i_a"] == 0 for r in night)
    noon = [r for r in rs if 11.5 <= local_hour(r) <= 13.5]
    assert statistics.mean(r["p_w"] for r in noon) > 2_000
    assert max(r["p_w"] for r in rs) <= 9_000.0
    for r in rs:
        assert r["p_w"] >= 0 and 0 <= r["irr_wm2"] <= 1450
        if r["p_w"] > 0:
            assert r["dc_w"] >= r["p_w"]                 # inverter losses
            assert r["t_mod_c"] >= -40
    # Energy register: non-decreasing and equal to the integral of power.
    e = [r["e_wh"] for r in rs]
    assert e == sorted(e)
    integral = sum(r["p_w"] * 60 for r in rs[1:]) / 3600
    assert e[-1] - e[0] == pytest.approx(integral, rel=0.03)
    # A 10 kWp array in North Carolina in June: roughly 25-60 kWh a day.
    assert 25 <= (e[-1] - e[0]) / 7 / 1000 <= 60


def test_pv_at_one_site_share_the_clouds():
    a = PV("pv-a", SITE, PVConfig(rated_w=5_000.0), seed=1)
    b = PV("pv-b", SITE, PVConfig(rated_w=5_000.0), seed=2)
    other = PV("pv-c", Site("site-0002", seed=99), PVConfig(rated_w=5_000.0), seed=3)
    start = MONDAY_JUNE + 9 * 3600
    ra, rb, rc = (run(d, start, 0.25, 10) for d in (a, b, other))
    ia, ib, ic = ([r["irr_wm2"] for r in rs] for rs in (ra, rb, rc))
    assert statistics.correlation(ia, ib) > 0.97
    assert statistics.correlation(ia, ic) < statistics.correlation(ia, ib)


def test_pv_curtailment_command_caps_export():
    pv = PV("pv-000002", SITE, PVConfig(rated_w=10_000.0, cloud_variability=0.0), seed=1)
    t = MONDAY_JUNE + 12 * 3600
    free = pv.read(t * 1000)["p_w"]
    assert free > 3_000
    assert pv.command(1_000.0) == 1_000.0
    assert pv.read((t + 10) * 1000)["p_w"] <= 1_000.0
    pv.command(None)
    assert pv.read((t + 20) * 1000)["p_w"] > 3_000


# -- wind ----------------------------------------------------------------------------------------

def test_wind_stays_within_rating_and_follows_its_power_curve():
    wt = Wind("wind-000001", Site("site-0003", climate="sand_point", seed=3),
              WindConfig(rated_w=20_000.0), seed=2)
    rs = run(wt, MONDAY_JUNE, 7, 60)
    assert_all_valid(rs)
    curve = wt.curve
    assert any(r["p_w"] > 0.5 * 20_000 for r in rs)
    for r in rs:
        assert -0.01 * 20_000 <= r["p_w"] <= 20_000.0
        assert r["rotor_rpm"] >= 0 and r["wind_ms"] >= 0
        if r["wind_ms"] < curve.cut_in_ms * 0.9:
            assert r["p_w"] <= 0


def test_wind_storm_control_stops_above_cut_out():
    wt = Wind("wind-000002", Site("site-0003", climate="sand_point", seed=3),
              WindConfig(rated_w=20_000.0), seed=2)
    april_storm = calendar.timegm((2025, 4, 19, 0, 0, 0)) + 9 * 3600   # TMY day 110: 23 m/s
    rs = run(wt, april_storm, 3, 30)
    assert_all_valid(rs)
    stormy = [r for r in rs if r["wind_ms"] >= 25.0]
    assert stormy, "no storm in the test window"
    assert all(r["p_w"] <= 0 and r["rotor_rpm"] == 0 for r in stormy)


def test_power_curve_comes_from_windpowerlib_and_is_normalised():
    pc = profiles.power_curve("E-53/800")
    assert "windpowerlib" in pc.source
    assert pc.fraction(0.0) == 0.0 and pc.fraction(30.0) == 0.0
    assert pc.fraction(15.0) == pytest.approx(1.0)
    fr = [pc.fraction(u / 10) for u in range(0, 250)]
    assert fr == sorted(fr) and max(fr) <= 1.0


# -- hydro ---------------------------------------------------------------------------------------

def test_hydro_respects_design_flow_head_and_rating():
    h = Hydro("hydro-000001", SITE, HydroConfig(design_flow_m3s=1.0, gross_head_m=15.0), seed=3)
    rs = run(h, MONDAY_JUNE + 60 * 86400, 7, 300)       # late summer: part load
    assert_all_valid(rs)
    for r in rs:
        assert 0 <= r["flow_m3s"] <= 1.0
        assert 0 < r["head_m"] <= 15.0
        assert r["p_w"] <= h.rated_w * 1.03
        if r["flow_m3s"] == 0:
            assert r["p_w"] <= 0
    assert statistics.mean(r["flow_m3s"] for r in rs) < 1.0


# -- battery -------------------------------------------------------------------------------------

def _ideal_battery(**kw) -> Battery:
    cfg = BatteryConfig(capacity_wh=10_000.0, p_max_charge_w=3_000.0, p_max_discharge_w=4_000.0,
                        eta_charge=0.95, eta_discharge=0.9, soc_init_pct=50.0,
                        self_discharge_pct_per_day=0.0, soh_fade_pct_per_cycle=0.0, noise_w=0.0,
                        **kw)
    return Battery("bat-000001", SITE, cfg, seed=4)


def test_battery_soc_is_consistent_with_energy_integration():
    bat = _ideal_battery()
    cfg = bat.config
    rs = run(bat, MONDAY_JUNE, 7, 60)
    assert_all_valid(rs)
    e = bat.usable_wh * 0.5
    for r in rs[1:]:
        p = r["p_w"]
        e += -p * 60 / 3600 / cfg.eta_discharge if p > 0 else -p * 60 / 3600 * cfg.eta_charge
    assert bat.energy_wh == pytest.approx(e, abs=1.0)
    assert rs[-1]["soc_pct"] == pytest.approx(100 * e / bat.usable_wh, abs=0.02)
    socs = [r["soc_pct"] for r in rs]
    assert min(socs) >= cfg.soc_min_pct - 1e-6 and max(socs) <= cfg.soc_max_pct + 1e-6
    assert any(r["p_w"] > 0 for r in rs) and any(r["p_w"] < 0 for r in rs)
    # Registers count exported/imported energy.
    exported = sum(r["p_w"] for r in rs[1:] if r["p_w"] > 0) * 60 / 3600
    assert rs[-1]["e_wh"] - rs[0]["e_wh"] == pytest.approx(exported, abs=2)


def test_battery_commands_are_clamped_and_soc_bounds_hold():
    bat = _ideal_battery()
    assert bat.command(1e9) == 4_000.0
    assert bat.command(-1e9) == -3_000.0
    bat.command(4_000.0)
    rs = run(bat, MONDAY_JUNE, 0.25, 60)                 # 6 h at full discharge
    assert_all_valid(rs)
    assert rs[-1]["soc_pct"] == pytest.approx(bat.config.soc_min_pct, abs=0.01)
    assert rs[-1]["p_w"] == 0 and rs[-1]["p_max_dis_w"] == 0
    assert all(r["p_w"] <= 4_000.0 for r in rs)
    bat.command(-3_000.0)
    rs = run(bat, MONDAY_JUNE + 0.25 * 86400, 0.5, 60)
    assert rs[-1]["soc_pct"] == pytest.approx(bat.config.soc_max_pct, abs=0.01)
    assert rs[-1]["p_max_chg_w"] == 0 and rs[-1]["p_w"] == 0
    bat.command(None)                                    # back to the schedule


def test_battery_self_discharge_and_fade():
    bat = Battery("bat-000002", SITE, BatteryConfig(schedule=(), self_discharge_pct_per_day=1.0,
                                                    noise_w=0.0), seed=4)
    e0 = bat.energy_wh
    run(bat, MONDAY_JUNE, 2, 600)
    assert bat.energy_wh == pytest.approx(e0 * (1 - 0.01) ** 2, rel=1e-3)
    cyc = Battery("bat-000003", SITE, BatteryConfig(soh_fade_pct_per_cycle=0.5), seed=4)
    run(cyc, MONDAY_JUNE, 7, 300)
    assert cyc.soh_pct < cyc.config.soh_init_pct


# -- EV charger ----------------------------------------------------------------------------------

def test_ev_sessions_arrive_charge_and_leave():
    ev = EVCharger("ev-000001", SITE, EVChargerConfig(sessions_per_day=4.0), seed=5)
    rs = run(ev, MONDAY_JUNE, 7, 30)
    assert_all_valid(rs)
    assert ev.sessions_started >= 5
    statuses = {r["connector_status"] for r in rs}
    assert {"Available", "Preparing", "Charging", "Finishing"} <= statuses
    by_session: dict[str, list[float]] = {}
    for r in rs:
        assert r["p_w"] <= 0 and -r["p_w"] <= ev.rated_w * 1.01
        assert r["i_a"] <= ev.config.max_current_a * 1.02 + 0.5
        if r["connector_status"] != "Charging":
            assert r["p_w"] == 0
        if "session_id" in r:
            by_session.setdefault(r["session_id"], []).append(r["session_wh"])
    assert len(by_session) >= 5
    for energies in by_session.values():
        assert energies == sorted(energies)
        assert energies[-1] <= 90_000


def test_ev_smart_charging_command_limits_and_pauses():
    ev = EVCharger("ev-000002", SITE, EVChargerConfig(sessions_per_day=24.0), seed=6)
    t = MONDAY_JUNE + 8 * 3600
    for k in range(2000):
        r = ev.read((t + 10 * k) * 1000)
        if r["connector_status"] == "Charging":
            break
    assert r["connector_status"] == "Charging"
    t += 10 * k
    assert ev.command(-4_000.0) == 4_000.0
    r = ev.read((t + 10) * 1000)
    assert -r["p_w"] <= 4_000.0 * 1.01 and r["i_offered_a"] < ev.config.max_current_a
    ev.command(0.0)
    r = ev.read((t + 20) * 1000)
    assert r["connector_status"] == "SuspendedEVSE" and r["p_w"] == 0
    assert schema.validate(r).ok
    ev.command(None)
    r = ev.read((t + 30) * 1000)
    assert r["connector_status"] in ("Charging", "SuspendedEV", "Finishing")


# -- diesel --------------------------------------------------------------------------------------

def test_diesel_runs_on_schedule_and_burns_fuel_only_while_running():
    dg = Diesel("dg-000001", SITE, DieselConfig(rated_w=50_000.0, tank_l=2_000.0), seed=6)
    rs = run(dg, MONDAY_JUNE, 7, 60)
    assert_all_valid(rs)
    running = [r for r in rs if r["running"]]
    assert running and all(17 <= local_hour(r) < 20.02 for r in running)
    weekend = [r for r in rs if (r["ts_ms"] / 1000 - MONDAY_JUNE) // 86400 >= 5]
    assert not any(r["running"] for r in weekend)
    for prev, r in pairwise(rs):
        assert r["p_w"] <= 50_000.0
        if not r["running"]:
            assert r["p_w"] == 0 and r["fuel_lph"] == 0
        if prev["running"] and r["running"]:
            assert r["fuel_pct"] <= prev["fuel_pct"]
        if not prev["running"] and not r["running"]:
            assert r["fuel_pct"] == prev["fuel_pct"]        # no refuel needed at 80 %


def test_diesel_start_stop_commands_empty_tank_and_refuel():
    dg = Diesel("dg-000002", SITE, DieselConfig(rated_w=20_000.0, tank_l=30.0, schedule=(),
                                                refuel_delay_s=3600.0), seed=7)
    t = MONDAY_JUNE + 3 * 3600
    dg.start(20_000.0)
    rs = run(dg, t, 0.5, 60)
    assert_all_valid(rs)
    assert rs[1]["running"] and rs[3]["p_w"] > 15_000
    dry = next(i for i, r in enumerate(rs) if r["fuel_pct"] == 0)
    assert not rs[dry]["running"] and rs[dry]["p_w"] == 0             # ran dry and stopped
    refuel = next(i for i, r in enumerate(rs) if i > dry and r["fuel_pct"] == 100.0)
    assert 55 <= refuel - dry <= 65                                     # refuelled after 1 h
    assert all(not r["running"] for r in rs[dry:refuel])
    assert rs[refuel + 1]["running"]                   # the command still stands: restarts
    dg.stop()
    r = dg.read(int((t + 0.5 * 86400 + 60) * 1000))
    assert not r["running"] and r["p_w"] == 0


# -- fleet, seeds, faults ------------------------------------------------------------------------

def _trace(fleet, steps=60, start=MONDAY_JUNE + 10 * 3600):
    return [schema.encode(r) for k in range(steps) for d in fleet
            if (r := d.read(int((start + 10 * k) * 1000))) is not None]


def test_same_seed_same_readings_other_seed_other_readings():
    faults = FaultConfig(p_stuck=0.02, p_dropout=0.02, p_spike=0.02)
    a = _trace(make_fleet(40, seed=3, faults=faults))
    b = _trace(make_fleet(40, seed=3, faults=faults))
    c = _trace(make_fleet(40, seed=4, faults=faults))
    assert a == b
    assert a != c


def test_make_fleet_mix_ids_and_sites():
    fleet = make_fleet(1000, seed=1)
    counts = type_counts(1000)
    assert sum(counts.values()) == 1000
    assert {t: sum(d.der_type == t for d in fleet) for t in counts} == counts
    ids = [d.der_id for d in fleet]
    assert len(set(ids)) == 1000
    assert "pv-000000" in ids and "bat-000000" in ids
    assert all(re.fullmatch(schema.ID_PATTERN, i) for i in ids)
    assert 100 <= len({d.site.site_id for d in fleet}) <= 125
    only = make_fleet(10, seed=1, mix={"battery": 1.0})
    assert {d.der_type for d in only} == {"battery"}
    with pytest.raises(ValueError, match=r"mix.nuclear: unknown der_type"):
        make_fleet(10, mix={"nuclear": 1.0})
    # Growing a fleet keeps the existing DERs' seeds (they are derived from the id).
    small = {d.der_id: d.seed for d in make_fleet(100, seed=1)}
    assert all(small[d.der_id] == d.seed for d in fleet if d.der_id in small)


def test_seq_counts_published_readings_from_zero():
    der = make_der("battery", "bat-000009", SITE, seed=1,
                   faults=FaultConfig(p_dropout=0.2, dropout_s=20.0))
    seqs = [r["seq"] for r in run(der, MONDAY_JUNE, 0.1, 10)]
    assert seqs[0] == 0 and seqs == list(range(len(seqs)))
    assert len(seqs) < 864                               # dropouts consumed no numbers


def test_spike_fault_yields_readings_the_validator_rejects():
    der = make_der("pv", "pv-000009", SITE, seed=1, faults=FaultConfig(p_spike=0.2))
    rs = run(der, MONDAY_JUNE + 10 * 3600, 0.05, 10)
    rejected = [schema.validate(r) for r in rs if not schema.validate(r)]
    assert 0.1 * len(rs) <= len(rejected) <= 0.35 * len(rs)
    assert all("above max" in v.reason for v in rejected)


def test_stuck_fault_repeats_values_and_flags_them_suspect():
    der = make_der("wind", "wind-000009", SITE, seed=1,
                   faults=FaultConfig(p_stuck=0.05, stuck_s=120.0))
    rs = run(der, MONDAY_JUNE, 0.2, 10)
    assert_all_valid(rs)
    suspect = [i for i, r in enumerate(rs) if r["quality"] == "suspect"]
    assert suspect
    skip = {"seq", "ts_ms", "quality"}
    for i in suspect:
        assert {k: v for k, v in rs[i].items() if k not in skip} == \
               {k: v for k, v in rs[i - 1].items() if k not in skip}


def test_faults_do_not_change_the_physics():
    plain = _ideal_battery()
    faulty = Battery("bat-000001", SITE, plain.config, seed=4,
                     faults=FaultConfig(p_stuck=0.1, p_dropout=0.1, p_spike=0.1))
    run(plain, MONDAY_JUNE, 1, 60)
    run(faulty, MONDAY_JUNE, 1, 60)
    assert faulty.energy_wh == plain.energy_wh


def test_time_must_not_go_backwards():
    der = make_der("pv", "pv-000010", SITE)
    der.read(2_000_000_000_000)
    with pytest.raises(ValueError, match=r"t_ms: .* before the previous step"):
        der.read(1_999_999_999_000)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: BatteryConfig(soc_min_pct=90.0, soc_max_pct=50.0),
     "BatteryConfig.soc_min_pct: must be < soc_max_pct"),
    (lambda: BatteryConfig(capacity_wh=0), "BatteryConfig.capacity_wh: must be > 0"),
    (lambda: FaultConfig(p_spike=2.0), "FaultConfig.p_spike: must be within 0..1"),
    (lambda: FaultConfig(stuck_quality="meh"), "FaultConfig.stuck_quality: unknown 'meh'"),
    (lambda: PVConfig(tilt_deg=120), "PVConfig.tilt_deg: 120 outside 0..90"),
    (lambda: EVChargerConfig(phases=2), "EVChargerConfig.phases: must be 1 or 3"),
    (lambda: DieselConfig(schedule=((20.0, 18.0, 0.5),)), r"DieselConfig.schedule\[0\]"),
    (lambda: Site("bad site"), "Site.site_id"),
    (lambda: Site("s1", climate="mars"), "Site.climate: unknown 'mars'"),
    (lambda: make_der("nuclear", "n-1"), "der_type: unknown 'nuclear'"),
    (lambda: make_der("pv", "pv-1", config={"rated_kw": 5}), "config.rated_kw: not a field"),
])
def test_config_errors_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_every_model_reports_exactly_its_schema_fields():
    for der_type in MODELS:
        der = make_der(der_type, f"x-{der_type}", SITE, seed=1)
        r = der.read(MONDAY_JUNE * 1000)
        names = set(schema.measurement_names(der_type))
        required = {f.name for f in schema.fields_for(der_type)
                    if f.required_for(der_type) and not f.envelope}
        assert required <= set(r) - set(schema.ENVELOPE_NAMES) <= names


def test_profiles_come_from_pvlib_and_the_fallback_has_the_same_shape():
    w = profiles.weather("greensboro")
    assert "pvlib" in w.source and "723170TYA" in w.source
    yearly_ghi_kwh = sum(w.ghi[:-1]) * profiles.BIN_S / 3600 / 1000
    assert 1400 <= yearly_ghi_kwh <= 1700                 # TMY3 Greensboro: ≈1566 kWh/m²
    aw = profiles.analytic_weather("greensboro")
    assert "analytic" in aw.source
    i, _ = aw.position(MONDAY_JUNE)                       # local midnight
    assert aw.ghi[i] == 0.0
    i, _ = aw.position(MONDAY_JUNE + 12 * 3600)
    assert aw.ghi[i] > 300
    pc = profiles.analytic_power_curve()
    assert pc.fraction(2.0) == 0.0 and pc.fraction(13.0) == 1.0 and pc.fraction(26.0) == 0.0
