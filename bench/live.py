"""Children of the live platform shared by the integration tests and the benches: the streaming
job as spark-submit runs it, a DER fleet, a scratch HDFS folder, polling."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from infra.amqp import amqp_params
from infra.procs import Proc
from infra.state import ROOT
from infra.topology import Topology
from ingest.streams import stream_end
from ingest.topology import TELEMETRY_STREAM
from spark_jobs.session import submit_env
from spark_jobs.submit import command


class Job:
    """The streaming job as spark-submit runs it, in its own process group (to SIGKILL it)."""

    def __init__(self, root: str, starting: dict[str, int], *extra: str) -> None:
        args = ["--root", root, "--starting-offsets", json.dumps(starting), "--trigger-s", "2",
                "--twin-trigger-s", "3", "--max-rows-per-trigger", "1500",
                "--agg-watermark-s", "10", "--window-s", "5", *extra]
        self.proc = subprocess.Popen(command(args), cwd=ROOT, env=submit_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.events: list[dict] = []
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith('{"ts"'):
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))

    def committed(self, query: str) -> int:
        return sum(1 for e in self.events if e.get("event") == "batch_committed"
                   and e.get("query") == query and e.get("valid", 1) > 0)

    def wait_for(self, predicate, timeout: float, what: str, every: float = 0.5):
        """Poll ``predicate`` until truthy (returned), failing at once if the job exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = predicate()
            if got:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"job exited ({self.proc.returncode}) while waiting for "
                                     f"{what}:\n{''.join(self.output[-60:])}")
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}:\n{''.join(self.output[-60:])}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def stop(self, timeout: float = 120) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.finish(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()


def latest_job(topo: Topology, root: str, *extra: str, timeout: float = 180) -> Job:
    """The ``ingest`` query from the end of channel-0's telemetry stream (what is already there
    is not its load), once it has started."""
    start = {"channel-0": stream_end(amqp_params(topo, "channel-0", "admin"), TELEMETRY_STREAM)}
    job = Job(root, start, "--queries", "ingest", *extra)
    try:
        job.wait_for(lambda: any(e.get("event") == "started" for e in job.events), timeout,
                     "the job")
    except BaseException:
        job.stop()
        raise
    return job


class Fleet:
    """``python -m sensors_sim run ...`` in the background, its summary in ``path``."""

    def __init__(self, args: list[str], summary: Path) -> None:
        self.summary = summary
        # The gateway's event log goes to a file next to the summary (a pipe nobody reads
        # until the end could fill up and stall it).
        self.log = summary.with_suffix(".log")
        self.log.write_text("")
        self.child = Proc("fleet", [sys.executable, "-m", "sensors_sim", "run", *args,
                                    "--summary", str(summary), "--no-metrics"], self.log)
        self.proc = self.child.proc

    def events(self, name: str) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"event":"{name}"' in line:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def finish(self, timeout: float = 300) -> dict:
        self.proc.wait(timeout=timeout)
        return json.loads(self.summary.read_text())["total"]

    def stop(self) -> None:
        self.child.stop(signal.SIGINT, timeout=90)


@contextlib.contextmanager
def hdfs_scratch(topo: Topology, prefix: str) -> Iterator[str]:
    """A fresh HDFS folder ``prefix-<random>`` (a path, not a URL), deleted afterwards."""
    from hdfs import InsecureClient

    path = f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        InsecureClient(topo.webhdfs_url, user="root").delete(path, recursive=True)


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
