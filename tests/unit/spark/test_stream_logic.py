"""Pure parts of the streaming job: parser, offset planning, twin fold, aggregate reference."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

from ingest import schema
from sensors_sim.models.fleet import make_fleet
from spark_jobs import aggregates, parse, twin
from spark_jobs.rabbitmq_source import share_limit, split_range


def _readings(n_ders: int = 6, steps: int = 3, t0: int = 1_796_000_000_000):
    ders = make_fleet(n_ders, seed=5, mix={"pv": 1, "battery": 1, "ev_charger": 1})
    out = []
    for k in range(steps):
        for d in ders:
            r = d.read(t0 + k * 10_000)
            if r is not None:
                out.append(r)
    return out


def test_parser_keeps_valid_typed_and_quarantines_invalid_with_reason():
    good = _readings(3, 1)
    bad = [b"not json", json.dumps({**good[0], "p_w": 1e12}).encode(),
           json.dumps({k: v for k, v in good[1].items() if k != "seq"}).encode()]
    bodies = [schema.encode(r) for r in good] + bad
    rb = pa.RecordBatch.from_pydict({"channel": ["channel-0"] * len(bodies),
                                     "offset": list(range(len(bodies))), "body": bodies})
    (out,) = list(parse.parse_batches(iter([rb])))
    assert out.schema == parse.ARROW_SCHEMA
    rows = out.to_pylist()
    valid, invalid = rows[: len(good)], rows[len(good):]
    for r, src in zip(valid, good, strict=True):
        assert r["valid"] and r["reason"] is None and r["payload"] is None
        assert r["der_id"] == src["der_id"] and r["p_w"] == src["p_w"]
        assert r["dedupe_key"] == f"{src['der_id']}:{src['seq']}:{src['ts_ms']}"
    assert [r["valid"] for r in invalid] == [False, False, False]
    assert all(r["reason"] for r in invalid)
    assert invalid[1]["reason_field"] == "p_w" and invalid[2]["reason_field"] == "seq"
    assert invalid[0]["payload"] == "not json"
    # the same malformed bytes re-sent get the same dedupe key
    again = parse.parse_message("channel-1", 99, bad[0], 0)
    assert again["dedupe_key"] == invalid[0]["dedupe_key"]


def test_spark_ddl_names_every_raw_column_in_order():
    ddl = parse.spark_ddl(parse.RAW_COLUMNS)
    names = [part.split()[0].strip("`") for part in ddl.split(", ")]
    assert tuple(names) == parse.RAW_COLUMNS
    assert "`event_time` timestamp" in ddl


def test_split_range_and_share_limit():
    assert split_range(0, 0, 100, 3) == []
    assert split_range(10, 60, 100, 3) == [(10, 60)]  # too small to be worth 3 tasks
    parts = split_range(0, 1000, 300, 3)
    assert parts[0][0] == 0 and parts[-1][1] == 1000 and len(parts) == 4
    assert all(b - a <= 300 for a, b in parts)
    assert all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
    assert len(split_range(0, 900, 10_000, 3)) == 3
    assert share_limit({"a": 10, "b": 5}, 100) == {"a": 10, "b": 5}
    got = share_limit({"a": 900, "b": 100, "c": 0}, 100)
    assert got == {"a": 90, "b": 10, "c": 0}
    assert share_limit({"a": 10_000, "b": 1}, 10)["b"] == 1  # every channel makes progress


def test_twin_fold_takes_newest_by_seq_and_ignores_duplicates():
    rs = [r for r in _readings(1, 4)]
    st = twin.fold(None, rs[2:] + rs[:2] + rs[1:2])  # out of order, one duplicate
    assert st["last_seq"] == rs[-1]["seq"] and st["readings"] == len(rs)
    assert st["p_w"] == rs[-1]["p_w"] and st["health"] == "ok"
    st2 = twin.fold(st, [rs[0]])  # an old reading changes nothing
    assert st2 == st
    suspect = dict(rs[-1], seq=rs[-1]["seq"] + 1, quality="suspect")
    assert twin.fold(st, [suspect])["health"] == "suspect"
    # a restarted gateway counts seq from 0 again: the later event time wins
    restarted = dict(rs[-1], seq=0, ts_ms=rs[-1]["ts_ms"] + 60_000, p_w=7.0)
    st3 = twin.fold(st, [restarted])
    assert st3["last_seq"] == 0 and st3["p_w"] == 7.0 and st3["readings"] == st["readings"] + 1
    assert twin.fold(st3, [rs[-1]]) == st3


def test_bucket_outputs_changed_ders_only_and_marks_quiet_ones_stale_once():
    rs = _readings(3, 2)
    first = [r for r in rs if r["ts_ms"] == rs[0]["ts_ms"]]
    ders: dict = {}
    out, next_stale = twin.advance_bucket(ders, first, now_ms=1_000, stale_ms=60_000)
    assert sorted(r["der_id"] for r in out) == sorted(r["der_id"] for r in first)
    assert {r["prev_health"] for r in out} == {None} and next_stale == 60_000
    # re-sent duplicates change nothing and are not output again
    out, next_stale = twin.advance_bucket(ders, first, now_ms=2_000, stale_ms=60_000)
    assert out == [] and next_stale == 59_000
    # one DER reports again; the others go stale at their own moment, once
    later = next(r for r in rs if r["der_id"] == first[0]["der_id"] and r["seq"] > first[0]["seq"])
    out, next_stale = twin.advance_bucket(ders, [later], now_ms=30_000, stale_ms=60_000)
    assert [r["der_id"] for r in out] == [later["der_id"]] and next_stale == 31_000
    out, next_stale = twin.advance_bucket(ders, [], now_ms=61_000, stale_ms=60_000)
    quiet = sorted(r["der_id"] for r in first[1:])
    assert sorted(r["der_id"] for r in out) == quiet
    assert {r["health"] for r in out} == {"stale"} and next_stale == 29_000
    assert {r["prev_health"] for r in out} <= {"ok", "suspect", "bad"}
    out, _ = twin.advance_bucket(ders, [], now_ms=62_000, stale_ms=60_000)
    assert out == []
    out, next_stale = twin.advance_bucket(ders, [], now_ms=90_000, stale_ms=60_000)
    assert [r["health"] for r in out] == ["stale"] and next_stale is None
    # the next reading makes a stale DER live again, and says it was stale
    revived = dict(later, seq=later["seq"] + 1)
    (row,) = twin.advance_bucket(ders, [revived], now_ms=95_000, stale_ms=60_000)[0]
    assert row["prev_health"] == "stale" and row["health"] != "stale"


class _State:
    """The slice of pyspark's GroupState the twin uses."""

    def __init__(self, value=None, timed_out=False):
        self.value, self.hasTimedOut, self.timeout_ms = value, timed_out, None

    @property
    def exists(self):
        return self.value is not None

    @property
    def get(self):
        return self.value

    def update(self, value):
        self.value = value

    def setTimeoutDuration(self, ms):
        self.timeout_ms = ms


def test_update_twin_keeps_a_bucket_as_one_json_state_row():
    rs = _readings(4, 2)
    pdf = pd.DataFrame(rs)
    func = twin.update_twin(stale_after_s=60.0)
    state = _State()
    (out,) = list(func((7,), iter([pdf.iloc[:3], pdf.iloc[3:]]), state))
    assert list(out.columns) == [n for n, _ in twin.OUTPUT_COLUMNS]
    assert sorted(out["der_id"]) == sorted({r["der_id"] for r in rs})
    newest = {r["der_id"]: r["seq"] for r in rs}
    assert dict(zip(out["der_id"], out["last_seq"], strict=True)) == newest
    (blob,) = state.value
    assert set(json.loads(blob)) == set(newest) and state.timeout_ms == 60_000
    # a timed-out call with nothing stale yet outputs nothing and keeps the state
    timed_out = _State(state.value, timed_out=True)
    assert list(func((7,), iter([]), timed_out)) == []
    assert json.loads(timed_out.value[0]).keys() == json.loads(blob).keys()


def test_aggregate_reference_two_stage_mean_then_sum():
    t = 1_796_000_000_000
    rows = [
        # two readings of one PV in the first window: its mean counts once
        dict(ts_ms=t + 1000, der_id="pv-a", site_id="s1", der_type="pv", p_w=100.0),
        dict(ts_ms=t + 6000, der_id="pv-a", site_id="s1", der_type="pv", p_w=300.0),
        dict(ts_ms=t + 2000, der_id="pv-b", site_id="s1", der_type="pv", p_w=50.0),
        dict(ts_ms=t + 3000, der_id="bat-a", site_id="s1", der_type="battery", p_w=-400.0,
             soc_pct=50.0, e_cap_wh=10_000.0, p_max_chg_w=2000.0, p_max_dis_w=3000.0),
        dict(ts_ms=t + 12_000, der_id="pv-a", site_id="s1", der_type="pv", p_w=10.0),
    ]
    df = pd.DataFrame(rows)
    for c in ("soc_pct", "e_cap_wh", "p_max_chg_w", "p_max_dis_w"):
        df[c] = df.get(c)
    out = aggregates.reference(df, 10).set_index(["window_start", "der_type"])
    w0 = pd.Timestamp(t - t % 10_000, unit="ms", tz="UTC")
    pv = out.loc[(w0, "pv")]
    assert pv["ders"] == 2 and pv["p_w"] == 250.0 and pv["gen_w"] == 250.0
    bat = out.loc[(w0, "battery")]
    assert bat["load_w"] == 400.0 and bat["gen_w"] == 0.0 and bat["storage_wh"] == 5000.0
    assert bat["chg_avail_w"] == 2000.0 and bat["dis_avail_w"] == 3000.0
    assert out.loc[(w0 + pd.Timedelta(seconds=10), "pv")]["p_w"] == 10.0


def test_source_options_are_case_insensitive_and_misspellings_fail():
    import pytest

    from spark_jobs.rabbitmq_source import RabbitStreamReader, normalise_options

    opts = {"channels": '{"channel-0": {"host": "127.0.0.1", "port": 5672, "vhost": "vpp"}}',
            "user": "stream", "password": "x", "startingoffsets": "latest",
            "MAXROWSPERTRIGGER": "500"}
    assert normalise_options(opts)["startingOffsets"] == "latest"
    reader = RabbitStreamReader(opts)
    assert reader.starting == "latest" and reader.max_rows == 500
    with pytest.raises(ValueError, match="unknown option 'startingOffset'"):
        normalise_options({**opts, "startingOffset": "latest"})
    with pytest.raises(ValueError, match="startingOffsets must be"):
        RabbitStreamReader({**opts, "startingoffsets": "yesterday"})
