"""Child processes of the demo and the benches: own process group, output in a log file, and
stopped by their own pid only (never by name)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from infra.state import ROOT


class Proc:
    """A child process of the demo with its output in a log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict | None = None) -> None:
        self.name = name
        self.log = log
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("ab"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> None:
        if self.running():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
