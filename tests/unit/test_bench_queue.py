"""The queue capacity sweep's pure parts: what counts as sustained, where the capacity is, and
how capacity.yaml is rewritten without losing the other pool's provenance."""

from __future__ import annotations

import pytest

from autoscaler.model.capacity import load_capacity
from bench.capacity_file import CAPACITY_FILE, provenance, update_pool
from bench.queue_capacity import capacity_of, point_sustained, write_queue_capacity


def fleet(offered: float, confirmed: int, seconds: float = 10.0, dropped: int = 0) -> dict:
    return {"offered_per_s": offered, "confirmed": confirmed,
            "confirmed_per_s": confirmed / seconds,
            "confirmed_ratio": confirmed / (offered * seconds), "dropped": dropped}


def row(offered: float, confirmed_per_s: float, ok: bool) -> dict:
    return {"offered_per_s": offered, "confirmed_per_s": confirmed_per_s, "sustained": ok}


def test_sustained_needs_the_fleet_and_the_consumer_to_keep_up():
    assert point_sustained(fleet(1000, 10_000), 9_600)
    assert not point_sustained(fleet(1000, 10_000), 9_400)       # consumer behind
    assert not point_sustained(fleet(1000, 9_000), 9_000)        # broker behind
    assert not point_sustained(fleet(1000, 10_000, dropped=1), 10_000)
    assert not point_sustained(fleet(1000, 0), 0)


def test_capacity_is_the_highest_rate_with_every_lower_one_sustained():
    rows = [row(3000, 2950, True), row(1000, 990, True), row(5000, 4100, False),
            row(4000, 3900, True), row(6000, 5900, True)]   # 6000 after a failure: ignored
    assert capacity_of(rows) == (3900, 5000)
    assert capacity_of([row(1000, 990, True)]) == (990, None)
    assert capacity_of([row(1000, 500, False)]) == (None, 1000)
    assert capacity_of([row(1000, 990, "True"), row(2000, 1000, "False")]) == (990, 2000)


def test_written_capacity_keeps_the_processing_provenance(tmp_path):
    path = tmp_path / "capacity.yaml"
    text = CAPACITY_FILE.read_text()
    path.write_text(update_pool(text, "processing", 1800, 0.5, "make bench-stream", "2026-12-01"))
    assert write_queue_capacity([row(1000, 990, True), row(2000, 1500, False)],
                                "make bench-queue", "2026-12-02", path) is None
    cap = load_capacity(path)
    assert cap.queue.readings_per_s == 990 and cap.processing.readings_per_s == 1800
    assert cap.source.date == "2026-12-02"
    assert provenance(cap.source.note or "") == {
        "processing": "make bench-stream (2026-12-01)", "queue": "make bench-queue (2026-12-02)"}
    assert path.read_text().count("#") == text.count("#")


def test_an_unsaturated_or_failed_sweep_leaves_the_file_alone(tmp_path):
    path = tmp_path / "capacity.yaml"
    path.write_text(CAPACITY_FILE.read_text())
    before = path.read_text()
    assert "lower bound" in write_queue_capacity([row(1000, 990, True)], "x", "d", path)
    assert "not sustained" in write_queue_capacity([row(1000, 10, False)], "x", "d", path)
    assert path.read_text() == before


def test_unknown_pool_or_key_is_named():
    with pytest.raises(ValueError, match="unknown pool 'gpu'"):
        update_pool("", "gpu", 1, None, "x", "d")
    with pytest.raises(ValueError, match=r"queue\.readings_per_s"):
        update_pool("queue:\n  cpus: 1\n", "queue", 1, None, "x", "d")
