"""Feature vector from synthetic windows: reductions, summing per time bucket, defaults."""

from __future__ import annotations

import math

import pytest
from as_support import T0, lag, node, progress, queue, window

from autoscaler.features import FEATURE_NAMES, INPUTS, FeatureVector, as_row, extract
from diagnoser.window import MetricsWindow
from monitor.schema import ALL


def steady_points() -> list[dict]:
    pts = []
    for i in range(7):                       # every 10 s over [T0, T0 + 60]
        t = T0 + 10 * i
        pts.append(node(t, "worker-0", 40 + i, 60))          # 40..46
        pts.append(node(t, "worker-1", 80, 70))
        pts.append(node(t, "channel-0", 20, 30, pool="queue"))
        pts.append(queue(t, "channel-0", 1e6 + 500 * (t - T0), 1000, 900))
        pts.append(lag(t, "channel-0", 100 * (t - T0)))        # grows 100/s
        pts.append(progress(t, 950, 2000, 1200 + 10 * i))
    return pts


def test_node_features_reduce_over_time_then_across_nodes():
    f = extract(window(steady_points(), T0, T0 + 60, {"queue": 1, "processing": 2}))
    assert f["processing_cpu_mean_last"] == pytest.approx((46 + 80) / 2)
    assert f["processing_cpu_max_last"] == pytest.approx(80)
    assert f["processing_cpu_mean_mean"] == pytest.approx((43 + 80) / 2)
    assert f["processing_cpu_max_mean"] == pytest.approx(80)
    assert f["processing_cpu_sum_mean"] == pytest.approx(123)
    assert f["processing_mem_max_last"] == pytest.approx(70)
    assert f["queue_cpu_mean_last"] == pytest.approx(20)
    assert f["active_processing"] == 2 and f["active_queue"] == 1
    assert f.missing == ()


def test_queue_lag_and_stream_features():
    f = extract(window(steady_points(), T0, T0 + 60))
    assert f["stream_lag_slope"] == pytest.approx(100, rel=1e-6)
    assert f["stream_lag_last"] == pytest.approx(6000)
    assert f["queue_messages_slope"] == pytest.approx(500, rel=1e-6)
    assert f["publish_rate_mean"] == pytest.approx(1000)
    assert f["deliver_rate_last"] == pytest.approx(900)
    assert f["input_rate_mean"] == pytest.approx(950)
    assert f["processed_rate_last"] == pytest.approx(2000)
    assert f["batch_duration_ms_last"] == pytest.approx(1260)
    assert f["batch_duration_ms_mean"] == pytest.approx(1230)


def test_rates_are_summed_per_bucket_across_channels():
    # channel-1 woken for the last bucket only: the traffic split, the total did not double.
    pts = [queue(T0 + 10 * i, "channel-0", 0, 4000, 4000) for i in range(6)]
    pts += [queue(T0 + 55, "channel-0", 0, 2000, 2000), queue(T0 + 56, "channel-1", 0, 2000, 2000)]
    f = extract(window(pts, T0, T0 + 60))
    assert f["publish_rate_last"] == pytest.approx(4000)
    assert f["publish_rate_mean"] == pytest.approx(4000)


def test_control_plane_queues_are_not_backlog():
    pts = [queue(T0 + 10 * i, "channel-0", 1e3 * i, 50, 50, name="vpp.control.routing")
           for i in range(7)]
    f = extract(window([*pts, node(T0, "worker-0", 10, 50)], T0, T0 + 60))
    assert f["queue_messages_slope"] == 0.0 and f["publish_rate_mean"] == 0.0
    assert "publish_rate_mean" in f.missing


def test_missing_data_gives_documented_defaults_not_nan():
    f = extract(MetricsWindow(start=T0, end=T0 + 60))
    assert len(f.values) == len(FEATURE_NAMES)
    assert all(math.isfinite(v) for v in f.values)
    for name in ("queue_cpu_max_mean", "stream_lag_slope", "input_rate_last",
                 "batch_duration_ms_mean", "active_queue"):
        assert f[name] == 0.0 and name in f.missing
    # the time of day is always known
    assert "tod_sin" not in f.missing


def test_single_sample_has_no_trend():
    f = extract(window([lag(T0, "channel-0", 500)], T0, T0 + 60))
    assert f["stream_lag_last"] == 500 and f["stream_lag_slope"] == 0.0
    assert "stream_lag_slope" in f.missing


def test_time_of_day_on_the_unit_circle():
    midnight = 1_699_920_000.0    # 2023-11-14 00:00 UTC
    assert midnight % 86_400 == 0
    f0 = extract(MetricsWindow(start=midnight - 60, end=midnight))
    f6 = extract(MetricsWindow(start=midnight, end=midnight + 6 * 3600))
    assert (f0["tod_sin"], f0["tod_cos"]) == pytest.approx((0.0, 1.0), abs=1e-9)
    assert (f6["tod_sin"], f6["tod_cos"]) == pytest.approx((1.0, 0.0), abs=1e-9)
    shifted = extract(MetricsWindow(start=midnight - 60, end=midnight), tz_offset_s=6 * 3600)
    assert shifted["tod_sin"] == pytest.approx(1.0)


def test_active_argument_beats_window_and_reporting_nodes():
    pts = [node(T0, "worker-0", 10, 50), node(T0, "worker-1", 10, 50)]
    w = window(pts, T0, T0 + 60, {"processing": 3})
    assert extract(w)["active_processing"] == 3
    assert extract(w, active={"processing": 1})["active_processing"] == 1
    bare = window(pts, T0, T0 + 60)
    f = extract(bare)
    assert f["active_processing"] == 2 and "active_processing" in f.missing


def test_other_query_name_falls_back_to_the_busiest_query():
    pts = [progress(T0 + 10 * i, 800, 900, 500, query="job") for i in range(3)]
    pts += [progress(T0 + 10 * i, 10, 900, 4000, query="twin") for i in range(3)]
    f = extract(window(pts, T0, T0 + 60))
    assert f["input_rate_mean"] == 800
    assert f["batch_duration_ms_mean"] == 4000          # the slowest query's


def test_vector_lookup_and_rows():
    f = extract(window(steady_points(), T0, T0 + 60))
    d = f.as_dict()
    assert list(d) == list(FEATURE_NAMES)
    assert as_row(f) == list(f.values)
    assert as_row(d, ("stream_lag_last", "active_queue")) == [d["stream_lag_last"],
                                                               d["active_queue"]]
    with pytest.raises(KeyError, match=r"features\.nope"):
        as_row(d, ("nope",))
    with pytest.raises(KeyError, match="unknown feature"):
        f["nope"]
    with pytest.raises(ValueError, match=r"features\.queue_cpu_mean_last"):
        FeatureVector((math.nan,) + (0.0,) * (len(FEATURE_NAMES) - 1), T0)


def test_inputs_name_schema_fields_only():
    by_name = {m.name: m for m in ALL}
    for measurement, fields in INPUTS.items():
        assert set(fields) <= set(by_name[measurement].fields), measurement
