"""Driver (project venv) and executors (Spark image) exchange pickles: their pins must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_image_pins_equal_project_pins():
    project = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    image = _pins((ROOT / "infra/docker/spark/requirements.txt").read_text().splitlines())
    assert image, "no pins found in the Spark image requirements"
    mismatched = {k: (v, project.get(k)) for k, v in image.items() if project.get(k) != v}
    assert not mismatched, f"image pin != pyproject pin: {mismatched}"
