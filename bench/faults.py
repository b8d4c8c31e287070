"""Live overloads and the diagnoser that watches them, shared by the diagnoser's integration
tests and ``make bench-faults``: a CPU burner inside a node's container, the DER loads that
flood a channel or keep a worker busy, dormant nodes woken for a while, and ``python -m
diagnoser`` as a child whose decisions are read from its log. Each injector is a context
manager that undoes itself whatever happens, and each is bounded in time on its own."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.fault_scoring import STRAGGLER, Observation
from infra.platform import Platform
from infra.procs import Proc
from infra.topology import Topology

# Fleet arguments (``python -m sensors_sim run``) of the loads; add ``--duration``.
BUSY_WORKER_LOAD = ("--ders", "1500", "--interval", "1")          # ~1,500 readings/s
FLOOD_LOAD = ("--ders", "7000", "--interval", "1", "--drain-timeout", "20")  # past a broker
NOMINAL_LOAD = ("--ders", "200", "--interval", "1")              # well within one worker


class DiagnoserProc:
    """``python -m diagnoser`` with a given rules file; its decisions read from its log (``log``,
    default: next to the rules file)."""

    def __init__(self, rules: Path, interval: float = 5.0, name: str = "test-diagnoser",
                 log: Path | None = None) -> None:
        self.log = log or rules.with_name(f"{name}.log")
        self.log.write_text("")
        # No /metrics: the platform's own diagnoser may be serving the topology's port. A name
        # of its own keeps its labels apart from that diagnoser's.
        self.child = Proc("diagnoser", [sys.executable, "-m", "diagnoser", "--rules", str(rules),
                                        "--interval", str(interval), "--metrics-port", "0",
                                        "--name", name], self.log)
        self.proc = self.child.proc

    @property
    def events(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if '"event":"diagnosis"' in line:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def alive(self) -> bool:
        return self.child.running()

    def labels(self) -> list[dict]:
        if not self.alive():
            raise AssertionError(f"the diagnoser exited with {self.proc.returncode}")
        return [lab for e in self.events if isinstance(e["labels"], list) for lab in e["labels"]]

    def observations(self) -> list[Observation]:
        return observations(self.events)

    def stop(self) -> None:
        self.child.stop(timeout=30)


def observations(events: list[dict]) -> list[Observation]:
    """Every scale label (the first node it names) and every straggler of the diagnoser's
    ``diagnosis`` log events (``labels`` is a list, or "0 (reliable)" when nothing fired)."""
    out = []
    for e in events:
        for lab in e["labels"] if isinstance(e.get("labels"), list) else ():
            nodes = lab.get("nodes") or [None]
            out.append(Observation(e["ts"], lab["label"], nodes[0], lab.get("rule", "")))
        for s in e.get("stragglers") or ():
            out.append(Observation(e["ts"], STRAGGLER, s.get("node"), s.get("method", "")))
    return out


@contextlib.contextmanager
def _in_container(topo: Topology, node: str, seconds: float, command: str
                  ) -> Iterator[subprocess.Popen]:
    """``command`` inside ``node``'s container for at most ``seconds``; killed by pid on exit."""
    container = topo.container_name(node)
    pid_file = f"/tmp/vpp-fault-{uuid.uuid4().hex[:8]}.pid"
    # `timeout` bounds it even if this process dies; it passes a TERM on to the command.
    script = f"echo $$ > {pid_file}; exec timeout {max(1, round(seconds))} {command}"
    proc = subprocess.Popen(["docker", "exec", container, "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        subprocess.run(["docker", "exec", container, "sh", "-c",
                        f"[ -f {pid_file} ] && kill $(cat {pid_file}); rm -f {pid_file}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       timeout=60)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def cpu_burner(topo: Topology, node: str, seconds: float
               ) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """One busy Python loop inside ``node``'s container (its CPU quota is well below a core, so
    one loop saturates it) for at most ``seconds``."""
    return _in_container(topo, node, seconds, "python3 -c 'while True: pass'")


# Holds the container's working set (usage minus inactive page cache, what the agent reports;
# cgroup v2 or v1) at `fill` of its memory limit: 16 MB blocks, every page touched so they are
# resident, added while below the target and given back while above it. A one-shot allocation
# is OOM-killed as soon as the executor's JVM grows (measured: at 19 s, 90 % of 1.5 GB).
_HOG = """
import os, time
v2 = os.path.exists('/sys/fs/cgroup/memory.max')
d = '/sys/fs/cgroup/' if v2 else '/sys/fs/cgroup/memory/'
def read(name):
    return open(d + name).read()
limit = int(read('memory.max' if v2 else 'memory.limit_in_bytes'))
block, held = 16 << 20, []
while True:
    stat = dict(line.split() for line in read('memory.stat').splitlines())
    used = int(read('memory.current' if v2 else 'memory.usage_in_bytes'))
    ws = used - int(stat.get('inactive_file' if v2 else 'total_inactive_file', 0))
    if ws < limit * {fill} - block:
        b = bytearray(block)
        for i in range(0, block, 4096):
            b[i] = 1
        held.append(b)
        continue
    if ws > limit * ({fill} + 0.03) and held:
        held.pop()
    time.sleep(0.2)
"""


def memory_hog(topo: Topology, node: str, seconds: float, fill: float = 0.9
               ) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """Memory pressure inside ``node``'s container: its working set held at ``fill`` of its
    limit for at most ``seconds``."""
    if not 0 < fill < 1:
        raise ValueError(f"fill: must be in (0, 1), got {fill}")
    return _in_container(topo, node, seconds, f"python3 -c \"{_HOG.format(fill=fill)}\"")


@contextlib.contextmanager
def woken(platform: Platform, *nodes: str) -> Iterator[None]:
    """Dormant ``nodes`` awake for the block, put back to sleep after it whatever happened."""
    try:
        for node in nodes:
            platform.wake(node)
        yield
    finally:
        for node in nodes:
            platform.sleep(node, enforce_min=False)
