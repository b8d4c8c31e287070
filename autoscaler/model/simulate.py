"""A deterministic, seeded discrete-time simulator of the platform's load path, for training
data: offered readings/s and a node-count schedule in, the points the monitor would write out.

Physics (per ``step_s``; capacities from ``capacity.yaml``):

* **channels** accept the offered rate plus what the gateways hold back, up to what the warm
  channels sustain (``queue.total(n)``); the rest waits in the gateways' buffer (the ingress
  backlog) and beyond ``publisher_buffer`` is lost (Fig. 12's red circles);
* **Spark** runs the ``ingest`` query as micro-batches on a processing-time trigger: a batch
  takes everything in the streams (up to ``max_rows_per_trigger``), lasts
  ``overhead + rows / inner_rate`` and the next starts at the next trigger, or at once when the
  batch overran. ``inner_rate`` is chosen so that the pool's sustained capacity is exactly the
  rate at which a batch fills its trigger interval; above it the lag grows until batches get
  big enough to amortise the overhead (latency then exceeds the trigger, the twin is late);
* a **woken node** reports at once but adds capacity only after ``wake_s`` (broker boot,
  worker registration and executor start);
* **CPU/memory** per node follow ``PoolCapacity.cpu_pct``/``memory_pct`` of the pool's
  utilisation, plus a fixed per-node skew and seeded noise. A channel's load counts deliveries
  to Spark as well as publishes, so a catching-up Spark heats the channels.

Output: ``queuing_cluster``/``processing_cluster`` per active node, ``rabbitmq_queue`` and
``stream_lag`` per active channel every ``sample_s``; ``spark_stream`` at every batch end, all as
InfluxDB-style point dicts (``{"measurement", "tags", "fields", "time"}``, epoch seconds) that
``diagnoser.window.build_window`` reads, plus the :class:`~autoscaler.model.dataset.LoadTrace`
truth the labels are computed from. The same seed gives the same points.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler.model.capacity import Capacity
from autoscaler.model.dataset import DEFAULT_LABELS, LabelConfig, LoadTrace
from infra.topology import PoolPolicy, Topology
from ingest.topology import TELEMETRY_STREAM
from monitor.schema import PROCESSING, QUEUE, QUEUING, STREAM_LAG, STREAM_PROGRESS
from sensors_sim.models.base import mix_seed
from sensors_sim.scenario import Scenario, timeline

QUEUE_NODES = ("channel-0", "channel-1")                # infra/topology.yaml
PROCESSING_NODES = ("worker-0", "worker-1", "worker-2")
DEFAULT_POOLS = {"queue": PoolPolicy("queue", "stop", 1, 2),
                 "processing": PoolPolicy("processing", "stop", 1, 3)}
DAY_S = 86_400.0


# ---------------------------------------------------------------------------------------------
# workloads: offered readings/s over run time


@dataclass(frozen=True)
class Workload:
    """Offered readings/s, one value per ``step_s`` from run time 0."""

    name: str
    rates: tuple[float, ...]
    step_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.step_s > 0:
            raise ValueError(f"workload.step_s: must be > 0, got {self.step_s!r}")
        if not self.rates:
            raise ValueError("workload.rates: empty")
        for i, r in enumerate(self.rates):
            if not (math.isfinite(r) and r >= 0):
                raise ValueError(f"workload.rates[{i}]: must be a finite rate >= 0, got {r!r}")

    @property
    def duration_s(self) -> float:
        return len(self.rates) * self.step_s

    def rate_at(self, t: float) -> float:
        i = min(len(self.rates) - 1, max(0, math.floor(t / self.step_s)))
        return self.rates[i]

    def scaled(self, factor: float) -> Workload:
        return Workload(self.name, tuple(r * factor for r in self.rates), self.step_s)

    @property
    def peak(self) -> float:
        return max(self.rates)


def from_scenario(scenario: Scenario, *, step_s: float = 1.0,
                  rate_scale: float | None = None) -> Workload:
    """A sensors_sim scenario's offered rate (``timeline``: piecewise constant per phase)."""
    sc = scenario if rate_scale is None else scenario.with_rate_scale(rate_scale)
    steps = timeline(sc)
    n = max(1, math.ceil(sc.duration_s / step_s))
    rates, k = [], 0
    for i in range(n):
        t = i * step_s
        while k + 1 < len(steps) and steps[k + 1].at_s <= t:
            k += 1
        rates.append(steps[k].rate_per_s if steps and steps[0].at_s <= t else 0.0)
    return Workload(sc.name, tuple(rates), step_s)


SHAPES = ("step", "step_down", "ramp", "wave", "bursts", "steps")


def shaped(kind: str, *, duration_s: float, base: float, peak: float, seed: int,
           step_s: float = 1.0) -> Workload:
    """A synthetic load shape between ``base`` and ``peak`` readings/s: ``step`` (up once),
    ``step_down`` (up, then back), ``ramp`` (up and down linearly), ``wave`` (sinusoid),
    ``bursts`` (base with short spikes to peak), ``steps`` (a staircase up and down)."""
    if kind not in SHAPES:
        raise ValueError(f"shape: must be one of {', '.join(SHAPES)}, got {kind!r}")
    rng = random.Random(mix_seed(seed, kind))
    n = max(1, math.ceil(duration_s / step_s))
    t1, t2 = sorted(rng.uniform(0.15, 0.85) * duration_s for _ in range(2))
    period = rng.uniform(0.3, 1.0) * duration_s
    phase = rng.uniform(0, 2 * math.pi)
    spikes = [(rng.uniform(0, duration_s), rng.uniform(5, 40)) for _ in range(rng.randint(2, 6))]
    levels = [rng.uniform(0, 1) for _ in range(rng.randint(3, 6))]
    rates = []
    for i in range(n):
        t = i * step_s
        if kind == "step":
            x = 1.0 if t >= t1 else 0.0
        elif kind == "step_down":
            x = 1.0 if t1 <= t < t2 else 0.0
        elif kind == "ramp":
            mid = (t1 + t2) / 2
            x = max(0.0, 1 - abs(t - mid) / max(1.0, mid - t1 + 60))
        elif kind == "wave":
            x = 0.5 + 0.5 * math.sin(2 * math.pi * t / period + phase)
        elif kind == "bursts":
            x = 1.0 if any(s <= t < s + d for s, d in spikes) else 0.0
        else:   # steps
            x = levels[min(len(levels) - 1, math.floor(t / duration_s * len(levels)))]
        rates.append(base + (peak - base) * x)
    return Workload(kind, tuple(rates), step_s)


def perturb(workload: Workload, *, seed: int, noise: float = 0.05, start: float = 0.0,
            diurnal: float = 0.0, tz_offset_s: float = 0.0) -> Workload:
    """Multiplicative AR(1) noise (relative std ``noise``, correlated over ~10 s as fleets
    are) and an optional diurnal factor ``1 + diurnal * sin(...)`` peaking at 12:00 local time
    of ``start + t``, so time of day carries the information it carries in real history."""
    rng = random.Random(mix_seed(seed, "perturb"))
    rho = math.exp(-workload.step_s / 10.0)
    e, out = 0.0, []
    for i, r in enumerate(workload.rates):
        e = rho * e + math.sqrt(1 - rho * rho) * rng.gauss(0.0, noise)
        tod = ((start + tz_offset_s + i * workload.step_s) % DAY_S) / DAY_S
        day = 1.0 + diurnal * math.sin(2 * math.pi * (tod - 0.25))
        out.append(max(0.0, r * (1.0 + e) * day))
    return Workload(workload.name, tuple(out), workload.step_s)


# ---------------------------------------------------------------------------------------------
# node-count schedules


@dataclass(frozen=True)
class Schedule:
    """Active nodes per pool over run time: ``((at_s, queue, processing), ...)`` from 0 on."""

    changes: tuple[tuple[float, int, int], ...]

    def __post_init__(self) -> None:
        if not self.changes or self.changes[0][0] != 0:
            raise ValueError("schedule.changes: must start at at_s 0")
        for i, (at, q, p) in enumerate(self.changes):
            if q < 1 or p < 1:
                raise ValueError(f"schedule.changes[{i}]: counts must be >= 1, got {q}, {p}")
            if i and at < self.changes[i - 1][0]:
                raise ValueError(f"schedule.changes[{i}].at_s: before the previous change")

    def at(self, t: float) -> tuple[int, int]:
        q, p = self.changes[0][1:]
        for at, q1, p1 in self.changes:
            if at > t:
                break
            q, p = q1, p1
        return q, p

    @classmethod
    def fixed(cls, queue: int, processing: int) -> Schedule:
        return cls(((0.0, queue, processing),))


def random_schedule(duration_s: float, *, seed: int,
                    pools: Mapping[str, PoolPolicy] = DEFAULT_POOLS,
                    mean_hold_s: float = 150.0) -> Schedule:
    """Counts drawn uniformly within the pools' bounds, one pool changing by one node after
    exponentially distributed holds: under- and over-provisioned states the model must read."""
    rng = random.Random(mix_seed(seed, "schedule"))
    qp = [pools["queue"], pools["processing"]]
    cur = [rng.randint(p.min_active, p.max_active) for p in qp]
    changes = [(0.0, cur[0], cur[1])]
    t = rng.expovariate(1 / mean_hold_s)
    while t < duration_s:
        k = rng.randrange(2)
        step = rng.choice((-1, 1))
        cur[k] = min(qp[k].max_active, max(qp[k].min_active, cur[k] + step))
        changes.append((round(t, 3), cur[0], cur[1]))
        t += rng.expovariate(1 / mean_hold_s)
    return Schedule(tuple(changes))


def following_schedule(workload: Workload, capacity: Capacity, *, seed: int,
                       pools: Mapping[str, PoolPolicy] = DEFAULT_POOLS,
                       labels: LabelConfig = DEFAULT_LABELS) -> Schedule:
    """A late but sensible autoscaler: every ``interval`` it sizes each pool for the rate it saw
    ``delay`` ago (random per run), one node per step. Gives the near-right states a working
    orchestrator produces, where the exact count matters most."""
    rng = random.Random(mix_seed(seed, "follow"))
    delay = rng.uniform(10, 90)
    interval = rng.uniform(20, 60)
    util = labels.utilisation_target * rng.uniform(0.8, 1.2)
    qp = [pools["queue"], pools["processing"]]
    cur = [qp[0].min_active, qp[1].min_active]
    changes = [(0.0, cur[0], cur[1])]
    t = interval
    while t < workload.duration_s:
        seen = workload.rate_at(max(0.0, t - delay)) / util
        for k, pool in enumerate(("queue", "processing")):
            want = capacity.pool(pool).nodes_for(seen, qp[k].min_active, qp[k].max_active)
            cur[k] += (want > cur[k]) - (want < cur[k])
        if (cur[0], cur[1]) != changes[-1][1:]:
            changes.append((round(t, 3), cur[0], cur[1]))
        t += interval
    return Schedule(tuple(changes))


# ---------------------------------------------------------------------------------------------
# the simulation


@dataclass(frozen=True)
class SimConfig:
    step_s: float = 1.0
    sample_s: float = 10.0                  # node agents / RabbitMQ exporter interval
    trigger_s: float = 2.0                  # spark_jobs.telemetry_job ingest trigger
    max_rows_per_trigger: int = 30_000
    publisher_buffer: float = 500_000.0     # readings the gateways hold before dropping
    wake_s: Mapping[str, float] = field(
        default_factory=lambda: {"queue": 10.0, "processing": 30.0})
    cpu_noise_pct: float = 2.5
    memory_noise_pct: float = 0.8
    node_skew_pct: float = 4.0              # fixed hot/cool offset per node and run
    duration_noise: float = 0.08            # relative noise of a batch's duration
    queue_nodes: tuple[str, ...] = QUEUE_NODES
    processing_nodes: tuple[str, ...] = PROCESSING_NODES
    query: str = "ingest"
    stream: str = TELEMETRY_STREAM
    cluster: str = "vpp-twin"

    @classmethod
    def from_topology(cls, topo: Topology, **overrides: Any) -> SimConfig:
        return cls(queue_nodes=tuple(n.name for n in topo.pool_nodes("queue")),
                   processing_nodes=tuple(n.name for n in topo.pool_nodes("processing")),
                   cluster=topo.project, **overrides)


@dataclass(frozen=True)
class SimResult:
    run_id: str
    start: float
    points: tuple[dict[str, Any], ...]
    trace: LoadTrace
    schedule: Schedule
    lost: float                     # readings dropped by full gateway buffers
    workload: str = ""

    def active_at(self, t: float) -> dict[str, int]:
        q, p = self.schedule.at(t - self.start)
        return {"queue": q, "processing": p}


@dataclass
class _Batch:
    start: float
    end: float
    rows: float
    interval: float
    work_start: float     # after the fixed overhead (driver-side planning): executors busy

    def work_in(self, lo: float, hi: float) -> float:
        return max(0.0, min(self.end, hi) - max(self.work_start, lo))


def simulate(workload: Workload, schedule: Schedule, capacity: Capacity, *, seed: int,
             start: float = 1_700_000_000.0, config: SimConfig | None = None,
             initial_lag: float = 0.0, initial_messages: float = 0.0,
             run_id: str | None = None) -> SimResult:
    """Run ``workload`` against ``schedule`` for the workload's duration; see the module doc."""
    cfg = config or SimConfig()
    rng = random.Random(mix_seed(seed, "simulate"))
    qcap, pcap = capacity.queue, capacity.processing
    skew = {n: rng.gauss(0.0, cfg.node_skew_pct) for n in cfg.queue_nodes + cfg.processing_nodes}
    trigger, overhead = cfg.trigger_s, pcap.batch_overhead_ms / 1000.0
    # The rows/s a busy pool works at, such that a batch of total(n) * trigger rows fills the
    # trigger interval exactly: sustained capacity = inner * (1 - overhead / trigger).
    busy_factor = trigger / max(1e-6, trigger - overhead)

    since: dict[str, float] = {}          # node -> run time it became active
    ingress = 0.0                         # readings waiting in the gateways
    lag = float(initial_lag)              # in the streams, not yet taken by a batch
    retained = float(initial_messages)    # stream messages (they stay after delivery)
    end_offset = float(initial_messages)
    lost = 0.0
    batch: _Batch | None = None
    next_trigger = 0.0
    last_batch_start: float | None = None

    # per sample interval: readings accepted by the channels, delivered to Spark, and the
    # seconds the executors spent on rows (the processing pool's utilisation)
    acc = {"accepted": 0.0, "delivered": 0.0, "work_s": 0.0}
    points: list[dict[str, Any]] = []
    times: list[float] = []
    offered_tr: list[float] = []
    ingress_tr: list[float] = []
    stream_tr: list[float] = []
    dt = cfg.step_s
    n_steps = max(1, math.ceil(workload.duration_s / dt))
    next_sample = cfg.sample_s

    def active_nodes(t: float) -> tuple[list[str], list[str]]:
        q, p = schedule.at(t)
        return list(cfg.queue_nodes[:q]), list(cfg.processing_nodes[:p])

    def warm(nodes: list[str], pool: str, t: float) -> int:
        return sum(1 for n in nodes if t - since[n] >= cfg.wake_s.get(pool, 0.0) or since[n] == 0)

    for i in range(n_steps):
        t = i * dt
        qn, pn = active_nodes(t)
        for n in cfg.queue_nodes + cfg.processing_nodes:
            if n in qn or n in pn:
                since.setdefault(n, t)
            else:
                since.pop(n, None)
        q_warm, p_warm = warm(qn, "queue", t), warm(pn, "processing", t)
        inner = pcap.total(p_warm) * busy_factor

        # Spark: finish the running batch and start the next within this step.
        horizon = t + dt
        while True:
            if batch is not None and batch.end <= horizon:
                fin = batch
                batch = None
                acc["work_s"] += fin.work_in(t, horizon)
                duration = fin.end - fin.start
                points.append(_point(STREAM_PROGRESS.name, {"query": cfg.query}, {
                    "input_rate": fin.rows / fin.interval if fin.interval > 0 else 0.0,
                    "processed_rate": fin.rows / duration if duration > 0 else 0.0,
                    "batch_duration_ms": duration * 1000.0,
                    "num_input_rows": int(fin.rows),
                    "executors": p_warm,
                }, start + fin.end))
                next_trigger = max(next_trigger, fin.end)
                continue
            if batch is None and next_trigger <= horizon and inner > 0:
                if lag <= 0:
                    # Nothing new in the streams: Spark skips the trigger and reports no
                    # progress (an idle query), as the real listener does.
                    next_trigger += trigger
                    continue
                begin = max(next_trigger, t)
                rows = min(lag, float(cfg.max_rows_per_trigger))
                noise = max(0.5, 1.0 + rng.gauss(0.0, cfg.duration_noise))
                duration = (overhead + rows / inner) * noise
                interval = begin - last_batch_start if last_batch_start is not None else trigger
                batch = _Batch(begin, begin + duration, rows, interval,
                               begin + duration - rows / inner * noise)
                last_batch_start = begin
                lag -= rows
                acc["delivered"] += rows
                next_trigger = begin + trigger
                continue
            break

        if batch is not None:
            acc["work_s"] += batch.work_in(t, horizon)

        offered = workload.rate_at(t)
        want = offered * dt + ingress
        accepted = min(want, qcap.total(q_warm) * dt)
        ingress = want - accepted
        if ingress > cfg.publisher_buffer:
            lost += ingress - cfg.publisher_buffer
            ingress = cfg.publisher_buffer
        lag += accepted
        retained += accepted
        end_offset += accepted
        acc["accepted"] += accepted

        inflight = batch.rows if batch is not None else 0.0
        times.append(start + t)
        offered_tr.append(offered)
        ingress_tr.append(ingress)
        stream_tr.append(lag + inflight)

        if t + dt >= next_sample - 1e-9:
            when = start + next_sample
            points.extend(_samples(cfg, capacity, rng, skew, since, t + dt, when, qn, pn,
                                   acc, lag + inflight, retained, end_offset))
            acc = dict.fromkeys(acc, 0.0)
            next_sample += cfg.sample_s

    trace = LoadTrace(tuple(times), tuple(offered_tr), tuple(ingress_tr), tuple(stream_tr))
    points.sort(key=lambda p: (p["time"], p["measurement"], sorted(p["tags"].items())))
    return SimResult(run_id or f"sim-{seed}", start, tuple(points), trace, schedule, lost,
                     workload.name)


def _point(measurement: str, tags: dict[str, str], fields: dict[str, Any], time: float
           ) -> dict[str, Any]:
    return {"measurement": measurement, "tags": tags, "fields": fields, "time": round(time, 6)}


def _samples(cfg: SimConfig, capacity: Capacity, rng: random.Random, skew: Mapping[str, float],
             since: Mapping[str, float], t_rel: float, when: float, qn: Sequence[str],
             pn: Sequence[str], acc: Mapping[str, float], backlog: float, retained: float,
             end_offset: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    s = cfg.sample_s
    qcap, pcap = capacity.queue, capacity.processing
    load_q = qcap.publish_share * acc["accepted"] + (1 - qcap.publish_share) * acc["delivered"]
    warm_q = [n for n in qn if t_rel - since[n] >= cfg.wake_s.get("queue", 0) or since[n] == 0]
    warm_p = [n for n in pn if t_rel - since[n] >= cfg.wake_s.get("processing", 0)
              or since[n] == 0]
    u_q = qcap.utilisation(load_q / s, len(warm_q)) if warm_q else 0.0
    u_p = min(1.0, acc["work_s"] / s)

    def clip(v: float) -> float:
        return round(min(100.0, max(0.0, v)), 3)

    for nodes, warm_nodes, u, cap, meas, role in (
            (qn, warm_q, u_q, qcap, QUEUING, "rabbitmq"),
            (pn, warm_p, u_p, pcap, PROCESSING, "spark-worker")):
        for n in nodes:
            if n in warm_nodes:
                cpu = cap.cpu_pct(u) + skew[n] + rng.gauss(0, cfg.cpu_noise_pct)
                mem = cap.memory_pct(u) + skew[n] / 4 + rng.gauss(0, cfg.memory_noise_pct)
            else:   # booting: a JVM / Erlang VM starting is busy and has not grown its heap
                cpu = 55.0 + rng.gauss(0, 10.0)
                mem = cap.memory_idle_pct * 0.7 + rng.gauss(0, 2.0)
            out.append(_point(meas.name, {"cluster": cfg.cluster, "node": n, "role": role},
                              {"cpu": clip(cpu), "memory": clip(mem), "disk": 12.0,
                               "processes": 40.0 if role == "rabbitmq" else 60.0}, when))
    # Channels: the routing table spreads DERs evenly over the warm channels.
    share = 1.0 / len(warm_q) if warm_q else 0.0
    for n in qn:
        w = share if n in warm_q else 0.0
        out.append(_point(QUEUE.name, {"node": n, "queue": cfg.stream}, {
            "messages": round(retained * w, 1),
            "publish_rate": round(acc["accepted"] / s * w, 3),
            "deliver_rate": round(acc["delivered"] / s * w, 3),
            "consumers": 1.0 if w else 0.0,
        }, when))
        lag_n = backlog * w
        out.append(_point(STREAM_LAG.name, {"node": n, "stream": cfg.stream}, {
            "end_offset": round(end_offset * w, 1),
            "committed_offset": round(max(0.0, end_offset * w - lag_n), 1),
            "lag": round(lag_n, 1)}, when))
    return out
