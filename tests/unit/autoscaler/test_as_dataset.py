"""Labels from capacity on hand-made traces, load traces and rows from points, run splitting."""

from __future__ import annotations

import pytest
from as_support import POOLS, T0, fixed_capacity, lag, node, progress, queue

from autoscaler.model.capacity import RequiredCounts
from autoscaler.model.dataset import (
    Dataset,
    History,
    LabelConfig,
    LoadTrace,
    label_at,
    rows_from_points,
    split_runs,
    trace_from_window,
)
from infra.topology import PoolPolicy

CAP = fixed_capacity()
WORKER = CAP.processing.readings_per_s          # 700
CHANNEL = CAP.queue.readings_per_s              # 4000


def flat(rate: float, seconds: int = 300, ingress: float = 0.0, stream: float = 0.0,
         step_at: int | None = None, step_rate: float = 0.0) -> LoadTrace:
    times = tuple(T0 + i for i in range(seconds))
    offered = tuple(step_rate if step_at is not None and i >= step_at else rate
                    for i in range(seconds))
    return LoadTrace(times, offered, (ingress,) * seconds, (stream,) * seconds)


def test_rate_one_and_a_half_workers_needs_two():
    trace = flat(1.5 * WORKER)
    assert label_at(trace, T0, CAP, POOLS) == RequiredCounts(queue=1, processing=2)
    # without head-room too: 1050/s is above one worker and below two (1330)
    assert label_at(trace, T0, CAP, POOLS, LabelConfig(utilisation_target=1.0)).processing == 2


def test_utilisation_target_is_head_room():
    trace = flat(0.9 * WORKER)                  # fits one worker, but not at 80 %
    assert label_at(trace, T0, CAP, POOLS, LabelConfig(utilisation_target=1.0)).processing == 1
    assert label_at(trace, T0, CAP, POOLS).processing == 2


def test_backlog_catch_up_raises_the_count():
    calm = flat(500)
    assert label_at(calm, T0, CAP, POOLS).processing == 1
    behind = flat(500, stream=60_000)           # + 60k / 120 s = +500/s to drain
    assert label_at(behind, T0, CAP, POOLS).processing == 2
    way_behind = flat(500, stream=300_000)
    assert label_at(way_behind, T0, CAP, POOLS).processing == 3
    # a shorter catch-up time asks for more
    assert label_at(behind, T0, CAP, POOLS, LabelConfig(catch_up_s=30)).processing == 3


def test_ingress_backlog_counts_for_both_pools():
    trace = flat(2000, ingress=240_000)         # the gateways hold 240k readings
    req = label_at(trace, T0, CAP, POOLS)
    assert req.queue == 2                       # 2000/0.8 + 2000 = 4500 > one channel
    assert req.processing == 3


def test_queue_pool_is_sized_from_channel_capacity():
    assert label_at(flat(2000), T0, CAP, POOLS).queue == 1
    assert label_at(flat(0.875 * CHANNEL), T0, CAP, POOLS).queue == 2   # Fig. 12: 3500/s


def test_the_horizon_sees_the_forthcoming_workload():
    trace = flat(200, step_at=30, step_rate=2000)
    # half the next minute at 2000/s: mean 1100/s, / 0.8 = 1375/s, more than two workers
    assert label_at(trace, T0, CAP, POOLS).processing == 3
    assert label_at(trace, T0, CAP, POOLS, LabelConfig(horizon_s=20)).processing == 1


def test_no_label_without_a_full_horizon():
    trace = flat(100, seconds=100)
    assert label_at(trace, T0 + 30, CAP, POOLS) is not None
    assert label_at(trace, T0 + 60, CAP, POOLS) is None
    assert label_at(trace, T0 - 10, CAP, POOLS) is None            # before the trace


def test_labels_stay_within_pool_bounds():
    pools = {"queue": PoolPolicy("queue", "stop", 1, 2),
             "processing": PoolPolicy("processing", "stop", 2, 3)}
    assert label_at(flat(0), T0, CAP, pools) == RequiredCounts(queue=1, processing=2)
    assert label_at(flat(1e6), T0, CAP, pools) == RequiredCounts(queue=2, processing=3)


def test_label_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"labels\.utilisation_target"):
        LabelConfig(utilisation_target=1.5)
    with pytest.raises(ValueError, match=r"labels\.catch_up_s"):
        LabelConfig(catch_up_s=0)
    with pytest.raises(ValueError, match=r"trace\.offered"):
        LoadTrace((T0,), (), (0.0,), (0.0,))


def history_points(seconds: int = 300, rate: float = 1000.0) -> list[dict]:
    pts = []
    for i in range(0, seconds + 1, 10):
        t = T0 + i
        pts += [node(t, "worker-0", 70, 60), node(t, "channel-0", 30, 30, pool="queue"),
                queue(t, "channel-0", 1e6 + rate * i, rate, rate),
                lag(t, "channel-0", 20.0 * i), progress(t, rate, 1500, 1500)]
    return pts


def test_trace_from_points_uses_lag_and_publish_rate():
    whole = History.from_points(history_points()).whole
    trace = trace_from_window(whole)
    assert trace.offered[0] == 1000 and trace.ingress_backlog[0] == 0
    assert trace.stream_backlog[-1] == pytest.approx(6000)
    given = trace_from_window(whole, offered=[(T0, 100.0), (T0 + 100, 2000.0)])
    assert given.offered[0] == 100 and given.offered[-1] == 2000


def test_rows_from_points_match_the_live_features():
    rows, rejected = rows_from_points(history_points(), run_id="r1", capacity=CAP, pools=POOLS)
    assert rejected == 0
    # first row needs a full 60 s window, last one a horizon within the 10 s buckets
    assert rows[0].time == T0 + 60 and rows[-1].time <= T0 + 250
    r = rows[0]
    assert r.run_id == "r1"
    assert r.features["publish_rate_mean"] == 1000
    assert r.features["active_processing"] == 1          # from the nodes that reported
    # 1000/s plus a small lag: two workers, one channel
    assert r.required == RequiredCounts(queue=1, processing=2)
    ds = Dataset(tuple(rows))
    assert ds.X().shape == (len(rows), len(ds.feature_names))
    assert ds.X(["publish_rate_mean"]).shape == (len(rows), 1)
    assert set(ds.y("processing")) == {2} and ds.runs == ("r1",)


def test_bad_points_are_skipped_and_counted():
    pts = history_points()
    pts.append({"measurement": "queuing_cluster", "time": T0 + 5, "tags": {},
                "fields": {"cpu": 1.0, "memory": 1.0}})
    rows, rejected = rows_from_points(pts, run_id="r", capacity=CAP, pools=POOLS,
                                      on_error="skip")
    assert rejected == 1 and rows


def test_split_runs_at_gaps_and_every_group():
    pts = [{"time": T0 + t} for t in (0, 10, 20, 500, 510, 4000)]
    runs = split_runs(pts, gap_s=120, group_s=1800)
    assert [len(v) for v in runs.values()] == [3, 2, 1]
    long = [{"time": T0 + 10 * i} for i in range(400)]          # 4000 s without a gap
    assert len(split_runs(long, gap_s=120, group_s=1800)) == 3
