"""Labels and their InfluxDB/RabbitMQ forms use the schema's names."""

from __future__ import annotations

import json

import pytest
from diag_traces import T0

from diagnoser.labels import Diagnosis, Evidence, RcaLabel, WindowSpan, no_action
from monitor.schema import DIAGNOSIS


def test_codes_tags_pools_and_paper_names():
    assert [int(lb) for lb in RcaLabel] == [0, 1, 2, 3, 4]
    assert {lb.tag for lb in RcaLabel} == {"none", "up_cl", "up_cc", "down_cl", "down_cc"}
    assert all(RcaLabel.from_tag(lb.tag) is lb for lb in RcaLabel)
    assert RcaLabel.UP_PROCESSING.paper_name == "R_up^CL"
    assert RcaLabel.DOWN_QUEUE.paper_name == "R_down^CC"
    assert RcaLabel.UP_QUEUE.pool == "queue" and RcaLabel.DOWN_PROCESSING.pool == "processing"
    assert RcaLabel.NO_ACTION.pool is None and RcaLabel.NO_ACTION.direction == 0
    with pytest.raises(ValueError, match="unknown label"):
        RcaLabel.from_tag("up")


def _diag() -> Diagnosis:
    ev = (Evidence("node.cpu", ">=", 85.0, 93.5, True, "mean", "max", "worker-1", "worker-1"),
          Evidence("node.memory", ">=", 75.0, 60.0, False, "mean", "max", "worker-1", "worker-1"))
    return Diagnosis(RcaLabel.UP_PROCESSING, "processing_behind", "improved", T0 + 0.5,
                     WindowSpan(T0 - 60, T0), pool="processing", nodes=("worker-1",),
                     evidence=ev, pending_since=T0 - 30, firing_since=T0, active=1)


def test_to_point_uses_the_rca_measurement():
    p = _diag().to_point()
    assert p["measurement"] == DIAGNOSIS.name
    assert set(p["tags"]) == set(DIAGNOSIS.tags)
    assert set(p["fields"]) <= set(DIAGNOSIS.fields)
    assert p["tags"] == {"label": "up_cl", "pool": "processing", "node": "worker-1",
                         "rule": "processing_behind", "mode": "improved"}
    assert p["fields"] == {"code": 1, "observed": 93.5, "threshold": 85.0, "window_s": 60.0}
    assert p["time"] == int(T0 * 10**9) + 500_000_000


def test_no_action_point_omits_empty_tags():
    p = no_action("paper", T0, WindowSpan(T0 - 60, T0)).to_point()
    assert p["tags"] == {"label": "none", "rule": "none", "mode": "paper"}
    assert p["fields"] == {"code": 0, "window_s": 60.0}


def test_message_is_json_with_all_evidence():
    msg = json.loads(json.dumps(_diag().to_message()))
    assert msg["label"] == "up_cl" and msg["paper_label"] == "R_up^CL" and msg["code"] == 1
    assert msg["window"] == {"start": T0 - 60, "end": T0, "seconds": 60}
    assert [e["metric"] for e in msg["evidence"]] == ["node.cpu", "node.memory"]
    assert "worker-1" in _diag().evidence[0].describe()


def test_diagnosis_refuses_inconsistent_pool_and_mode():
    span = WindowSpan(T0, T0)
    with pytest.raises(ValueError, match="pool: label up_cc acts on 'queue'"):
        Diagnosis(RcaLabel.UP_QUEUE, "r", "improved", T0, span, pool="processing")
    with pytest.raises(ValueError, match="mode: must be one of"):
        Diagnosis(RcaLabel.NO_ACTION, "r", "fancy", T0, span)
