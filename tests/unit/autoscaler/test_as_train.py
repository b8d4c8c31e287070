"""Training and evaluation on held-out runs, baselines, artifacts, hot reload, rule paths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from as_support import fixed_capacity

from autoscaler.features import FEATURE_NAMES
from autoscaler.model.capacity import RequiredCounts
from autoscaler.model.explain import explain
from autoscaler.model.train import (
    ARTIFACTS,
    BASELINES,
    SYNTHETIC_PARAMS,
    ModelError,
    TrainParams,
    baseline_predictions,
    dataset_from_sims,
    evaluate,
    fit,
    load_model,
    main,
    read_artifact,
    synthetic_runs,
    train_dataset,
    train_from_points,
)
from diagnoser.window import to_epoch_s
from infra.topology import load_topology

CAP = fixed_capacity()
POOLS = {p: load_topology().pools[p] for p in ("queue", "processing")}

# Stated bars for a model trained on 24 short simulated runs and scored on 12 others.
MIN_ACCURACY = {"queue": 0.90, "processing": 0.80}


@pytest.fixture(scope="module")
def train_set():
    return dataset_from_sims(synthetic_runs(24, 1, CAP, duration_s=480), CAP)


@pytest.fixture(scope="module")
def test_set():
    return dataset_from_sims(synthetic_runs(12, 2, CAP, duration_s=480), CAP)


@pytest.fixture(scope="module")
def model(train_set):
    return fit(train_set, SYNTHETIC_PARAMS)


def _f1_macro(y, pred, classes):
    scores = []
    for c in classes:
        tp = np.sum((pred == c) & (y == c))
        p = tp / max(1, np.sum(pred == c))
        r = tp / max(1, np.sum(y == c))
        scores.append(0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(scores))


def test_held_out_runs_are_predicted_and_the_threshold_baselines_are_beaten(model, train_set,
                                                                           test_set):
    assert not set(test_set.runs) & {r.run_id for r in train_set.rows}
    pred = model.predict_many(test_set.X(model.feature_names))
    base = baseline_predictions(test_set, POOLS)
    for pool in ("queue", "processing"):
        y = test_set.y(pool)
        classes = range(POOLS[pool].min_active, POOLS[pool].max_active + 1)
        acc = float(np.mean(pred[pool] == y))
        f1 = _f1_macro(y, pred[pool], classes)
        assert acc >= MIN_ACCURACY[pool], (pool, acc)
        for name in BASELINES:
            assert acc > float(np.mean(base[name][pool] == y)), (pool, name)
            assert f1 > _f1_macro(y, base[name][pool], classes), (pool, name)


def test_the_model_sizes_from_rates_not_from_cpu_thresholds(model):
    for pool, tree in model.trees.items():
        top = model.feature_names[int(np.argmax(tree.feature_importances_))]
        assert "cpu" not in top and "mem" not in top, (pool, top)
        assert tree.get_depth() <= SYNTHETIC_PARAMS.max_depth


def test_grouped_evaluation_reports_fig7_metrics_and_confusion(train_set):
    ev = evaluate(train_set, TrainParams(folds=3), POOLS)
    assert ev["protocol"].startswith("GroupKFold(3)") and ev["runs"] == 24
    for pool, n in (("queue", 2), ("processing", 3)):
        m = ev["model"][pool]
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                    "precision_weighted", "recall_weighted", "f1_weighted"):
            assert 0 <= m[key] <= 1
        assert np.array(m["confusion"]).shape == (n, n)
        assert np.array(m["confusion"]).sum() == len(train_set)
    assert set(ev["baselines"]) == set(BASELINES)


def test_excluded_features_are_not_fed_to_the_trees(model):
    assert "queue_messages_last" not in model.feature_names
    assert "tod_sin" not in model.feature_names
    with pytest.raises(ValueError, match=r"params\.exclude"):
        TrainParams(exclude=("nope",))
    with pytest.raises(ValueError, match=r"params\.max_depth"):
        TrainParams(max_depth=20)


def test_artifact_round_trip_and_refresh(tmp_path, train_set):
    small = TrainParams(folds=2, max_depth=3)
    rep = train_dataset(train_set, capacity=CAP, pools=POOLS, params=small, out_dir=tmp_path)
    assert rep.artifact == tmp_path / "model-v1.joblib"
    assert rep.artifact.stat().st_size < 1_000_000
    card = json.loads((tmp_path / "model-v1.json").read_text())
    for key in ("version", "created", "features", "capacity", "data", "hyper_parameters",
                "evaluation", "labels"):
        assert key in card
    assert card["version"] == 1 and card["capacity"]["source"]["kind"] == "provisional"
    assert card["data"]["runs"] == 24 and card["data"]["rows"] == len(train_set)
    pointer = json.loads((tmp_path / "latest.json").read_text())
    assert pointer["artifact"] == "model-v1.joblib"

    handle = load_model(tmp_path)
    row = train_set.rows[5].features
    assert handle.version == 1 and handle.predict(row) == rep.model.predict(row)
    assert isinstance(handle.predict(row.as_dict()), RequiredCounts)
    assert handle.refresh() is False

    train_dataset(train_set, capacity=CAP, pools=POOLS, params=small, out_dir=tmp_path)
    assert handle.refresh() is True and handle.version == 2
    assert handle.refresh() is False

    # a broken pointer keeps the current model serving
    (tmp_path / "latest.json").write_text("{not json")
    assert handle.refresh() is False and "cannot be read" in handle.last_error
    assert handle.version == 2 and handle.predict(row)
    # a pointer to a missing artifact too
    (tmp_path / "latest.json").write_text(json.dumps({"artifact": "model-v9.joblib"}))
    assert handle.refresh() is False and "not found" in handle.last_error

    fixed = load_model(tmp_path / "model-v1.joblib")
    assert fixed.version == 1 and fixed.refresh() is False


def test_unreadable_artifacts_name_the_file(tmp_path):
    bad = tmp_path / "model-v1.joblib"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"model-v1\.joblib"):
        read_artifact(bad)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "empty")
    (tmp_path / "latest.json").write_text(json.dumps({"artifact": "../x.joblib"}))
    with pytest.raises(ModelError, match="must be a file name"):
        load_model(tmp_path)


def test_explain_gives_the_rule_path_of_the_prediction(model, test_set):
    for row in test_set.rows[::40]:
        ex = explain(model, row.features)
        pred = model.predict(row.features)
        assert ex.paths["queue"].count == pred.queue
        assert ex.paths["processing"].count == pred.processing
        assert ex.text.startswith("queue: ") and "; processing: " in ex.text
        assert f"-> {pred.queue} channel" in ex.text
        assert f"-> {pred.processing} worker" in ex.text
        for path in ex.paths.values():
            assert path.conditions and all(c.feature in FEATURE_NAMES for c in path.conditions)
            assert all(c.feature in path.text for c in path.conditions)
            # the conditions hold for this vector
            for c in path.conditions:
                assert (c.value <= c.threshold) == (c.op == "<=")
            # one bound per feature and direction
            assert len({(c.feature, c.op) for c in path.conditions}) == len(path.conditions)


def test_train_from_points_on_exported_history(tmp_path):
    sims = synthetic_runs(4, 5, CAP, duration_s=480)
    points = [p for s in sims for p in s.points]     # one export, four runs apart in time
    # as exported from InfluxDB: nanosecond epochs
    exported = [{**p, "time": int(p["time"] * 1e9)} for p in points]
    rep = train_from_points(exported, params=TrainParams(folds=2), out_dir=tmp_path,
                            time_unit="ns")
    assert rep.card["data"]["source"] == "points"
    assert rep.card["data"]["runs"] == 4
    assert rep.card["data"]["offered"].startswith("publish_rate")
    first = min(to_epoch_s(p["time"], "ns") for p in exported)
    assert rep.dataset.time_range()[0] >= first + 60
    assert load_model(tmp_path).version == 1
    with pytest.raises(ValueError, match="no labelled rows"):
        train_from_points(exported[:50], out_dir=None, time_unit="ns")


def test_cli_synthetic(tmp_path, capsys):
    assert main(["--synthetic", "--runs", "6", "--seed", "3", "--folds", "2",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "threshold_alg2" in out and "paper Fig. 7" in out
    assert (tmp_path / "model-v1.joblib").exists() and (tmp_path / "latest.json").exists()


def test_shipped_model_loads_and_predicts(tmp_path, test_set, monkeypatch):
    handle = load_model()
    assert handle.version >= 1
    artifact = ARTIFACTS / json.loads((ARTIFACTS / "latest.json").read_text())["artifact"]
    assert artifact.stat().st_size < 1_000_000
    card = handle.card
    assert card["capacity"]["source"]["kind"] in ("provisional", "measured")
    assert card["evaluation"]["protocol"].startswith("GroupKFold")
    pred = handle.predict(test_set.rows[0].features)
    assert 1 <= pred.queue <= 2 and 1 <= pred.processing <= 3
    # VPP_MODEL_DIR points the default elsewhere
    shutil.copytree(ARTIFACTS, tmp_path / "models")
    monkeypatch.setenv("VPP_MODEL_DIR", str(tmp_path / "models"))
    assert load_model().pointer == tmp_path / "models" / "latest.json"
