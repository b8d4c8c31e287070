"""``make bench-ingest``: Fig. 9, confirmed readings/s and bytes/s against the number of DERs,
where this machine's limit is, and upper bounds for publishing to one channel, all in one run.

    python -m bench.ingest_fig9 [--quick] [--ders 10,100,1000,10000] [--seconds 40]
                                [--saturation-ders 10000] [--intervals 10,2,1,0.5,0.2]
                                [--saturation-seconds 30] [--drain-timeout 15]
                                [--ref-seconds 15] [--tolerance 0.05] [--no-perftest]

**Fig. 9** (linear series). Each point runs ``python -m sensors_sim run --ders N --interval 10``
(one reading per DER every 10 s, the paper's sensor rate) for ``--seconds`` against the live
channels and reads the fleet's summary: readings generated, confirmed by the broker, their body
bytes, dropped (buffer overflow), left unconfirmed, and the largest schedule lag (how late the
slowest reading left). The gateway's CPU comes from the child's rusage. The summary reports the
slope of readings/s and bytes/s over DERs (least squares through the origin) and the worst
deviation of a point from that line.

**Saturation** (where the limit is). The same runner with ``--saturation-ders`` DERs and a
shrinking ``--interval`` is offered far more than one gateway can carry. Every point is bounded:
``--duration`` and ``--drain-timeout`` end it, and the gateway caps the work of one scheduler
tick, so an overloaded fleet still stops on time. A point is *sustained* when the broker
confirmed at least ``1 - --tolerance`` of what was offered (offered/s x duration) with nothing
dropped; the **limit** is the highest offered rate sustained with every lower one sustained too.

**References** (upper bounds on the home channel, channel-0, as the least-privileged ``gateway``
user the fleet publishes as). Their bodies are real readings from the simulator's encoder with
``der_id`` ``bench-<reference>-NN``, so the telemetry stream stores valid readings the Spark job
neither quarantines nor mistakes for fleet DERs; routing keys ``bench.<reference>``:

* ``raw``: one pika ``BlockingConnection``, ``basic_publish`` of pre-built bodies in a loop
  for ``--ref-seconds``, no confirms; the clock stops after the connection's close handshake;
* ``pipelined``: the project's :class:`~ingest.publisher.ChannelPublisher` kept full of the
  same bodies (confirms pipelined, at most 1,000 in flight, like a gateway): what the publisher
  can do without the simulator;
* ``perftest`` / ``perftest_confirms``: RabbitMQ's PerfTest (Java, from Maven Central, pinned in
  infra/perftest/pom.xml, cached under ``$VPP_CACHE``), one producer, no consumer, predeclared
  topology, one reading body, without confirms and with up to 1,000 in flight. Skipped (the
  summary says why) when Java or the jars are not to be had.

Writes ``results/fig9/``: fig9.csv (linear series), saturation.csv, references.csv, fig9.png,
summary.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.common import results_dir, write_csv
from bench.report import write_summary
from infra.state import ROOT, state_dir

INTERVAL_S = 10.0
TOLERANCE = 0.05              # sustained: confirmed >= 95 % of offered, no drops
LINEAR_TOLERANCE = 0.05       # linear: no point further than 5 % from the line
MAX_IN_FLIGHT = 1000          # the fleet runner's --max-in-flight default, for the references
REFERENCE_BODIES = 2000       # distinct (der_id, seq) bodies a Python reference cycles through
PERFTEST_POM = ROOT / "infra" / "perftest" / "pom.xml"
PERFTEST_ENV_PREFIX = "VPP_PERFTEST"   # PerfTest reads options from VPP_PERFTEST_<OPTION> only


@dataclass(frozen=True)
class Sizes:
    ders: str                  # Fig. 9 points
    seconds: float             # per Fig. 9 point
    intervals: str             # saturation series, s between readings of one DER
    saturation_seconds: float  # per saturation point
    drain_timeout: float       # the runner's --drain-timeout
    ref_seconds: float         # per reference publisher


FULL = Sizes("10,100,1000,10000", 40.0, "10,2,1,0.5,0.2", 30.0, 15.0, 15.0)
QUICK = Sizes("10,1000", 20.0, "2,1,0.5", 10.0, 5.0, 5.0)   # about 2.5 minutes in all

Row = Mapping[str, Any]

# ---------------------------------------------------------------------------------------------
# pure parts


def point_row(total: Row, gateways: Sequence[Row], *, series: str, ders: int,
              interval_s: float, duration_s: float, cpu_s: float,
              wall_s: float) -> dict[str, Any]:
    """One CSV row from a fleet run's ``--summary`` (its ``total`` and ``gateways``)."""
    run_s = float(total["wall_s"])
    offered_per_s = ders / interval_s
    confirmed = int(total["confirmed"])
    confirmed_bytes = int(total.get("confirmed_bytes", 0))
    expected = offered_per_s * duration_s
    channels = sorted({name for g in gateways for name, c in (g.get("publishers") or {}).items()
                       if int(c.get("confirmed", 0)) > 0})
    return {"series": series, "ders": ders, "interval_s": interval_s,
            "offered_per_s": round(offered_per_s, 2), "duration_s": duration_s,
            "generated": int(total["generated"]),
            "generated_per_s": round(int(total["generated"]) / duration_s, 2),
            "confirmed": confirmed, "confirmed_per_s": round(confirmed / run_s, 2),
            "confirmed_ratio": round(confirmed / expected, 4) if expected else None,
            "confirmed_bytes": confirmed_bytes,
            "confirmed_bytes_per_s": round(confirmed_bytes / run_s, 1),
            "bytes_per_reading": round(confirmed_bytes / confirmed, 1) if confirmed else None,
            "dropped": int(total["dropped_overflow"]),
            "unconfirmed": int(total["unconfirmed_at_exit"]),
            "max_schedule_lag_ms": float(total["max_schedule_lag_ms"]),
            "gateway_cpu_pct_of_core": round(100 * cpu_s / wall_s, 1) if wall_s > 0 else None,
            "run_s": run_s, "channels": "+".join(channels)}


def linearity(rows: Sequence[Row], key: str = "confirmed_per_s") -> tuple[float, float]:
    """Slope of ``key`` over DERs (least squares through 0) and the worst relative deviation
    of a point from that line."""
    xs = [float(r["ders"]) for r in rows]
    ys = [float(r[key]) for r in rows]
    if not any(xs):
        raise ValueError("linearity: needs at least one point with ders > 0")
    slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    if slope == 0:
        return 0.0, math.inf
    worst = max(abs(y - slope * x) / (slope * x) for x, y in zip(xs, ys, strict=True))
    return slope, worst


def sustained(row: Row, tolerance: float = TOLERANCE) -> bool:
    """Kept pace: nothing dropped, and confirmed within ``tolerance`` of what was offered both
    in total and per second of the run (so a backlog the broker confirmed only during the
    drain after the offered duration does not count as keeping up)."""
    ratio = row.get("confirmed_ratio")
    pace = float(row["confirmed_per_s"]) / float(row["offered_per_s"])
    return (ratio is not None and float(ratio) >= 1 - tolerance and pace >= 1 - tolerance
            and int(row["dropped"]) == 0)


def find_limit(rows: Iterable[Row], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Where the fleet stops keeping up: the highest offered rate sustained with every lower
    one sustained too, and the first offered rate that was not (None: never saturated, so
    the limit is only a lower bound)."""
    limit: Row | None = None
    failed: Row | None = None
    for r in sorted(rows, key=lambda r: float(r["offered_per_s"])):
        if not sustained(r, tolerance):
            failed = r
            break
        limit = r

    def get(r: Row | None, key: str) -> float | None:
        return None if r is None else float(r[key])

    return {"limit_offered_per_s": get(limit, "offered_per_s"),
            "limit_confirmed_per_s": get(limit, "confirmed_per_s"),
            "first_failed_offered_per_s": get(failed, "offered_per_s"),
            "first_failed_confirmed_per_s": get(failed, "confirmed_per_s"),
            "saturated": failed is not None, "tolerance": tolerance}


def describe_limit(limit: Row) -> str:
    lo, hi = limit["limit_offered_per_s"], limit["first_failed_offered_per_s"]
    if lo is None:
        return (f"below {hi:,.0f} readings/s offered (the lowest rate tried was not sustained)"
                if hi is not None else "no points")
    if hi is None:
        return f">= {lo:,.0f} readings/s offered (never saturated: a lower bound)"
    return (f"{lo:,.0f} readings/s offered ({limit['limit_confirmed_per_s']:,.0f} confirmed/s); "
            f"{hi:,.0f}/s offered was not sustained "
            f"({limit['first_failed_confirmed_per_s']:,.0f} confirmed/s)")


def intervals_arg(text: str) -> list[float]:
    """``--intervals``: a comma list of seconds > 0 (empty: none)."""
    if not text.strip():
        return []
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--intervals must be a comma list of seconds, got {text!r}") from None
    if any(not v > 0 for v in values):
        raise ValueError("--intervals: every interval must be > 0")
    return values


def rate(messages: int, nbytes: int, seconds: float) -> dict[str, Any]:
    return {"messages": messages, "bytes": nbytes, "seconds": round(seconds, 3),
            "msgs_per_s": round(messages / seconds, 1) if seconds > 0 else None,
            "bytes_per_s": round(nbytes / seconds, 1) if seconds > 0 else None,
            "body_bytes": round(nbytes / messages, 1) if messages else None}


def sample_readings(at_ms: int, n: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """One reading of each of ``n`` DERs of the default mixed fleet, from the simulator."""
    from sensors_sim.models.fleet import make_fleet

    out = [r for der in make_fleet(n, seed=seed) if (r := der.read(at_ms)) is not None]
    if not out:
        raise RuntimeError("sample_readings: the fleet produced no reading")
    return out


def reference_bodies(samples: Sequence[Row], kind: str, n: int) -> list[bytes]:
    """``n`` encoded readings: the samples cycled, ``der_id`` ``bench-<kind>-NN``, ``seq``
    counting per id, so every body is a valid reading and a distinct (der_id, seq)."""
    from ingest import schema

    k = len(samples)
    bodies = []
    for i in range(n):
        r = dict(samples[i % k])
        r["der_id"] = f"bench-{kind}-{i % k:02d}"
        r["seq"] = i // k
        bodies.append(schema.encode(r))
    return bodies


def amqp_uri(params: Any) -> str:
    """An ``amqp://`` URI for PerfTest from pika connection parameters."""
    cred = params.credentials
    return (f"amqp://{quote(cred.username, safe='')}:{quote(cred.password, safe='')}"
            f"@{params.host}:{params.port}/{quote(params.virtual_host, safe='')}")


def perftest_command(java: str, classpath: str, *, exchange: str, routing_key: str,
                     body_file: Path, seconds: int, confirm: int | None,
                     test_id: str) -> list[str]:
    """One producer, no consumer, the existing topic exchange (``--predeclared``: nothing is
    declared, which the gateway user could not), persistent messages, a fixed time."""
    cmd = [java, "-cp", classpath, "com.rabbitmq.perf.PerfTest",
           "--producers", "1", "--consumers", "0", "--predeclared",
           "--exchange", exchange, "--type", "topic", "--routing-key", routing_key,
           "--body", str(body_file), "--body-content-type", "application/json",
           "--flag", "persistent", "--time", str(seconds), "--id", test_id,
           "--metrics-format", "default"]
    if confirm is not None:
        cmd += ["--confirm", str(confirm)]
    return cmd


_NUM = r"([0-9]+(?:[.,][0-9]+)?)"
_SENT = re.compile(rf"sending rate avg: {_NUM} msg/s")
_RECEIVED = re.compile(rf"receiving rate avg: {_NUM} msg/s")
_SAMPLE_SENT = re.compile(rf"\bsent: {_NUM} msg/s")
_SAMPLE_CONFIRMED = re.compile(rf"\bconfirmed: {_NUM} msg/s")
_CONFIRM_LATENCY = re.compile(
    r"confirm latency min/median/75th/95th/99th (\d+)/(\d+)/(\d+)/(\d+)/(\d+) (µs|ms)")
_STOPPED = re.compile(r"test stopped(?: \(([^)]*)\))?")


def _num(text: str) -> float:
    return float(text.replace(",", "."))  # Java's %1.1f follows the locale's decimal mark


def parse_perftest(text: str) -> dict[str, Any] | None:
    """PerfTest's console output -> its summary (None when it printed none, e.g. it failed
    before the run). Rates in msg/s; confirm latency in µs (min, median, 75th, 95th, 99th)."""
    sent = _SENT.findall(text)
    if not sent:
        return None
    received = _RECEIVED.findall(text)
    samples_sent = _SAMPLE_SENT.findall(text)
    samples_conf = [_num(x) for x in _SAMPLE_CONFIRMED.findall(text)]
    out: dict[str, Any] = {
        "sending_rate_avg": _num(sent[-1]),
        "receiving_rate_avg": _num(received[-1]) if received else None,
        "samples": len(samples_sent),
        "confirmed_rate_mean": (round(sum(samples_conf) / len(samples_conf), 1)
                                if samples_conf else None),
        "confirm_latency_us": None,
        "stopped": None,
    }
    lat = _CONFIRM_LATENCY.findall(text)
    if lat:
        *vals, unit = lat[-1]
        scale = 1000 if unit == "ms" else 1
        out["confirm_latency_us"] = dict(zip(("min", "median", "p75", "p95", "p99"),
                                             (int(v) * scale for v in vals), strict=True))
    stops = _STOPPED.findall(text)
    if stops:
        out["stopped"] = stops[-1] or "stopped"
    return out


def perftest_result(parsed: Row | None, returncode: int, output_tail: str,
                    body_bytes: int, confirm: int | None) -> dict[str, Any]:
    """msgs/s and bytes/s of one PerfTest run, or ``skipped`` with the reason."""
    if returncode != 0 or parsed is None:
        return {"skipped": f"PerfTest exited {returncode} without a summary: {output_tail}"}
    msgs = float(parsed["sending_rate_avg"])
    if confirm is not None and parsed.get("confirmed_rate_mean") is not None:
        msgs = min(msgs, float(parsed["confirmed_rate_mean"]))
    if msgs <= 0:
        return {"skipped": f"PerfTest published nothing: {output_tail}"}
    return {"msgs_per_s": round(msgs, 1), "bytes_per_s": round(msgs * body_bytes, 1),
            "body_bytes": body_bytes}


def tail(text: str, lines: int = 3, width: int = 300) -> str:
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-width:]


def peak_ratio(rows: Iterable[Row], raw: Row | None) -> float | None:
    """The fleet's best confirmed/s over the raw no-confirm loop's msgs/s (None: no raw)."""
    peak = max((float(r["confirmed_per_s"]) for r in rows), default=None)
    bound = None if raw is None or "skipped" in raw else raw.get("msgs_per_s")
    if peak is None or not bound:
        return None
    return round(peak / float(bound), 3)


# ---------------------------------------------------------------------------------------------
# the fleet runner (I/O)


def run_point(series: str, ders: int, interval_s: float, seconds: float,
              drain_timeout_s: float) -> dict[str, Any]:
    """One bounded ``python -m sensors_sim run``; its stderr goes to .state/bench/."""
    tag = f"{series}-{ders}-{interval_s:g}"
    bench_dir = state_dir() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    summary, log = bench_dir / f"fig9-{tag}.json", bench_dir / f"fig9-{tag}.log"
    summary.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "sensors_sim", "run", "--ders", str(ders),
           "--interval", f"{interval_s:g}", "--duration", f"{seconds:g}",
           "--drain-timeout", f"{drain_timeout_s:g}", "--no-metrics", "--summary", str(summary)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with log.open("w") as err:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                  check=False, timeout=seconds + drain_timeout_s + 120)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"fleet {tag} did not stop by itself; log {log}") from None
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # 3: the run ended with readings dropped or unconfirmed (counted in the summary).
    if proc.returncode not in (0, 3) or not summary.is_file():
        raise RuntimeError(f"fleet {tag} exited {proc.returncode}: {tail(log.read_text())}")
    doc = json.loads(summary.read_text())
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return point_row(doc["total"], doc.get("gateways") or [], series=series, ders=ders,
                     interval_s=interval_s, duration_s=seconds, cpu_s=cpu_s, wall_s=wall)


def _brief(row: Row) -> str:
    return (f"offered {row['offered_per_s']:,}/s, confirmed {row['confirmed_per_s']:,}/s "
            f"({row['confirmed_bytes_per_s']:,} B/s, ratio {row['confirmed_ratio']}), "
            f"dropped {row['dropped']}, unconfirmed {row['unconfirmed']}, "
            f"lag {row['max_schedule_lag_ms']:.0f} ms, CPU {row['gateway_cpu_pct_of_core']} %, "
            f"channels {row['channels'] or '-'}")


# ---------------------------------------------------------------------------------------------
# the references (I/O)


def raw_reference(params: Any, bodies: Sequence[bytes], seconds: float,
                  routing_key: str = "bench.raw") -> dict[str, Any]:
    """basic_publish of pre-built bodies in a loop on one BlockingConnection, no confirms;
    persistent JSON messages like the gateway's."""
    import pika

    from infra.amqp import PERSISTENT_JSON
    from ingest.topology import TELEMETRY_EXCHANGE

    props = PERSISTENT_JSON  # the gateway's properties, without mandatory or confirms
    conn = pika.BlockingConnection(params)
    n = nbytes = 0
    k = len(bodies)
    t0 = time.monotonic()
    try:
        ch = conn.channel()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            for _ in range(256):
                body = bodies[n % k]
                ch.basic_publish(TELEMETRY_EXCHANGE, routing_key, body, props)
                n += 1
                nbytes += len(body)
    finally:
        if conn.is_open:
            conn.close()  # the broker answers close-ok once it has read every publish
    return {"reference": "raw", "confirms": False, **rate(n, nbytes, time.monotonic() - t0)}


def pipelined_reference(params: Any, bodies: Sequence[bytes], seconds: float,
                        routing_key: str = "bench.pipelined",
                        max_in_flight: int = MAX_IN_FLIGHT,
                        connect_timeout_s: float = 20.0) -> dict[str, Any]:
    """The project's ChannelPublisher kept full: confirms pipelined, ``max_in_flight`` at
    most. The window opens at the first confirm (that batch is not counted) and lasts
    ``seconds``; what is still in flight when it closes is not counted either."""
    from pika.adapters.select_connection import IOLoop

    from ingest.publisher import ChannelPublisher, Outgoing
    from ingest.topology import TELEMETRY_EXCHANGE

    ioloop = IOLoop()
    k = len(bodies)
    st: dict[str, Any] = {"offered": 0, "t0": None, "t1": None, "n": 0, "bytes": 0,
                          "done": False, "error": None}

    def next_msg() -> Outgoing:
        i = st["offered"]
        st["offered"] = i + 1
        return Outgoing("bench-pipelined", i, routing_key, bodies[i % k])

    def on_confirmed(msgs: list[Outgoing]) -> None:
        if st["done"]:
            return
        if st["t0"] is None:
            st["t0"] = time.monotonic()
        else:
            st["n"] += len(msgs)
            st["bytes"] += sum(len(m.body) for m in msgs)
        for _ in msgs:
            pub.offer(next_msg())  # the publisher pumps right after this callback

    pub = ChannelPublisher(ioloop, "bench-pipelined", params, TELEMETRY_EXCHANGE,
                           max_in_flight=max_in_flight, max_buffer=4 * max_in_flight,
                           on_confirmed=on_confirmed)
    for _ in range(2 * max_in_flight):
        pub.offer(next_msg())
    started = time.monotonic()

    def finish() -> None:
        st["done"] = True
        pub.close()
        ioloop.call_later(0.3, ioloop.stop)

    def watch() -> None:
        now = time.monotonic()
        if st["t0"] is None and now - started > connect_timeout_s:
            st["error"] = f"no confirm within {connect_timeout_s:.0f} s"
            finish()
        elif st["t0"] is not None and now - st["t0"] >= seconds:
            st["t1"] = now
            finish()
        else:
            ioloop.call_later(0.02, watch)

    pub.start()
    ioloop.call_later(0.02, watch)
    ioloop.start()
    if st["error"] is not None:
        raise RuntimeError(st["error"])
    return {"reference": "pipelined", "confirms": True, "max_in_flight": max_in_flight,
            **rate(st["n"], st["bytes"], st["t1"] - st["t0"]),
            "reconnects": pub.stats.reconnects}


def perftest_available() -> tuple[list[str] | None, str | None, str]:
    """([java, classpath], None), or (None, why not); and the pinned PerfTest version."""
    from infra.maven import MavenError, cache_dir, fetch_jars, pom_property

    version = pom_property(PERFTEST_POM, "perftest.version")
    java = shutil.which("java")
    if java is None:
        return None, "java is not on PATH (make setup installs openjdk-17-jre-headless)", version
    probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False,
                           timeout=60)
    if probe.returncode != 0:
        return None, f"java -version exited {probe.returncode}: {tail(probe.stderr)}", version
    try:
        jars = fetch_jars(PERFTEST_POM, cache_dir() / "perftest" / version)
    except MavenError as exc:
        return None, (f"com.rabbitmq:perf-test:{version} not obtainable from Maven Central: "
                      f"{exc}"), version
    return [java, f"{jars}/*"], None, version


def perftest_reference(java_cp: Sequence[str], version: str, params: Any, body: bytes,
                       seconds: float, confirm: int | None) -> dict[str, Any]:
    from ingest.topology import TELEMETRY_EXCHANGE

    name = "perftest" if confirm is None else "perftest_confirms"
    body_file = state_dir() / "bench" / "fig9-perftest-body.json"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_bytes(body)
    secs = max(1, round(seconds))
    cmd = perftest_command(java_cp[0], java_cp[1], exchange=TELEMETRY_EXCHANGE,
                           routing_key=f"bench.{name}", body_file=body_file, seconds=secs,
                           confirm=confirm, test_id=f"vpp-fig9-{name}")
    # The URI (with the gateway's password) goes through the environment, not the command
    # line; the prefix keeps PerfTest from reading unrelated variables (TIME, SIZE, ...).
    env = {**os.environ, "RABBITMQ_PERF_TEST_ENV_PREFIX": PERFTEST_ENV_PREFIX,
           f"{PERFTEST_ENV_PREFIX}_URI": amqp_uri(params)}
    base = {"reference": name, "confirms": confirm is not None, "max_in_flight": confirm,
            "tool": f"PerfTest {version}", "seconds": secs}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                              timeout=secs + 90)
    except subprocess.TimeoutExpired:
        return {**base, "skipped": f"PerfTest did not finish within {secs + 90} s"}
    parsed = parse_perftest(proc.stdout)
    result = perftest_result(parsed, proc.returncode, tail(proc.stderr or proc.stdout),
                             len(body), confirm)
    return {**base, **result, "perftest": parsed}


def run_references(seconds: float, use_perftest: bool,
                   progress: Callable[[str], None]) -> tuple[list[dict[str, Any]], str | None]:
    """Every reference on the home channel as the fleet's gateway user; one that fails is
    recorded with its reason, never left out. Returns the rows and why PerfTest did not run
    (None: it ran)."""
    from infra.amqp import amqp_params
    from infra.topology import load_topology
    from ingest import schema
    from ingest.topology import home_channel
    from sensors_sim.gateway import GatewayConfig

    user = GatewayConfig().user                 # as Gateway._publisher connects
    topo = load_topology()
    channel = home_channel(topo)                # channel-0
    params = amqp_params(topo, channel, user, heartbeat=30,
                         blocked_connection_timeout=seconds + 30)
    samples = sample_readings(int(time.time() * 1000))
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        row.setdefault("channel", channel.name)
        row.setdefault("user", user)
        rows.append(row)
        progress(f"    {row['reference']}: " + (
            f"skipped: {row['skipped']}" if "skipped" in row
            else f"{row['msgs_per_s']:,} msgs/s, {row['bytes_per_s']:,} B/s "
                 f"({row['body_bytes']} B bodies)"))

    for name, fn in (("raw", raw_reference), ("pipelined", pipelined_reference)):
        bodies = reference_bodies(samples, name, REFERENCE_BODIES)
        bad = [v.reason for v in map(schema.validate, bodies[:len(samples)]) if not v.ok]
        if bad:
            raise RuntimeError(f"reference bodies would be quarantined: {bad[0]}")
        progress(f"  reference {name}: {seconds:.0f} s on {channel.name} as {user} ...")
        try:
            record(fn(params, bodies, seconds))
        except Exception as exc:  # recorded in the summary; the run goes on
            record({"reference": name, "confirms": name == "pipelined",
                    "skipped": f"failed: {exc!r}"[:300]})
        time.sleep(2)  # let the broker settle before the next reference

    if not use_perftest:
        java_cp, skip, version = None, "disabled with --no-perftest", "-"
    else:
        try:
            java_cp, skip, version = perftest_available()
        except Exception as exc:  # e.g. java hanging on -version, an unreadable POM
            java_cp, skip, version = None, f"PerfTest set-up failed: {exc!r}"[:300], "-"
    if java_cp is None:
        for name in ("perftest", "perftest_confirms"):
            record({"reference": name, "confirms": name != "perftest", "skipped": skip})
        return rows, skip
    body = reference_bodies(samples, "perftest", 1)[0]
    for confirm in (None, MAX_IN_FLIGHT):
        label = "no confirms" if confirm is None else f"confirms, {confirm} in flight"
        progress(f"  reference PerfTest {version} ({label}): {seconds:.0f} s on "
                 f"{channel.name} as {user} ...")
        record(perftest_reference(java_cp, version, params, body, seconds, confirm))
        time.sleep(2)
    failed = [r for r in rows if str(r["reference"]).startswith("perftest") and "skipped" in r]
    return rows, ("; ".join(f"{r['reference']}: {r['skipped']}" for r in failed) or None)


# ---------------------------------------------------------------------------------------------
# main


def _ref(refs: Sequence[Row], name: str) -> Row | None:
    return next((r for r in refs if r["reference"] == name), None)


def _ref_value(ref: Row | None, key: str = "msgs_per_s") -> Any:
    if ref is None:
        return "not run"
    if "skipped" in ref:
        return f"skipped: {ref['skipped']}"
    return ref.get(key)


REF_FIELDS = ("reference", "confirms", "max_in_flight", "channel", "user", "messages", "bytes",
              "seconds", "msgs_per_s", "bytes_per_s", "body_bytes", "skipped")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest_fig9", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    q, f = QUICK, FULL
    ap.add_argument("--quick", action="store_true",
                    help=f"DERs {q.ders} for {q.seconds:.0f} s, saturation at intervals "
                         f"{q.intervals} s for {q.saturation_seconds:.0f} s, references "
                         f"{q.ref_seconds:.0f} s each (about 2.5 minutes)")
    ap.add_argument("--ders", default=None, help=f"Fig. 9 points, comma list (default {f.ders})")
    ap.add_argument("--seconds", type=float, default=None,
                    help=f"per Fig. 9 point (default {f.seconds:.0f})")
    ap.add_argument("--saturation-ders", type=int, default=10_000,
                    help="DERs of the saturation series (default 10000)")
    ap.add_argument("--intervals", default=None,
                    help=f"saturation series: seconds between readings of one DER, comma list "
                         f"(default {f.intervals}; '' for none)")
    ap.add_argument("--saturation-seconds", type=float, default=None,
                    help=f"per saturation point (default {f.saturation_seconds:.0f})")
    ap.add_argument("--drain-timeout", type=float, default=None,
                    help=f"the runner's --drain-timeout, every point (default "
                         f"{f.drain_timeout:.0f})")
    ap.add_argument("--ref-seconds", type=float, default=None,
                    help=f"per reference publisher (default {f.ref_seconds:.0f})")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE,
                    help=f"sustained: confirmed >= (1 - tolerance) x offered, no drops "
                         f"(default {TOLERANCE})")
    ap.add_argument("--no-perftest", action="store_true", help="do not run RabbitMQ PerfTest")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    d = QUICK if args.quick else FULL
    try:
        counts = [int(x) for x in (args.ders or d.ders).split(",")]
    except ValueError:
        ap.error(f"--ders must be a comma list of integers, got {args.ders!r}")
    if any(c < 1 for c in counts):
        ap.error("--ders: every count must be >= 1")
    text = d.intervals if args.intervals is None else args.intervals
    try:
        intervals = intervals_arg(text)
    except ValueError as exc:
        ap.error(str(exc))
    if args.saturation_ders < 1:
        ap.error("--saturation-ders must be >= 1")
    if not 0 < args.tolerance < 1:
        ap.error("--tolerance must be within (0, 1)")
    seconds = args.seconds or d.seconds
    sat_seconds = args.saturation_seconds or d.saturation_seconds
    drain = args.drain_timeout or d.drain_timeout
    ref_seconds = args.ref_seconds or d.ref_seconds
    if min(seconds, sat_seconds, drain, ref_seconds) <= 0:
        ap.error("durations must be > 0")

    t_start = time.monotonic()
    rows: list[dict[str, Any]] = []
    print(f"Fig. 9: {len(counts)} points, one reading per DER every {INTERVAL_S:g} s", flush=True)
    for n in counts:
        print(f"  {n} DERs every {INTERVAL_S:g} s for {seconds:.0f} s ...", flush=True)
        rows.append(run_point("fig9", n, INTERVAL_S, seconds, drain))
        print(f"    {_brief(rows[-1])}", flush=True)
    sat: list[dict[str, Any]] = []
    if intervals:
        print(f"saturation: {args.saturation_ders} DERs, intervals {text} s", flush=True)
    for interval in intervals:
        print(f"  {args.saturation_ders} DERs every {interval:g} s "
              f"({args.saturation_ders / interval:,.0f} offered/s) for {sat_seconds:.0f} s ...",
              flush=True)
        sat.append(run_point("saturation", args.saturation_ders, interval, sat_seconds, drain))
        verdict = "sustained" if sustained(sat[-1], args.tolerance) else "NOT sustained"
        print(f"    {verdict}: {_brief(sat[-1])}", flush=True)
    print("references: upper bounds for one channel", flush=True)
    refs, perftest_skip = run_references(ref_seconds, not args.no_perftest, print)

    out = results_dir("fig9")
    write_csv(out / "fig9.csv", rows)
    write_csv(out / "saturation.csv", sat, fields=None if sat else list(rows[0]))
    write_csv(out / "references.csv", [{k: r.get(k) for k in REF_FIELDS} for r in refs],
              fields=REF_FIELDS)
    slope, worst = linearity(rows)
    bslope, bworst = linearity(rows, "confirmed_bytes_per_s")
    linear = worst <= LINEAR_TOLERANCE and bworst <= LINEAR_TOLERANCE
    everything = rows + sat
    limit = find_limit(everything, args.tolerance)
    raw = _ref(refs, "raw")
    ratio = peak_ratio(everything, raw)
    peak = max(float(r["confirmed_per_s"]) for r in everything)
    n_conf = sum(int(r["confirmed"]) for r in rows)
    _plot(out, rows, sat, slope, limit, refs)
    ours: dict[str, Any] = {
        "shape": f"{'linear' if linear else 'not linear'} (worst deviation "
                 f"{100 * max(worst, bworst):.1f} %)",
        "slope readings/s per DER": round(slope, 5),
        "slope bytes/s per DER": round(bslope, 2),
        "worst deviation from linear": round(worst, 4),
        "worst deviation from linear, bytes/s": round(bworst, 4),
        "confirmed/s by DERs": {str(r["ders"]): r["confirmed_per_s"] for r in rows},
        "confirmed bytes/s by DERs": {str(r["ders"]): r["confirmed_bytes_per_s"] for r in rows},
        "bytes per reading": (round(sum(int(r["confirmed_bytes"]) for r in rows) / n_conf, 1)
                              if n_conf else None),
        "gateway CPU % by DERs": {str(r["ders"]): r["gateway_cpu_pct_of_core"] for r in rows},
        "dropped": sum(int(r["dropped"]) for r in rows),
        f"limit (confirmed >= {100 * (1 - args.tolerance):g} % of offered, no drops)":
            describe_limit(limit),
        "saturation confirmed/s by offered/s": {f"{r['offered_per_s']:g}": r["confirmed_per_s"]
                                                for r in sat},
        "fleet peak confirmed/s": peak,
        "raw pika upper bound msgs/s (no confirms)": _ref_value(raw),
        "raw pika upper bound bytes/s": _ref_value(raw, "bytes_per_s"),
        "pipelined confirms msgs/s (ChannelPublisher)": _ref_value(_ref(refs, "pipelined")),
        "PerfTest msgs/s (no confirms)": _ref_value(_ref(refs, "perftest")),
        f"PerfTest msgs/s (confirms, {MAX_IN_FLIGHT} in flight)":
            _ref_value(_ref(refs, "perftest_confirms")),
        "fleet peak / raw upper bound": ratio,
    }
    channels = sorted({c for r in everything for c in str(r["channels"]).split("+") if c})
    notes = (f"Fig. 9 points: one reading per DER every {INTERVAL_S:g} s for {seconds:.0f} s; "
             f"saturation: {args.saturation_ders} DERs, intervals {text or '-'} s, "
             f"{sat_seconds:.0f} s each; drain timeout {drain:.0f} s. One gateway process, one "
             f"AMQP connection per channel (fleet channels: {', '.join(channels) or '-'}), "
             f"confirms pipelined ({MAX_IN_FLIGHT} in flight). confirmed/s is the readings "
             "confirmed over the runner's wall time (connect and drain included); bytes are "
             "message bodies; sustained = confirmed within "
             f"{100 * args.tolerance:g} % of offered x duration, nothing dropped. References "
             f"publish valid reading bodies (der_id bench-*) for {ref_seconds:.0f} s each to "
             "channel-0 as the gateway user; the raw loop's clock includes the close handshake. "
             "All numbers come from this one run."
             + (f" PerfTest: {perftest_skip}." if perftest_skip else ""))
    write_summary(out, title="Fig. 9: confirmed readings/s and bytes/s against number of DERs",
                  command="make bench-ingest" + (" BENCH_ARGS=--quick" if args.quick else ""),
                  paper={"shape": "linear in the number of sensors"},
                  ours=ours, quick=args.quick, duration_s=time.monotonic() - t_start,
                  notes=notes,
                  files=["fig9.csv", "saturation.csv", "references.csv", "fig9.png"],
                  linearity={"readings": {"slope_per_der": slope, "worst_deviation": worst},
                             "bytes": {"slope_per_der": bslope, "worst_deviation": bworst},
                             "tolerance": LINEAR_TOLERANCE, "linear": linear},
                  limit=limit, references=refs, perftest_skipped=perftest_skip,
                  fleet_peak_over_raw=ratio)
    print(f"wrote {out}: slope {slope:.4f} readings/s per DER ({bslope:.1f} B/s), worst "
          f"deviation {100 * max(worst, bworst):.1f} %; limit {describe_limit(limit)}; "
          f"fleet peak / raw {ratio if ratio is not None else '-'}", flush=True)
    return 0


def _plot(out: Path, rows: Sequence[Row], sat: Sequence[Row], slope: float, limit: Row,
          refs: Sequence[Row]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [r["ders"] for r in rows]
    a.plot(xs, [r["confirmed_per_s"] for r in rows], "o-", label="readings/s confirmed")
    a.plot(xs, [slope * x for x in xs], "--", color="grey",
           label=f"linear, {slope:.4f}/s per DER")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel(f"DERs (1 reading / {INTERVAL_S:g} s each)")
    a.set_ylabel("readings/s confirmed")
    a2 = a.twinx()
    a2.plot(xs, [r["confirmed_bytes_per_s"] for r in rows], "s:", color="tab:orange",
            label="bytes/s confirmed")
    a2.set_yscale("log")
    a2.set_ylabel("bytes/s confirmed (bodies)")
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = a2.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    a.set_title("Fig. 9: rate and data size against DERs", fontsize=10)

    pts = sorted([*rows, *sat], key=lambda r: float(r["offered_per_s"]))
    offered = [float(r["offered_per_s"]) for r in pts]
    b.plot(offered, [r["confirmed_per_s"] for r in pts], "o-", label="fleet: confirmed/s")
    b.plot(offered, offered, ":", color="grey", label="confirmed = offered")
    colours = {"raw": "tab:red", "pipelined": "tab:green", "perftest": "tab:purple",
               "perftest_confirms": "tab:brown"}
    for r in refs:
        if "skipped" not in r and r.get("msgs_per_s"):
            b.axhline(float(r["msgs_per_s"]), ls="--", lw=1,
                      color=colours.get(str(r["reference"]), "black"),
                      label=f"{r['reference']}: {float(r['msgs_per_s']):,.0f} msgs/s")
    if limit["limit_offered_per_s"] is not None:
        lim = float(limit["limit_offered_per_s"])
        b.axvline(lim, color="black", lw=0.8, label=f"limit: {lim:,.0f} offered/s")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("readings/s offered")
    b.set_ylabel("readings/s confirmed | msgs/s")
    b.legend(fontsize=7, loc="upper left")
    b.set_title("Saturation and one-channel upper bounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fig9.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
