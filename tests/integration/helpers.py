"""Shared helpers of the integration tests. The live-platform children (streaming job, fleet,
polling) are shared with the benches and live in :mod:`bench.live`."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
