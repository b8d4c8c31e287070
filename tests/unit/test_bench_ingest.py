"""Pure parts of the Fig. 9 ingest bench: rows from fleet summaries, linearity, the sustained
rule and limit detection, PerfTest's command and output, the reference bodies; and main() end
to end with the fleet and the references stubbed (no broker)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pika
import pytest

from bench import ingest_fig9 as fig9
from ingest import schema


def _total(confirmed: int, *, generated: int | None = None, nbytes: int | None = None,
           dropped: int = 0, unconfirmed: int = 0, wall_s: float = 21.0) -> dict:
    return {"generated": confirmed if generated is None else generated, "confirmed": confirmed,
            "confirmed_bytes": 250 * confirmed if nbytes is None else nbytes,
            "dropped_overflow": dropped, "unconfirmed_at_exit": unconfirmed,
            "max_schedule_lag_ms": 52.0, "wall_s": wall_s}


def _row(offered: float, ratio: float, dropped: int = 0, ders: int = 10_000) -> dict:
    return {"ders": ders, "offered_per_s": offered, "confirmed_per_s": offered * ratio,
            "confirmed_ratio": ratio, "dropped": dropped}


def test_point_row_from_a_fleet_summary():
    gateways = [{"publishers": {"channel-0": {"confirmed": 2000}, "channel-1": {"confirmed": 0}}}]
    row = fig9.point_row(_total(2000), gateways, series="fig9", ders=1000, interval_s=10.0,
                         duration_s=20.0, cpu_s=2.0, wall_s=25.0)
    assert row["offered_per_s"] == 100.0 and row["confirmed_ratio"] == 1.0
    assert row["confirmed_per_s"] == round(2000 / 21.0, 2)
    assert row["confirmed_bytes_per_s"] == round(500_000 / 21.0, 1)
    assert row["bytes_per_reading"] == 250.0
    assert row["gateway_cpu_pct_of_core"] == 8.0
    assert row["channels"] == "channel-0"          # only channels that confirmed something
    assert row["generated_per_s"] == 100.0
    # A summary from before the bytes counter: no bytes, the rest still works.
    old = {k: v for k, v in _total(10).items() if k != "confirmed_bytes"}
    r = fig9.point_row(old, [], series="fig9", ders=10, interval_s=10.0, duration_s=10.0,
                       cpu_s=0.0, wall_s=1.0)
    assert r["confirmed_bytes"] == 0 and r["channels"] == ""


def test_linearity_slope_through_origin_and_worst_deviation():
    rows = [{"ders": d, "confirmed_per_s": d / 10, "confirmed_bytes_per_s": d * 25.0}
            for d in (10, 100, 1000, 10_000)]
    slope, worst = fig9.linearity(rows)
    assert slope == pytest.approx(0.1) and worst == pytest.approx(0.0, abs=1e-12)
    bslope, _ = fig9.linearity(rows, "confirmed_bytes_per_s")
    assert bslope == pytest.approx(25.0)
    rows[0]["confirmed_per_s"] = 0.5                # the small point 50 % low
    slope, worst = fig9.linearity(rows)
    assert slope == pytest.approx(0.1, rel=1e-6) and worst == pytest.approx(0.5, rel=1e-3)
    assert fig9.linearity([{"ders": 10, "confirmed_per_s": 0.0}]) == (0.0, math.inf)
    with pytest.raises(ValueError):
        fig9.linearity([])


def test_sustained_needs_confirms_within_tolerance_and_no_drops():
    assert fig9.sustained(_row(1000, 0.96))
    assert fig9.sustained(_row(1000, 0.95))
    assert not fig9.sustained(_row(1000, 0.94))
    assert not fig9.sustained(_row(1000, 1.0, dropped=1))
    assert not fig9.sustained({"confirmed_ratio": None, "dropped": 0, "offered_per_s": 1,
                               "confirmed_per_s": 1})
    assert fig9.sustained(_row(1000, 0.91), tolerance=0.1)
    # Everything confirmed in the end, but only during the drain: 85 % of the pace.
    late = _row(10_000, 0.9999) | {"confirmed_per_s": 8500.0}
    assert not fig9.sustained(late)


def test_find_limit_is_the_highest_rate_below_the_first_failure():
    rows = [_row(10_000, 0.6, dropped=5), _row(1000, 0.99), _row(5000, 0.97),
            _row(20_000, 0.3, dropped=9), _row(100, 1.0, ders=1000)]
    lim = fig9.find_limit(rows)
    assert lim["limit_offered_per_s"] == 5000 and lim["first_failed_offered_per_s"] == 10_000
    assert lim["limit_confirmed_per_s"] == pytest.approx(4850)
    assert lim["saturated"] is True
    assert "5,000 readings/s offered" in fig9.describe_limit(lim)
    assert "10,000/s offered was not sustained" in fig9.describe_limit(lim)
    # A noisy pass above the first failure does not raise the limit.
    noisy = fig9.find_limit([_row(1000, 1.0), _row(2000, 0.5), _row(4000, 0.99)])
    assert noisy["limit_offered_per_s"] == 1000 and noisy["first_failed_offered_per_s"] == 2000


def test_find_limit_lower_bound_and_nothing_sustained():
    never = fig9.find_limit([_row(100, 1.0), _row(1000, 0.99)])
    assert never["saturated"] is False and never["first_failed_offered_per_s"] is None
    assert fig9.describe_limit(never).startswith(">= 1,000") and "lower bound" in \
        fig9.describe_limit(never)
    none = fig9.find_limit([_row(100, 0.5)])
    assert none["limit_offered_per_s"] is None
    assert fig9.describe_limit(none).startswith("below 100")
    assert fig9.describe_limit(fig9.find_limit([])) == "no points"


def test_intervals_arg():
    assert fig9.intervals_arg("10,2,1,0.5,0.2") == [10, 2, 1, 0.5, 0.2]
    assert fig9.intervals_arg("") == []
    for bad in ("1,x", "1,0", "-1"):
        with pytest.raises(ValueError):
            fig9.intervals_arg(bad)


def _perftest_output(test_id: str, confirm: bool) -> str:
    """Lines in PerfTest's 'default' console format (PerfTest 2.19+)."""
    lines = []
    for i, (sent, conf) in enumerate(((7000, 6500), (9000, 8900), (9100, 9050)), start=1):
        line = f"id: {test_id}, time {i}.000 s, sent: {sent} msg/s"
        if confirm:
            line += (f", confirmed: {conf} msg/s, nacked: 0 msg/s, min/median/75th/95th/99th "
                     "confirm latency: 800/2100/3000/5200/9000 µs")
        lines.append(line)
    lines += ["test stopped (Reached time limit)",
              f"id: {test_id}, sending rate avg: 8366 msg/s",
              f"id: {test_id}, receiving rate avg: 0 msg/s"]
    if confirm:
        lines.append(f"id: {test_id}, confirm latency min/median/75th/95th/99th "
                     "700/2000/3100/5000/8800 µs")
    return "\n".join(lines) + "\n"


def test_parse_perftest_summary_without_and_with_confirms():
    p = fig9.parse_perftest("16:01:02.003 [main] INFO starting\n" + _perftest_output("t", False))
    assert p is not None
    assert p["sending_rate_avg"] == 8366 and p["receiving_rate_avg"] == 0
    assert p["samples"] == 3 and p["confirmed_rate_mean"] is None
    assert p["confirm_latency_us"] is None and p["stopped"] == "Reached time limit"
    c = fig9.parse_perftest(_perftest_output("t", True))
    assert c is not None
    assert c["confirmed_rate_mean"] == pytest.approx((6500 + 8900 + 9050) / 3, abs=0.1)
    assert c["confirm_latency_us"] == {"min": 700, "median": 2000, "p75": 3100, "p95": 5000,
                                       "p99": 8800}


def test_parse_perftest_small_rates_locale_and_failures():
    # formatRate prints one decimal under 10 msg/s, with the locale's decimal mark.
    assert fig9.parse_perftest("id: x, sending rate avg: 2,5 msg/s")["sending_rate_avg"] == 2.5
    assert fig9.parse_perftest("sending rate avg: 3.5 msg/s\ntest stopped")["stopped"] == \
        "stopped"
    lat = fig9.parse_perftest("sending rate avg: 10 msg/s\nid: x, confirm latency "
                              "min/median/75th/95th/99th 1/2/3/4/5 ms")
    assert lat["confirm_latency_us"]["p99"] == 5000
    failed = ("18:07:58.245 [main] ERROR com.rabbitmq.perf.PerfTest - Main thread caught "
              "exception\njava.net.ConnectException: Connection refused\ntest stopped\n")
    assert fig9.parse_perftest(failed) is None
    assert fig9.parse_perftest("") is None


def test_perftest_result_reasons_and_confirmed_rate():
    ok = fig9.perftest_result(fig9.parse_perftest(_perftest_output("t", False)), 0, "", 250, None)
    assert ok == {"msgs_per_s": 8366.0, "bytes_per_s": 8366.0 * 250, "body_bytes": 250}
    # With confirms the rate is what was confirmed, not what was sent.
    conf = fig9.perftest_result(fig9.parse_perftest(_perftest_output("t", True)), 0, "", 250,
                                1000)
    assert conf["msgs_per_s"] == pytest.approx(8150.0)
    assert "exited 1 without a summary: ACCESS_REFUSED" in fig9.perftest_result(
        None, 1, "ACCESS_REFUSED", 250, None)["skipped"]
    assert "published nothing" in fig9.perftest_result(
        fig9.parse_perftest("sending rate avg: 0 msg/s"), 0, "", 250, None)["skipped"]


def test_perftest_command_declares_nothing_and_keeps_the_password_off_the_command_line():
    cmd = fig9.perftest_command("java", "/c/*", exchange="vpp.telemetry", routing_key="bench.x",
                                body_file=Path("/b.json"), seconds=5, confirm=None, test_id="t")
    assert cmd[:4] == ["java", "-cp", "/c/*", "com.rabbitmq.perf.PerfTest"]
    assert "--predeclared" in cmd and cmd[cmd.index("--consumers") + 1] == "0"
    assert cmd[cmd.index("--exchange") + 1] == "vpp.telemetry"
    assert cmd[cmd.index("--time") + 1] == "5" and "--confirm" not in cmd
    assert not any(a in cmd for a in ("--uri", "-h", "--uris"))
    with_confirms = fig9.perftest_command("java", "/c/*", exchange="e", routing_key="k",
                                          body_file=Path("/b"), seconds=5, confirm=1000,
                                          test_id="t")
    assert with_confirms[-2:] == ["--confirm", "1000"]


def test_amqp_uri_quotes_credentials_and_vhost():
    params = pika.ConnectionParameters(host="127.0.0.1", port=5672, virtual_host="vpp",
                                       credentials=pika.PlainCredentials("gateway", "a/b:c@d"))
    assert fig9.amqp_uri(params) == "amqp://gateway:a%2Fb%3Ac%40d@127.0.0.1:5672/vpp"


def test_reference_bodies_are_valid_distinct_bench_readings_of_real_size():
    samples = fig9.sample_readings(1_750_521_600_000 + 12 * 3600 * 1000)
    bodies = fig9.reference_bodies(samples, "raw", 100)
    decoded = [schema.decode(b) for b in bodies]
    assert all(schema.validate(b).ok for b in bodies)      # never quarantined downstream
    assert all(d["der_id"].startswith("bench-raw-") for d in decoded)
    assert len({(d["der_id"], d["seq"]) for d in decoded}) == 100
    real = sum(len(schema.encode(r)) for r in samples) / len(samples)
    mean = sum(map(len, bodies)) / len(bodies)
    assert abs(mean - real) / real < 0.05 and 150 < mean < 400


def test_peak_ratio():
    rows = [{"confirmed_per_s": 100.0}, {"confirmed_per_s": 4000.0}]
    assert fig9.peak_ratio(rows, {"msgs_per_s": 8000.0}) == 0.5
    assert fig9.peak_ratio(rows, None) is None
    assert fig9.peak_ratio(rows, {"skipped": "failed"}) is None
    assert fig9.peak_ratio([], {"msgs_per_s": 1.0}) is None


def test_main_writes_csvs_png_and_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VPP_RESULTS", str(tmp_path))

    def fake_point(series, ders, interval_s, seconds, drain):
        offered = ders / interval_s
        carried = min(offered, 6000.0)
        confirmed = int(carried * seconds)
        dropped = 0 if offered <= 6000 else int((offered - carried) * seconds / 2)
        return fig9.point_row(_total(confirmed, generated=int(offered * seconds),
                                     dropped=dropped, wall_s=seconds),
                              [{"publishers": {"channel-0": {"confirmed": confirmed}}}],
                              series=series, ders=ders, interval_s=interval_s,
                              duration_s=seconds, cpu_s=1.0, wall_s=seconds + 5)

    def fake_refs(seconds, use_perftest, progress):
        assert use_perftest is False
        progress("  reference raw ...")
        return [{"reference": "raw", "confirms": False, "channel": "channel-0",
                 "user": "gateway", **fig9.rate(100_000, 25_000_000, 10.0)},
                {"reference": "pipelined", "confirms": True, "max_in_flight": 1000,
                 **fig9.rate(70_000, 17_500_000, 10.0)},
                {"reference": "perftest", "confirms": False,
                 "skipped": "disabled with --no-perftest"},
                {"reference": "perftest_confirms", "confirms": True,
                 "skipped": "disabled with --no-perftest"}], "disabled with --no-perftest"

    monkeypatch.setattr(fig9, "run_point", fake_point)
    monkeypatch.setattr(fig9, "run_references", fake_refs)
    assert fig9.main(["--quick", "--no-perftest"]) == 0
    out = tmp_path / "fig9"
    for name in ("fig9.csv", "saturation.csv", "references.csv", "fig9.png", "summary.json"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "summary.json").read_text())
    ours = doc["ours"]
    assert ours["shape"].startswith("linear")
    assert ours["slope bytes/s per DER"] == pytest.approx(25.0, rel=0.01)
    assert ours["confirmed bytes/s by DERs"]["1000"] == pytest.approx(25_000)
    assert "5,000 readings/s offered" in ours["limit (confirmed >= 95 % of offered, no drops)"]
    assert ours["raw pika upper bound msgs/s (no confirms)"] == 10_000
    assert ours["PerfTest msgs/s (no confirms)"] == "skipped: disabled with --no-perftest"
    assert ours["fleet peak / raw upper bound"] == 0.6
    assert doc["limit"]["first_failed_offered_per_s"] == 10_000
    assert doc["perftest_skipped"] == "disabled with --no-perftest"
    assert doc["files"][0] == "fig9.csv" and doc["files"][-1] == "fig9.png"
    header = (out / "fig9.csv").read_text().splitlines()[0].split(",")
    assert {"confirmed_bytes", "confirmed_bytes_per_s", "confirmed_ratio"} <= set(header)
    printed = capsys.readouterr().out
    assert printed.count("DERs every") == 2 + 3          # a progress line per point
    assert "NOT sustained" in printed and "reference raw" in printed
