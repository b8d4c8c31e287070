"""Clean shutdown for long-running components: SIGTERM/SIGINT set a flag the main loop polls."""

from __future__ import annotations

import signal


class StopFlag:
    """Truthy once SIGTERM or SIGINT arrived; the loop ends its step and flushes, then exits."""

    def __init__(self) -> None:
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self.stopping = True

    def __bool__(self) -> bool:
        return self.stopping

    def __call__(self) -> bool:
        return self.stopping
