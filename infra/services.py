"""The project's host-side services (metrics writer, collector, diagnoser, orchestrator):
started detached with a pid file and a log under ``.state/``, stopped by pid, listed by
``make status``. Only processes this project started are ever signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra.health import port_open
from infra.state import ROOT, state_dir
from infra.topology import Topology


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port_key: str  # topology services entry of its /metrics port
    # Started by `make up`. The orchestrator is not: it changes containers on its own, so it
    # runs only when asked (`make orchestrator`, `make demo`), never behind a test's back.
    on_up: bool = True


SERVICES = (
    Service("metrics-writer", "monitor.writer", "metrics_writer"),
    Service("collector", "monitor.collect", "collector"),
    Service("diagnoser", "diagnoser", "diagnoser"),
    Service("orchestrator", "autoscaler", "orchestrator", on_up=False),
)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    metrics_port: int
    metrics_up: bool
    log: Path


def _pid_file(name: str) -> Path:
    d = state_dir() / "run"
    d.mkdir(exist_ok=True)
    return d / f"{name}.pid"


def log_file(name: str) -> Path:
    d = state_dir() / "logs"
    d.mkdir(exist_ok=True)
    return d / f"{name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running; /proc says so.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _ours(pid: int, module: str) -> bool:
    """The pid still belongs to the service we started (pids get reused)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return module.encode() in cmd


def _pid(svc: Service) -> int | None:
    try:
        pid = int(_pid_file(svc.name).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _ours(pid, svc.module) else None


def start(svc: Service, extra_args: tuple[str, ...] = ()) -> int:
    pid = _pid(svc)
    if pid is not None:
        return pid
    with log_file(svc.name).open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", svc.module, *extra_args], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _pid_file(svc.name).write_text(str(proc.pid))
    return proc.pid


def stop(svc: Service, timeout_s: float = 20.0) -> bool:
    pid = _pid(svc)
    if pid is None:
        _pid_file(svc.name).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _pid_file(svc.name).unlink(missing_ok=True)
    return True


def status(topo: Topology, svc: Service) -> ServiceStatus:
    pid = _pid(svc)
    port = topo.services[svc.port_key].port
    return ServiceStatus(svc.name, pid, pid is not None, port,
                         pid is not None and port_open(topo.bind_host, port), log_file(svc.name))


def by_name(name: str) -> Service:
    for svc in SERVICES:
        if svc.name == name:
            return svc
    raise KeyError(f"unknown service {name!r} (known: {', '.join(s.name for s in SERVICES)})")
