"""What a node uses, measured against its own limits, from inside its container.

psutil sees host-wide CPU from inside a container (DESIGN.md), so CPU and memory come from the
container's own cgroup (v1 here; v2 supported): CPU time over wall time and the CPU quota,
working set over the memory limit. Storage I/O is summed over the container's processes.
Containers share the host network, so the interface counters are host-wide too; network bytes
are summed over the node's own TCP sockets instead (``ss -tinp`` shows byte counters only for
sockets owned by processes in this container's PID namespace). The container has
CAP_SYS_PTRACE so the agent can inspect processes of other users (the broker's own uid).

The maths (:func:`utilisation`) and parsing (:func:`parse_ss`) are pure and unit-tested; the
readers are thin.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP = Path(os.environ.get("VPP_CGROUP_ROOT", "/sys/fs/cgroup"))


@dataclass(frozen=True)
class Reading:
    mono_s: float          # monotonic clock, for rates
    wall_ns: int           # the sample's timestamp
    cpu_ns: int            # cumulative CPU time of the cgroup
    cpu_quota: float       # cores the cgroup may use
    mem_bytes: int         # working set: usage minus inactive file cache
    mem_limit: int
    disk_read: int         # cumulative storage bytes of the node's processes
    disk_write: int
    net_rx: int            # cumulative TCP bytes of the node's sockets
    net_tx: int
    processes: int
    disk_used_pct: float


def utilisation(prev: Reading, cur: Reading) -> dict[str, float | int]:
    """The NODE_FIELDS of monitor.schema between two readings (cpu, memory, disk in %)."""
    dt = cur.mono_s - prev.mono_s
    if dt <= 0:
        raise ValueError("readings must be taken at increasing times")
    cpu = 100.0 * (cur.cpu_ns - prev.cpu_ns) / (dt * 1e9 * cur.cpu_quota)

    def rate(a: int, b: int) -> float:
        return max(0.0, (b - a) / dt)

    return {
        "cpu": round(max(0.0, cpu), 2),
        "memory": round(100.0 * cur.mem_bytes / cur.mem_limit, 2) if cur.mem_limit else 0.0,
        "disk": round(cur.disk_used_pct, 2),
        "disk_read_bps": round(rate(prev.disk_read, cur.disk_read), 1),
        "disk_write_bps": round(rate(prev.disk_write, cur.disk_write), 1),
        "net_rx_bps": round(rate(prev.net_rx, cur.net_rx), 1),
        "net_tx_bps": round(rate(prev.net_tx, cur.net_tx), 1),
        "processes": cur.processes,
    }


# -- cgroup files -------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def cpu_ns(root: Path = CGROUP) -> int:
    v1 = _read(root / "cpuacct" / "cpuacct.usage")
    if v1 is not None:
        return int(v1)
    return _kv(_read(root / "cpu.stat")).get("usage_usec", 0) * 1000


def cpu_quota(root: Path = CGROUP) -> float:
    quota = _read(root / "cpu" / "cpu.cfs_quota_us")
    period = _read(root / "cpu" / "cpu.cfs_period_us")
    if quota is not None and period is not None:
        q, p = int(quota), int(period)
        return q / p if q > 0 and p > 0 else float(os.cpu_count() or 1)
    v2 = _read(root / "cpu.max")
    if v2:
        q2, _, p2 = v2.partition(" ")
        if q2 != "max" and p2:
            return int(q2) / int(p2)
    return float(os.cpu_count() or 1)


def memory(root: Path = CGROUP) -> tuple[int, int]:
    """(working set, limit) in bytes. The working set leaves out inactive file cache, as
    docker stats and the kubelet do: that cache is reclaimable, so it is not pressure."""
    host_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    usage = _read(root / "memory" / "memory.usage_in_bytes")
    if usage is not None:
        stat = _kv(_read(root / "memory" / "memory.stat"))
        limit = int(_read(root / "memory" / "memory.limit_in_bytes") or host_total)
        ws = int(usage) - stat.get("total_inactive_file", 0)
        return max(0, ws), min(limit, host_total)
    cur = _read(root / "memory.current")
    stat = _kv(_read(root / "memory.stat"))
    raw_max = _read(root / "memory.max")
    limit = host_total if raw_max in (None, "max") else int(raw_max)
    return max(0, int(cur or 0) - stat.get("inactive_file", 0)), limit


# -- processes and sockets -----------------------------------------------------------------------
def process_io(proc: Path = Path("/proc")) -> tuple[int, int, int]:
    """(read_bytes, write_bytes, process count) over the processes this PID namespace shows."""
    rd = wr = n = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        n += 1
        io = _kv((_read(entry / "io") or "").replace(":", ""))
        rd += io.get("read_bytes", 0)
        wr += io.get("write_bytes", 0)
    return rd, wr, n


_RX = re.compile(r"\bbytes_received:(\d+)")
_TX = re.compile(r"\bbytes_(?:sent|acked):(\d+)")

SocketKey = tuple[str, str]  # (local address:port, peer address:port): unique per connection


def parse_ss(text: str) -> dict[SocketKey, tuple[int, int]]:
    """``ss -tinpH`` output -> {(local, peer): (bytes received, bytes sent)} for sockets with a
    process owner (ss shows owners only for processes of this container's PID namespace)."""
    out: dict[SocketKey, tuple[int, int]] = {}
    record: list[str] = []

    def flush() -> None:
        if not record:
            return
        head = record[0].split()
        joined = " ".join(record)
        if len(head) >= 5 and "users:(" in joined:
            rx = _RX.search(joined)
            tx = _TX.findall(joined)
            out[(head[3], head[4])] = (int(rx.group(1)) if rx else 0,
                                       max((int(x) for x in tx), default=0))
        record.clear()

    for line in text.splitlines():
        if line and not line[0].isspace():
            flush()
        record.append(line.strip())
    flush()
    return out


@dataclass
class SocketBytes:
    """Cumulative TCP bytes of a node: live sockets plus what closed sockets had moved."""

    live: dict[SocketKey, tuple[int, int]] = field(default_factory=dict)
    closed_rx: int = 0
    closed_tx: int = 0

    def update(self, current: dict[SocketKey, tuple[int, int]]) -> tuple[int, int]:
        for key, (rx, tx) in self.live.items():
            if key not in current:
                self.closed_rx += rx
                self.closed_tx += tx
        self.live = current
        return (self.closed_rx + sum(rx for rx, _ in current.values()),
                self.closed_tx + sum(tx for _, tx in current.values()))


def ss_sockets() -> dict[SocketKey, tuple[int, int]]:
    try:
        out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_ss(out)


def disk_used_pct(path: str) -> float:
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    return 100.0 * (total - st.f_bfree * st.f_frsize) / total if total else 0.0


class Sampler:
    """Takes :class:`Reading` s of the current container."""

    def __init__(self, data_path: str = "/", root: Path = CGROUP) -> None:
        self.data_path = data_path if os.path.exists(data_path) else "/"
        self.root = root
        self.sockets = SocketBytes()

    def read(self) -> Reading:
        rd, wr, n = process_io()
        rx, tx = self.sockets.update(ss_sockets())
        ws, limit = memory(self.root)
        return Reading(
            mono_s=time.monotonic(), wall_ns=time.time_ns(), cpu_ns=cpu_ns(self.root),
            cpu_quota=cpu_quota(self.root), mem_bytes=ws, mem_limit=limit, disk_read=rd,
            disk_write=wr, net_rx=rx, net_tx=tx, processes=n,
            disk_used_pct=disk_used_pct(self.data_path))
