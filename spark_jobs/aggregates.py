"""Windowed VPP aggregates per site and DER type, from the raw readings.

Two stages over event-time tumbling windows: first each DER's mean over the window (so a DER
reporting every second weighs the same as one reporting every ten), then the sum over the DERs
of a site and type. Emitted in append mode once the watermark closes a window.

Per (window, site, DER type):

* ``ders``           DERs that reported in the window
* ``p_w``            net active power, W (export positive)
* ``gen_w``          generation: positive power of PV, wind, hydro and diesel, W
* ``load_w``         consumption: charging EVs and batteries, W (positive number)
* ``storage_wh``     energy stored in batteries (SoC x usable capacity), Wh
* ``chg_avail_w`` / ``dis_avail_w``  battery charge / discharge power available now, W

:func:`reference` computes the same from a pandas frame of readings; the tests compare them.
"""

from __future__ import annotations

from monitor.schema import AGGREGATE_FIELDS

GENERATORS = ("pv", "wind", "hydro", "diesel")
AGG_COLUMNS = AGGREGATE_FIELDS  # one list, shared with the InfluxDB schema


def build(readings, window_s: int):
    """The streaming plan: ``readings`` has the raw table's columns (event_time included) and
    its event-time watermark already defined (a query may define only one)."""
    from pyspark.sql import functions as F

    w = f"{window_s} seconds"
    per_der = (
        readings
        .groupBy(F.window("event_time", w).alias("window"), "der_id", "site_id", "der_type")
        .agg(F.avg("p_w").alias("p_w"),
             F.avg(F.col("soc_pct") * F.col("e_cap_wh") / 100.0).alias("stored_wh"),
             F.avg("p_max_chg_w").alias("chg_w"),
             F.avg("p_max_dis_w").alias("dis_w"))
    )
    gen = F.when(F.col("der_type").isin(*GENERATORS), F.greatest(F.col("p_w"), F.lit(0.0)))
    return (
        per_der
        .groupBy(F.window(F.window_time("window"), w).alias("window"), "site_id", "der_type")
        .agg(F.count("der_id").alias("ders"),
             F.sum("p_w").alias("p_w"),
             F.coalesce(F.sum(gen), F.lit(0.0)).alias("gen_w"),
             F.sum(F.greatest(-F.col("p_w"), F.lit(0.0))).alias("load_w"),
             F.coalesce(F.sum("stored_wh"), F.lit(0.0)).alias("storage_wh"),
             F.coalesce(F.sum("chg_w"), F.lit(0.0)).alias("chg_avail_w"),
             F.coalesce(F.sum("dis_w"), F.lit(0.0)).alias("dis_avail_w"))
        .select(F.col("window.start").alias("window_start"),
                F.col("window.end").alias("window_end"), "site_id", "der_type", *AGG_COLUMNS)
    )


def reference(readings, window_s: int):
    """The same aggregates with pandas, independently: ``readings`` has ts_ms, der_id, site_id,
    der_type, p_w, soc_pct, e_cap_wh, p_max_chg_w, p_max_dis_w (duplicates already removed)."""
    import pandas as pd

    df = readings.copy()
    df["window_start"] = pd.to_datetime((df["ts_ms"] // (window_s * 1000)) * window_s * 1000,
                                        unit="ms", utc=True)
    df["stored_wh"] = df["soc_pct"] * df["e_cap_wh"] / 100.0
    per = (df.groupby(["window_start", "der_id", "site_id", "der_type"], as_index=False)
             .agg(p_w=("p_w", "mean"), stored_wh=("stored_wh", "mean"),
                  chg_w=("p_max_chg_w", "mean"), dis_w=("p_max_dis_w", "mean")))
    per["gen_w"] = per["p_w"].clip(lower=0).where(per["der_type"].isin(GENERATORS), 0.0)
    per["load_w"] = (-per["p_w"]).clip(lower=0)
    out = (per.groupby(["window_start", "site_id", "der_type"], as_index=False)
              .agg(ders=("der_id", "count"), p_w=("p_w", "sum"), gen_w=("gen_w", "sum"),
                   load_w=("load_w", "sum"), storage_wh=("stored_wh", "sum"),
                   chg_avail_w=("chg_w", "sum"), dis_avail_w=("dis_w", "sum")))
    return out.fillna(0.0)
