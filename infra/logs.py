"""One structured (JSON) log line per event or decision, for every long-running component."""

from __future__ import annotations

import json
import logging
import sys
import time

NAMESPACE = "vpp"


def get(component: str) -> logging.Logger:
    """The logger of a project component (``vpp.<component>``)."""
    return logging.getLogger(f"{NAMESPACE}.{component}")


def setup(component: str, level: int = logging.INFO) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries (pika, py4j) stay quiet
    logging.getLogger(NAMESPACE).setLevel(level)
    return get(component)


def event(log: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    if not log.isEnabledFor(level):
        return
    component = log.name.removeprefix(f"{NAMESPACE}.")
    record = {"ts": round(time.time(), 3), "component": component, "event": name, **fields}
    log.log(level, json.dumps(record, default=str, separators=(",", ":")))
