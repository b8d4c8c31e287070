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
def cpu_burner(topo: Topology, node: str, seconds: float) -> Iterator[subprocess.Popen]:
    """One busy Python loop inside ``node``'s container (its CPU quota is well below a core, so
    one loop saturates it) for at most ``seconds``; killed by its pid on exit."""
    container = topo.container_name(node)
    pid_file = f"/tmp/vpp-burner-{uuid.uuid4().hex[:8]}.pid"
    # `timeout` bounds it even if this process dies; it passes a TERM on to the loop.
    script = (f"echo $$ > {pid_file}; exec timeout {max(1, round(seconds))} "
              "python3 -c 'while True: pass'")
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
