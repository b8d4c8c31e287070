"""Capacity loader: the shipped file, validation errors that name the field, the pool maths."""

from __future__ import annotations

import copy
import csv

import pytest
import yaml

from autoscaler.model.capacity import (
    DEFAULT_PATH,
    CapacityError,
    RequiredCounts,
    load_capacity,
    parse_capacity,
)
from bench.common import read_csv
from bench.queue_capacity import capacity_of
from bench.stream_capacity import scaling_efficiency
from infra.state import ROOT


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text())


def test_shipped_file_holds_the_last_sweeps():
    # The processing numbers are the measured ones of results/stream (make bench-stream): a
    # change to one without the other (a new sweep not written, or a hand edit) fails here.
    cap = load_capacity()
    assert cap.source.kind == "measured" and "make bench-stream" in (cap.source.note or "")
    rows = {int(r["workers"]): float(r["max_sustained_per_s"]) for r in csv.DictReader(
        (ROOT / "results" / "stream" / "capacity.csv").open())}
    assert cap.processing.readings_per_s == round(rows[1])
    assert cap.processing.scaling_efficiency == pytest.approx(
        scaling_efficiency(rows), abs=0.0051)  # the file keeps 2 decimals
    # The queue's is the one of results/queue (make bench-queue), the same way.
    queue, failed = capacity_of(read_csv(ROOT / "results" / "queue" / "capacity.csv"))
    assert queue is not None and failed is not None   # saturated: not a lower bound
    assert cap.queue.readings_per_s == round(queue) and cap.queue.cpus == 0.5
    assert "make bench-queue" in (cap.source.note or "")


def test_pool_totals_and_sizing(raw):
    raw["processing"].update(readings_per_s=700, scaling_efficiency=0.9)
    p = parse_capacity(raw).processing
    assert p.total(0) == 0 and p.total(1) == 700
    assert p.total(2) == pytest.approx(700 * 1.9) and p.total(3) == pytest.approx(700 * 2.8)
    assert p.nodes_for(700, 1, 3) == 1
    assert p.nodes_for(701, 1, 3) == 2
    assert p.nodes_for(10_000, 1, 3) == 3          # beyond the pool: its maximum
    assert p.nodes_for(0, 2, 3) == 2               # never below min
    assert p.utilisation(350, 1) == pytest.approx(0.5)
    assert p.cpu_pct(0) == p.cpu_idle_pct and p.cpu_pct(5) == p.cpu_busy_pct


def test_measured_source_needs_command_and_date(raw):
    raw["source"] = {"kind": "measured"}
    with pytest.raises(CapacityError) as e:
        parse_capacity(raw)
    assert "source.command: required when kind is measured" in str(e.value)
    assert "source.date: required when kind is measured" in str(e.value)
    raw["source"] = {"kind": "measured", "command": "make bench-capacity",
                     "date": "2026-01-31"}
    cap = parse_capacity(raw)
    assert cap.source.describe() == "measured 2026-01-31 by `make bench-capacity`"


@pytest.mark.parametrize(("path", "value", "message"), [
    (("source", "kind"), "guessed", "source.kind: must be one of provisional, measured"),
    (("source", "date"), "yesterday", "source.date: expected an ISO date"),
    (("processing", "scaling_efficiency"), 1.5, "processing.scaling_efficiency: must be within"),
    (("queue", "readings_per_s"), 0, "queue.readings_per_s: must be > 0"),
    (("queue", "readings_per_s"), True, "queue.readings_per_s: expected a finite number"),
    (("queue", "cpu_busy_pct"), 140, "queue.cpu_busy_pct: must be within 0..100"),
    (("processing", "cpu_busy_pct"), 5, "processing.cpu_busy_pct: 5 must be above"),
    (("processing", "batch_overhead_ms"), -1, "processing.batch_overhead_ms: must be >= 0"),
    (("queue", "publish_share"), 1.0, "queue.publish_share: must be within (0, 1)"),
    (("queue", "colour"), "red", "queue.colour: unknown field"),
    (("version",), 2, "version: must be 1"),
])
def test_errors_name_the_field(raw, path, value, message):
    bad = copy.deepcopy(raw)
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(CapacityError, match="invalid capacity file") as e:
        parse_capacity(bad)
    assert message in str(e.value)


def test_missing_pool_and_field_are_named(raw):
    del raw["processing"]
    del raw["queue"]["cpus"]
    with pytest.raises(CapacityError) as e:
        parse_capacity(raw)
    assert "processing: required pool capacity is missing" in str(e.value)
    assert "queue.cpus: required field is missing" in str(e.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(CapacityError, match="cannot read capacity file"):
        load_capacity(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("queue: [1, 2\n")
    with pytest.raises(CapacityError, match="not valid YAML"):
        load_capacity(bad)


def test_env_override(tmp_path, monkeypatch, raw):
    raw["queue"]["readings_per_s"] = 1234
    path = tmp_path / "cap.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("VPP_CAPACITY", str(path))
    assert load_capacity().queue.readings_per_s == 1234


def test_required_counts_validate():
    rc = RequiredCounts(queue=2, processing=3)
    assert rc.of("queue") == 2 and rc.as_dict() == {"queue": 2, "processing": 3}
    with pytest.raises(ValueError, match=r"required\.processing"):
        RequiredCounts(queue=1, processing=-1)
    with pytest.raises(KeyError):
        rc.of("core")
