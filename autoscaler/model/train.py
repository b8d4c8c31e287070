"""Train, evaluate and ship the resource model (the paper's "Calculate R_tot^req", Fig. 7).

**One depth-limited decision tree per pool**, each predicting that pool's required node count.
Not one tree over the combined (channels, workers) target, because the two counts have
different drivers (channels: publish rate and broker CPU; workers: stream lag, batch duration,
worker CPU) and different capacities: a combined target multiplies the classes (2 x 3 = 6
here), splits the data thinner per class, and makes each rule path explain two decisions at
once; the orchestrator acts per pool anyway (Alg. 3 wakes a channel *or* a worker).

**Evaluation is on held-out runs**: GroupKFold over run ids, so every prediction scored was made
by a tree that never saw any window of that run (neighbouring windows share 50 of their 60 s:
a row-level split would score memory, not generalisation). Next to the model, the same held-out
rows are scored for three baselines that use no capacity knowledge:

* ``threshold_alg2``: Alg. 2 as published (``diagnoser.paper.alg2_label``: pool mean of the
  latest CPU and memory against 85/75 and 20/30 %), then one node up or down;
* ``threshold_cpu``: CPU only, hottest node's window mean >= 85 % up, <= 30 % down (what a tree
  that only re-learnt the thresholds would do);
* ``hpa_ratio``: Kubernetes HPA, ceil(active x mean CPU / 80 %) with its 10 % tolerance.

The artifact is ``model-v<N>.joblib`` (the trees and the card), the card also as
``model-v<N>.json``, and ``latest.json`` points at the newest; :func:`load_model` /
:class:`ModelHandle` serve it and pick up a new version without a restart.

CLI::

    python -m autoscaler.model.train --synthetic [--runs 96 --seed 7]     # the shipped model
    python -m autoscaler.model.train --points history.jsonl [--offered offered.jsonl]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold
from sklearn.tree import DecisionTreeClassifier

from autoscaler.features import FEATURE_NAMES, FeatureVector, as_row
from autoscaler.model.capacity import Capacity, RequiredCounts, load_capacity
from autoscaler.model.dataset import (
    DEFAULT_LABELS,
    EVERY_S,
    WINDOW_S,
    Dataset,
    History,
    LabelConfig,
    rows_from_history,
    rows_from_points,
    split_runs,
)
from autoscaler.model.simulate import (
    DEFAULT_POOLS,
    SHAPES,
    Schedule,
    SimConfig,
    SimResult,
    following_schedule,
    from_scenario,
    perturb,
    random_schedule,
    shaped,
    simulate,
)
from diagnoser.paper import POOL_ID, alg2_label
from infra.topology import SCALABLE_POOLS, PoolPolicy, Topology
from sensors_sim.models.base import mix_seed
from sensors_sim.scenario import load_scenario, shipped_scenarios

ARTIFACTS = Path(__file__).with_name("artifacts")
POINTER = "latest.json"
ARTIFACT_FORMAT = 1
PAPER_FIG7 = {"precision": 0.874, "recall": 0.913, "f1": 0.912, "accuracy": 0.927}
BASELINES = ("threshold_alg2", "threshold_cpu", "hpa_ratio")
SYNTHETIC_EXCLUDE = ("queue_messages_last", "tod_sin", "tod_cos")
UNIT = {"queue": "channel", "processing": "worker"}


class ModelError(RuntimeError):
    """An artifact or pointer cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TrainParams:
    max_depth: int = 4
    min_samples_leaf: int = 25
    class_weight: str | None = None     # None: optimise accuracy, as Fig. 7 reports it
    folds: int = 5
    seed: int = 0
    # Computed and logged, but not fed to the trees: a stream queue's message count is its
    # retention (it keeps delivered messages), so it says how old the stream is, not how
    # loaded; a tree finds spurious splits on it. Synthetic training also drops the time of
    # day (SYNTHETIC_EXCLUDE): the simulator's diurnal factor is invented, real history is not.
    exclude: tuple[str, ...] = ("queue_messages_last",)

    def __post_init__(self) -> None:
        unknown = [n for n in self.exclude if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"params.exclude: unknown features {unknown}")
        if not 1 <= self.max_depth <= 8:
            raise ValueError(f"params.max_depth: must be within 1..8 (an explainable tree), got "
                             f"{self.max_depth!r}")
        if self.min_samples_leaf < 1:
            raise ValueError(f"params.min_samples_leaf: must be >= 1, got "
                             f"{self.min_samples_leaf!r}")
        if self.folds < 2:
            raise ValueError(f"params.folds: must be >= 2, got {self.folds!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"params.class_weight: must be null or 'balanced', got "
                             f"{self.class_weight!r}")

    def features(self, names: Sequence[str] = FEATURE_NAMES) -> tuple[str, ...]:
        return tuple(n for n in names if n not in self.exclude)

    def tree(self) -> DecisionTreeClassifier:
        return DecisionTreeClassifier(max_depth=self.max_depth,
                                      min_samples_leaf=self.min_samples_leaf,
                                      class_weight=self.class_weight, random_state=self.seed)


DEFAULT_PARAMS = TrainParams()
SYNTHETIC_PARAMS = TrainParams(exclude=SYNTHETIC_EXCLUDE)


# ---------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class ResourceModel:
    """The fitted trees, one per pool, and the card that describes them."""

    version: int
    trees: Mapping[str, DecisionTreeClassifier]
    feature_names: tuple[str, ...]
    card: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def row(self, features: FeatureVector | Mapping[str, float] | Sequence[float]) -> np.ndarray:
        return np.asarray([as_row(features, self.feature_names)], dtype=float)

    def predict(self, features: FeatureVector | Mapping[str, float] | Sequence[float]
                ) -> RequiredCounts:
        x = self.row(features)
        return RequiredCounts(**{p: int(self.trees[p].predict(x)[0]) for p in SCALABLE_POOLS})

    def predict_many(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {p: self.trees[p].predict(X).astype(int) for p in SCALABLE_POOLS}


def fit(dataset: Dataset, params: TrainParams = DEFAULT_PARAMS, version: int = 0,
        card: Mapping[str, Any] | None = None) -> ResourceModel:
    if len(dataset) == 0:
        raise ValueError("dataset: no rows to train on")
    names = params.features(dataset.feature_names)
    X = dataset.X(names)
    trees = {p: params.tree().fit(X, dataset.y(p)) for p in SCALABLE_POOLS}
    return ResourceModel(version, trees, names, card or {})


# ---------------------------------------------------------------------------------------------
# baselines and metrics


def baseline_predictions(dataset: Dataset, pools: Mapping[str, PoolPolicy]
                         ) -> dict[str, dict[str, np.ndarray]]:
    """baseline name -> pool -> predicted count, from the same feature rows the model sees."""
    out: dict[str, dict[str, list[int]]] = {b: {p: [] for p in SCALABLE_POOLS} for b in BASELINES}
    for row in dataset.rows:
        f = row.features
        for pool in SCALABLE_POOLS:
            lo, hi = pools[pool].min_active, pools[pool].max_active
            active = round(f[f"active_{pool}"])

            def clip(n: int, lo: int = lo, hi: int = hi) -> int:
                return min(hi, max(lo, n))

            label = alg2_label(POOL_ID[pool], f[f"{pool}_cpu_mean_last"],
                               f[f"{pool}_mem_mean_last"])
            out["threshold_alg2"][pool].append(clip(active + label.direction))
            hot = f[f"{pool}_cpu_max_mean"]
            out["threshold_cpu"][pool].append(
                clip(active + (1 if hot >= 85 else -1 if hot <= 30 else 0)))
            ratio = f[f"{pool}_cpu_mean_mean"] / 80.0
            desired = active if abs(ratio - 1) <= 0.1 else math.ceil(active * ratio)
            out["hpa_ratio"][pool].append(clip(desired))
    return {b: {p: np.array(v, dtype=int) for p, v in d.items()} for b, d in out.items()}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]
                           ) -> dict[str, Any]:
    labels = list(classes)
    out: dict[str, Any] = {"rows": len(y_true),
                           "accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "weighted"):
        p, r, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                      average=avg, zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = (
            float(p), float(r), float(f1))
    # The errors are not symmetric: too few nodes loses readings, too many wastes node-seconds.
    out["under_provisioned"] = float(np.mean(y_pred < y_true)) if len(y_true) else 0.0
    out["over_provisioned"] = float(np.mean(y_pred > y_true)) if len(y_true) else 0.0
    out["classes"] = labels
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def evaluate(dataset: Dataset, params: TrainParams, pools: Mapping[str, PoolPolicy]
             ) -> dict[str, Any]:
    """Out-of-fold predictions of GroupKFold over runs, scored with the baselines'."""
    groups = dataset.groups()
    n_runs = len(set(groups.tolist()))
    if n_runs < 2:
        raise ValueError(f"dataset: {n_runs} run(s); held-out evaluation needs at least 2")
    folds = min(params.folds, n_runs)
    X = dataset.X(params.features(dataset.feature_names))
    y = {p: dataset.y(p) for p in SCALABLE_POOLS}
    oof = {p: np.zeros(len(dataset), dtype=int) for p in SCALABLE_POOLS}
    for train_idx, test_idx in GroupKFold(n_splits=folds).split(X, groups=groups):
        for pool in SCALABLE_POOLS:
            tree = params.tree().fit(X[train_idx], y[pool][train_idx])
            oof[pool][test_idx] = tree.predict(X[test_idx])
    classes = {p: list(range(pools[p].min_active, pools[p].max_active + 1))
               for p in SCALABLE_POOLS}

    def score(pred: Mapping[str, np.ndarray]) -> dict[str, Any]:
        res: dict[str, Any] = {p: classification_metrics(y[p], pred[p], classes[p])
                               for p in SCALABLE_POOLS}
        both = np.logical_and(*(pred[p] == y[p] for p in SCALABLE_POOLS))
        res["both_correct"] = round(float(np.mean(both)), 4)
        return res

    return {
        "protocol": f"GroupKFold({folds}) over run ids, out-of-fold predictions",
        "runs": n_runs,
        "rows": len(dataset),
        "model": score(oof),
        "baselines": {b: score(pred)
                      for b, pred in baseline_predictions(dataset, pools).items()},
    }


# ---------------------------------------------------------------------------------------------
# datasets: simulated and real


def synthetic_runs(n_runs: int, seed: int, capacity: Capacity, *,
                   pools: Mapping[str, PoolPolicy] = DEFAULT_POOLS,
                   duration_s: float = 600.0, config: SimConfig | None = None,
                   peak_range: tuple[float, float] = (250.0, 9000.0)) -> list[SimResult]:
    """Seeded runs covering the load space: the shipped sensors_sim scenarios rescaled, and
    synthetic shapes, with peaks log-uniform over ``peak_range`` (from one worker's share to
    beyond two channels), noise, a mild diurnal factor, and schedules that are random, fixed or
    a late follower of the load."""
    if n_runs < 1:
        raise ValueError(f"runs: must be >= 1, got {n_runs}")
    scenarios = [load_scenario(name) for name in shipped_scenarios()]
    kinds = ("scenario", *SHAPES)
    out = []
    for i in range(n_runs):
        run_seed = mix_seed(seed, i)
        rng = random.Random(run_seed)
        peak = math.exp(rng.uniform(*map(math.log, peak_range)))
        kind = kinds[i % len(kinds)]
        if kind == "scenario":
            base = from_scenario(scenarios[(i // len(kinds)) % len(scenarios)])
            wl = base.scaled(peak / max(base.peak, 1e-9))
        else:
            wl = shaped(kind, duration_s=duration_s, base=peak * rng.uniform(0.05, 0.6),
                        peak=peak, seed=run_seed)
        # Runs spread over a year and all hours of the day (UTC epoch seconds).
        start = float(round(1_735_689_600 + rng.uniform(0, 365 * 86_400)))
        wl = perturb(wl, seed=run_seed, noise=rng.uniform(0.02, 0.08), start=start,
                     diurnal=0.15)
        pick = rng.random()
        if pick < 0.4:
            sched = random_schedule(wl.duration_s, seed=run_seed, pools=pools)
        elif pick < 0.8:
            sched = following_schedule(wl, capacity, seed=run_seed, pools=pools)
        else:
            sched = Schedule.fixed(rng.randint(pools["queue"].min_active,
                                               pools["queue"].max_active),
                                   rng.randint(pools["processing"].min_active,
                                               pools["processing"].max_active))
        # Some runs start behind (after a restart or an outage): catch-up must be sized too.
        lag0 = rng.uniform(0, 150_000) if rng.random() < 0.2 else 0.0
        out.append(simulate(wl, sched, capacity, seed=run_seed, start=start, config=config,
                            initial_lag=lag0, initial_messages=rng.uniform(0, 5e6),
                            run_id=f"sim-{seed}-{i:03d}-{wl.name}"))
    return out


def dataset_from_sims(sims: Iterable[SimResult], capacity: Capacity, *,
                      pools: Mapping[str, PoolPolicy] = DEFAULT_POOLS,
                      labels: LabelConfig = DEFAULT_LABELS, window_s: float = WINDOW_S,
                      every_s: float = EVERY_S) -> Dataset:
    rows = []
    for sim in sims:
        history = History.from_points(sim.points)
        rows += rows_from_history(history, sim.trace, run_id=sim.run_id, capacity=capacity,
                                  pools=pools, active_at=sim.active_at, window_s=window_s,
                                  every_s=every_s, labels=labels)
    return Dataset(tuple(rows))


# ---------------------------------------------------------------------------------------------
# the whole pipeline


@dataclass(frozen=True)
class TrainReport:
    model: ResourceModel
    card: Mapping[str, Any]
    artifact: Path | None
    dataset: Dataset


def train_dataset(dataset: Dataset, *, capacity: Capacity,
                  pools: Mapping[str, PoolPolicy] = DEFAULT_POOLS,
                  params: TrainParams = DEFAULT_PARAMS, labels: LabelConfig = DEFAULT_LABELS,
                  source: Mapping[str, Any] | None = None, out_dir: Path | None = ARTIFACTS,
                  window_s: float = WINDOW_S, every_s: float = EVERY_S) -> TrainReport:
    """Evaluate on held-out runs, fit on every run, and (unless ``out_dir`` is None) write the
    next artifact version with its card and move ``latest.json`` to it."""
    began = time.monotonic()
    evaluation = evaluate(dataset, params, pools)
    model = fit(dataset, params)
    span = dataset.time_range()
    importances = {
        p: {n: round(float(v), 4) for n, v in sorted(
            zip(model.feature_names, model.trees[p].feature_importances_, strict=True),
            key=lambda nv: -nv[1]) if v > 0}
        for p in SCALABLE_POOLS}
    card: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "version": None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "one DecisionTreeClassifier per pool; target: required node count",
        "features": list(model.feature_names),
        "features_computed_not_used": list(params.exclude),
        "feature_window_s": window_s,
        "row_every_s": every_s,
        "capacity": capacity.to_dict(),
        "labels": asdict(labels),
        "pools": {p: [pools[p].min_active, pools[p].max_active] for p in SCALABLE_POOLS},
        "data": {
            **dict(source or {}),
            "runs": len(dataset.runs),
            "rows": len(dataset),
            "rejected_points": dataset.rejected_points,
            "range": None if span is None else [_iso(span[0]), _iso(span[1])],
            "class_counts": {p: {str(k): v for k, v in dataset.class_counts(p).items()}
                             for p in SCALABLE_POOLS},
        },
        "hyper_parameters": asdict(params),
        "evaluation": evaluation,
        "paper_fig7": PAPER_FIG7,
        "feature_importances": importances,
        "tree_nodes": {p: int(model.trees[p].tree_.node_count) for p in SCALABLE_POOLS},
        "sklearn": sklearn.__version__,
        "train_seconds": None,
    }
    card["train_seconds"] = round(time.monotonic() - began, 2)
    artifact = None
    if out_dir is not None:
        artifact = write_artifact(model, card, out_dir)
        card = json.loads(artifact.with_suffix(".json").read_text())
        model = ResourceModel(card["version"], model.trees, model.feature_names, card)
    return TrainReport(model, card, artifact, dataset)


def train_synthetic(*, runs: int = 96, seed: int = 7, capacity: Capacity | None = None,
                    topology: Topology | None = None,
                    params: TrainParams = SYNTHETIC_PARAMS,
                    labels: LabelConfig = DEFAULT_LABELS, out_dir: Path | None = ARTIFACTS,
                    config: SimConfig | None = None) -> TrainReport:
    """The shipped default model: simulated runs sized by the capacity file, with the pools'
    bounds and node names of the topology (default: ``infra/topology.yaml``)."""
    if topology is None:
        from infra.topology import load_topology
        topology = load_topology()
    cap = capacity or load_capacity()
    # A pool cannot have more active nodes than it has containers, whatever max_active says.
    pools = {p: replace(topology.pools[p], max_active=min(topology.pools[p].max_active,
                                                          len(topology.pool_nodes(p))))
             for p in SCALABLE_POOLS}
    cfg = config or SimConfig.from_topology(topology)
    sims = synthetic_runs(runs, seed, cap, pools=pools, config=cfg)
    dataset = dataset_from_sims(sims, cap, pools=pools, labels=labels)
    lost = sum(s.lost for s in sims)
    source = {"source": "synthetic", "generator": "autoscaler.model.simulate",
              "runs_requested": runs, "seed": seed, "readings_lost_in_sims": round(lost),
              "workloads": sorted({s.workload for s in sims}),
              "notes": [
                  "labels come from capacity.yaml; while its source is provisional, so is "
                  "this model: retrain after the capacity sweep",
                  "time of day is not fed to the trees: the simulator's diurnal factor is "
                  "invented; models trained from real history (--points) use it",
                  "max_depth 4 / min_samples_leaf 25 were chosen by a small sweep (depth "
                  "4-6, leaf 10/25) scored with the same grouped CV: slightly optimistic",
              ]}
    return train_dataset(dataset, capacity=cap, pools=pools, params=params, labels=labels,
                         source=source, out_dir=out_dir)


def train_from_points(points: Sequence[Mapping[str, Any]], *,
                      offered: Sequence[tuple[float, float]] | None = None,
                      topology: Topology | None = None, capacity: Capacity | None = None,
                      params: TrainParams = DEFAULT_PARAMS, labels: LabelConfig = DEFAULT_LABELS,
                      out_dir: Path | None = ARTIFACTS, gap_s: float = 120.0,
                      group_s: float = 1800.0, window_s: float = WINDOW_S,
                      every_s: float = EVERY_S, time_unit: str = "s",
                      source: Mapping[str, Any] | None = None) -> TrainReport:
    """Train from exported real history: InfluxDB-style points (``{"measurement", "tags",
    "fields", "time"}``, what ``diagnoser.window.build_window`` reads) of the measurements
    ``processing_cluster``, ``queuing_cluster``, ``rabbitmq_queue``, ``stream_lag`` and
    ``spark_stream``.

    ``offered``: (epoch s, readings/s) of the load the DERs offered (scenario timeline or gateway
    counters); without it the channels' publish rate stands in (see ``dataset``). History is cut
    into runs at gaps over ``gap_s`` and every ``group_s`` for grouped evaluation. Active counts
    are the nodes that reported in the last 20 s. Bad points are skipped and counted.
    """
    if topology is None:
        from infra.topology import load_topology
        topology = load_topology()
    cap = capacity or load_capacity()
    pools = {p: topology.pools[p] for p in SCALABLE_POOLS}
    pool_of = {n.name: n.pool for n in topology.nodes}
    rows, rejected = [], 0
    for run_id, run_points in sorted(split_runs(points, gap_s=gap_s, group_s=group_s,
                                                time_unit=time_unit).items()):
        run_rows, bad = rows_from_points(run_points, run_id=run_id, capacity=cap, pools=pools,
                                         offered=offered, pool_of=pool_of, window_s=window_s,
                                         every_s=every_s, labels=labels, time_unit=time_unit,
                                         on_error="skip")
        rows += run_rows
        rejected += bad
    dataset = Dataset(tuple(rows), rejected_points=rejected)
    if len(dataset) == 0:
        raise ValueError(f"points: no labelled rows (need more than {window_s:g} s + the "
                         f"{labels.horizon_s:g} s horizon of history per run)")
    meta = {"source": "points", "points": len(points),
            "offered": "given" if offered is not None else "publish_rate (lower bound)",
            **dict(source or {})}
    return train_dataset(dataset, capacity=cap, pools=pools, params=params, labels=labels,
                         source=meta, out_dir=out_dir, window_s=window_s, every_s=every_s)


# ---------------------------------------------------------------------------------------------
# artifacts


_ARTIFACT_RX = re.compile(r"model-v(\d+)\.joblib")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _atomic_write(path: Path, data: bytes) -> None:
    # Readers (a running orchestrator's refresh) must never see half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)     # mkstemp makes 0600; cards and pointers are for every reader
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def next_version(out_dir: Path) -> int:
    versions = [int(m.group(1)) for p in out_dir.glob("model-v*.joblib")
                if (m := _ARTIFACT_RX.fullmatch(p.name))]
    return max(versions, default=0) + 1


def write_artifact(model: ResourceModel, card: Mapping[str, Any], out_dir: Path) -> Path:
    """``model-v<N>.joblib`` + ``model-v<N>.json``, then ``latest.json`` (last, atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(out_dir)
    card = {**card, "version": version}
    path = out_dir / f"model-v{version}.joblib"
    payload = {"format": ARTIFACT_FORMAT, "version": version, "trees": dict(model.trees),
               "feature_names": list(model.feature_names), "card": card}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_path = Path(tmp) / path.name
        joblib.dump(payload, tmp_path, compress=3)
        os.replace(tmp_path, path)
    card_text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    _atomic_write(path.with_suffix(".json"), card_text.encode())
    pointer = {"version": version, "artifact": path.name, "card": path.with_suffix(".json").name,
               "created": card.get("created")}
    _atomic_write(out_dir / POINTER, (json.dumps(pointer, indent=2) + "\n").encode())
    return path


def read_artifact(path: Path) -> ResourceModel:
    """A model from a joblib artifact. Joblib is pickle: load only the project's own files."""
    try:
        payload = joblib.load(path)
    except FileNotFoundError:
        raise ModelError(f"model artifact {path}: not found") from None
    except Exception as exc:
        raise ModelError(f"model artifact {path}: cannot be read: {exc!r}") from exc
    if not isinstance(payload, Mapping) or payload.get("format") != ARTIFACT_FORMAT:
        raise ModelError(f"model artifact {path}: format must be {ARTIFACT_FORMAT}")
    trees = payload.get("trees") or {}
    for pool in SCALABLE_POOLS:
        if not isinstance(trees.get(pool), DecisionTreeClassifier):
            raise ModelError(f"model artifact {path}: trees.{pool} is missing")
    names = tuple(payload.get("feature_names") or ())
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        # A model trained on features this code no longer computes cannot be fed.
        raise ModelError(f"model artifact {path}: feature_names {unknown} are not computed by "
                         "autoscaler.features")
    return ResourceModel(int(payload["version"]), trees, names, payload.get("card") or {})


def _read_pointer(pointer: Path) -> dict[str, Any]:
    try:
        raw = json.loads(pointer.read_text())
    except FileNotFoundError:
        raise ModelError(f"model pointer {pointer}: not found (train one: python -m "
                         "autoscaler.model.train --synthetic)") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model pointer {pointer}: cannot be read: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("artifact"), str):
        raise ModelError(f"model pointer {pointer}: artifact: required")
    if Path(raw["artifact"]).name != raw["artifact"]:
        raise ModelError(f"model pointer {pointer}: artifact: must be a file name in "
                         f"{pointer.parent}, got {raw['artifact']!r}")
    return raw


class ModelHandle:
    """The model the orchestrator asks, swappable under it.

    Loaded from a pointer (``latest.json``) it follows the pointer: :meth:`refresh` re-reads it
    and, when it names another artifact, loads that and swaps it in (True). A pointer or
    artifact that cannot be read leaves the current model serving (False, ``last_error`` says
    why): a bad retrain must not take the orchestrator down. Loaded from a ``.joblib`` file it
    never changes. This is the one stateful object of the model package, on purpose.
    """

    def __init__(self, model: ResourceModel, pointer: Path | None = None,
                 artifact: str | None = None) -> None:
        self._model = model
        self.pointer = pointer
        self._artifact = artifact
        self.last_error: str | None = None

    @property
    def model(self) -> ResourceModel:
        return self._model

    @property
    def version(self) -> int:
        return self._model.version

    @property
    def card(self) -> Mapping[str, Any]:
        return self._model.card

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._model.feature_names

    def predict(self, features: FeatureVector | Mapping[str, float] | Sequence[float]
                ) -> RequiredCounts:
        return self._model.predict(features)

    def explain(self, features: FeatureVector | Mapping[str, float] | Sequence[float]):
        from autoscaler.model.explain import explain
        return explain(self._model, features)

    def refresh(self) -> bool:
        if self.pointer is None:
            return False
        try:
            raw = _read_pointer(self.pointer)
            if raw["artifact"] == self._artifact:
                self.last_error = None
                return False
            model = read_artifact(self.pointer.parent / raw["artifact"])
        except ModelError as exc:
            self.last_error = str(exc)
            return False
        self._model, self._artifact, self.last_error = model, raw["artifact"], None
        return True


def model_dir() -> Path:
    return Path(os.environ.get("VPP_MODEL_DIR") or ARTIFACTS)


def load_model(path: str | os.PathLike[str] | None = None) -> ModelHandle:
    """``path``: an artifacts directory (its ``latest.json``), a pointer file, or one
    ``.joblib`` artifact; default ``$VPP_MODEL_DIR`` or the shipped ``artifacts/``."""
    p = Path(path) if path is not None else model_dir()
    if p.is_dir():
        p = p / POINTER
    if p.suffix == ".joblib":
        return ModelHandle(read_artifact(p))
    raw = _read_pointer(p)
    return ModelHandle(read_artifact(p.parent / raw["artifact"]), p, raw["artifact"])


# ---------------------------------------------------------------------------------------------
# CLI


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open() as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as exc:
                    raise SystemExit(f"{path}:{i}: not JSON: {exc}") from None
    return out


def summary(card: Mapping[str, Any]) -> str:
    ev = card["evaluation"]
    lines = [f"model v{card.get('version')} ({card['data'].get('source')}): "
             f"{ev['rows']} rows from {ev['runs']} runs, {ev['protocol']}",
             f"capacity: {card['capacity']['source']['kind']}",
             f"{'pool':<11}{'predictor':<16}{'acc':>7}{'prec_w':>8}{'rec_w':>8}{'f1_w':>8}"
             f"{'f1_mac':>8}{'under':>7}"]
    rows = [("model", ev["model"]), *ev["baselines"].items()]
    for pool in SCALABLE_POOLS:
        for name, res in rows:
            m = res[pool]
            lines.append(f"{pool:<11}{name:<16}{m['accuracy']:>7.3f}{m['precision_weighted']:>8.3f}"
                         f"{m['recall_weighted']:>8.3f}{m['f1_weighted']:>8.3f}"
                         f"{m['f1_macro']:>8.3f}{m['under_provisioned']:>7.3f}")
    p = card["paper_fig7"]
    lines.append(f"paper Fig. 7: precision {p['precision']}, recall {p['recall']}, "
                 f"F1 {p['f1']}, accuracy {p['accuracy']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autoscaler.model.train",
                                 description="Train and evaluate the resource model.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true", help="train from simulated runs")
    src.add_argument("--points", type=Path, help="JSONL of InfluxDB-style points (real history)")
    ap.add_argument("--offered", type=Path,
                    help="with --points: JSONL of {time, rate} offered readings/s")
    ap.add_argument("--runs", type=int, default=96, help="simulated runs (default 96)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-depth", type=int, default=TrainParams.max_depth)
    ap.add_argument("--min-samples-leaf", type=int, default=TrainParams.min_samples_leaf)
    ap.add_argument("--folds", type=int, default=TrainParams.folds)
    ap.add_argument("--capacity", type=Path, help="capacity YAML (default: $VPP_CAPACITY or "
                                                  "the shipped file)")
    ap.add_argument("--out", type=Path, default=None,
                    help="artifacts directory (default: $VPP_MODEL_DIR or the shipped one)")
    ap.add_argument("--dry-run", action="store_true", help="evaluate only, write nothing")
    args = ap.parse_args(argv)
    params = TrainParams(max_depth=args.max_depth, min_samples_leaf=args.min_samples_leaf,
                         folds=args.folds, seed=args.seed,
                         exclude=SYNTHETIC_EXCLUDE if args.synthetic
                         else TrainParams.exclude)
    cap = load_capacity(args.capacity)
    out = None if args.dry_run else (args.out or model_dir())
    if args.synthetic:
        report = train_synthetic(runs=args.runs, seed=args.seed, capacity=cap, params=params,
                                 out_dir=out)
    else:
        offered = None
        if args.offered:
            offered = [(float(r["time"]), float(r["rate"])) for r in _read_jsonl(args.offered)]
        report = train_from_points(_read_jsonl(args.points), offered=offered, capacity=cap,
                                   params=params, out_dir=out,
                                   source={"file": str(args.points)})
    print(summary(report.card))
    if report.artifact is not None:
        size = report.artifact.stat().st_size
        print(f"wrote {report.artifact} ({size / 1024:.1f} KiB) and "
              f"{report.artifact.parent / POINTER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
