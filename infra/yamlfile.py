"""Reading a YAML config file with an error that names the file and what it was meant to be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(src: Path, what: str, error: type[Exception]) -> Any:
    """Parsed YAML of ``src``; unreadable or invalid files raise ``error`` naming ``what``."""
    try:
        text = src.read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {src}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {src} is not valid YAML: {exc}") from exc


class FieldErrors:
    """Collects every invalid field of a config file so one run reports them all, each by path."""

    def __init__(self, what: str, error: type[Exception]) -> None:
        self.what = what
        self.error = error
        self.items: list[str] = []

    def add(self, path: str, msg: str) -> None:
        self.items.append(f"{path}: {msg}")

    def raise_if_any(self, source: Path | str) -> None:
        if self.items:
            body = "\n  ".join(self.items)
            raise self.error(f"invalid {self.what} {source}:\n  {body}")
