"""Fig. 7: precision, recall, F1 and accuracy of the shipped resource model, from its model card.

    python -m bench.fig7_model [--results DIR] [--model-dir DIR] [--quick]

The model (``autoscaler/model``) is one decision tree per scalable pool (queue, processing)
predicting the required node count; ``artifacts/latest.json`` names the current card
``model-vN.json``, whose ``evaluation`` holds out-of-fold metrics for the model and for the
baselines it was compared with. Nothing is retrained here: this reads the card.

Headline metrics are the card's support-weighted averages over the node-count classes
(``precision_weighted`` ...), as ``autoscaler.model.train.summary`` prints them; the macro
averages are in the CSV too. Writes into ``results/fig7/``:

- ``fig7.csv``: model, pool, metric, value (model ``decision_tree`` and each baseline; pool
  ``queue``/``processing``, and ``both`` for the share of rows where both pools are right);
- ``fig7_confusion.csv``: model, pool, actual, predicted, count;
- ``fig7.png`` (bars vs the paper), ``fig7_confusion_<pool>.png`` (decision tree);
- ``summary.json`` (see ``bench.report``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import write_csv
from bench.report import default_results, now_iso, write_summary

ROOT = Path(__file__).resolve().parent.parent
# Same default as autoscaler.model.train.model_dir(), without importing scikit-learn.
ARTIFACTS = ROOT / "autoscaler" / "model" / "artifacts"
PAPER = {"precision": 0.874, "recall": 0.913, "f1": 0.912, "accuracy": 0.927}
HEADLINE = {"precision": "precision_weighted", "recall": "recall_weighted",
            "f1": "f1_weighted", "accuracy": "accuracy"}
EXTRA = ("precision_macro", "recall_macro", "f1_macro", "under_provisioned", "over_provisioned")
MODEL = "decision_tree"


def model_dir() -> Path:
    return Path(os.environ.get("VPP_MODEL_DIR") or ARTIFACTS)


def load_card(artifacts: Path) -> tuple[dict[str, Any], Path]:
    """The card ``latest.json`` points to (its ``card``, else the artifact's name as .json)."""
    pointer = json.loads((artifacts / "latest.json").read_text())
    name = pointer.get("card") or Path(pointer["artifact"]).with_suffix(".json").name
    path = artifacts / name
    return json.loads(path.read_text()), path


def predictors(card: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    ev = card["evaluation"]
    return {MODEL: ev["model"], **ev.get("baselines", {})}


def pools(card: Mapping[str, Any]) -> list[str]:
    model = card["evaluation"]["model"]
    return [p for p in card.get("pools", model) if isinstance(model.get(p), Mapping)]


def metric_rows(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, res in predictors(card).items():
        for pool in pools(card):
            m = res.get(pool)
            if not isinstance(m, Mapping):
                continue
            for metric, key in HEADLINE.items():
                if key in m:
                    rows.append({"model": name, "pool": pool, "metric": metric, "value": m[key]})
            for key in EXTRA:
                if key in m:
                    rows.append({"model": name, "pool": pool, "metric": key, "value": m[key]})
        if "both_correct" in res:
            rows.append({"model": name, "pool": "both", "metric": "accuracy",
                         "value": res["both_correct"]})
    return rows


def confusion_rows(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, res in predictors(card).items():
        for pool in pools(card):
            m = res.get(pool) or {}
            classes, matrix = m.get("classes"), m.get("confusion")
            if not classes or not matrix:
                continue
            for actual, row in zip(classes, matrix, strict=True):
                for predicted, count in zip(classes, row, strict=True):
                    rows.append({"model": name, "pool": pool, "actual": actual,
                                 "predicted": predicted, "count": count})
    return rows


def plot_bars(card: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = list(predictors(card))
    pool_names = pools(card)
    metrics = list(HEADLINE)
    fig, axes = plt.subplots(1, len(pool_names), figsize=(5.5 * len(pool_names), 4),
                             sharey=True, squeeze=False)
    width = 0.8 / (len(names) + 1)
    for ax, pool in zip(axes[0], pool_names, strict=True):
        xs = range(len(metrics))
        ax.bar([x - 0.4 + width / 2 for x in xs], [PAPER[m] for m in metrics], width,
               label="paper (one model)", color="0.25")
        for i, name in enumerate(names):
            res = predictors(card)[name].get(pool, {})
            vals = [res.get(HEADLINE[m], 0.0) for m in metrics]
            ax.bar([x - 0.4 + width * (i + 1.5) for x in xs], vals, width, label=name,
                   alpha=1.0 if name == MODEL else 0.55)
        ax.set_xticks(list(xs), metrics)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{pool} pool")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("score (support-weighted)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Fig. 7: resource model v{card.get('version')} vs paper and baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(card: Mapping[str, Any], pool: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    m = card["evaluation"]["model"][pool]
    classes, matrix = m["classes"], m["confusion"]
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 1.8))
    im = ax.imshow(matrix, cmap="Blues")
    top = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > top / 2 else "black")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted nodes")
    ax.set_ylabel("required nodes (label)")
    ax.set_title(f"{pool}: accuracy {m.get('accuracy', float('nan')):.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(card: Mapping[str, Any], card_path: Path) -> tuple[dict[str, Any], str]:
    model = card["evaluation"]["model"]
    pool_names = pools(card)
    ours: dict[str, Any] = {
        m: {p: model[p][k] for p in pool_names if k in model[p]} for m, k in HEADLINE.items()}
    if "both_correct" in model:
        ours["accuracy, both pools right"] = model["both_correct"]
    ours["f1 (macro)"] = {p: model[p]["f1_macro"] for p in pool_names if "f1_macro" in model[p]}
    ours["under-provisioned share"] = {p: model[p]["under_provisioned"] for p in pool_names
                                       if "under_provisioned" in model[p]}
    for name, res in card["evaluation"].get("baselines", {}).items():
        ours[f"accuracy, baseline {name}"] = {p: res[p]["accuracy"] for p in pool_names
                                              if isinstance(res.get(p), Mapping)}
    data = card.get("data", {})
    cap = (card.get("capacity") or {}).get("source", {}).get("kind", "?")
    ev = card["evaluation"]
    shown = card_path.relative_to(ROOT) if card_path.is_relative_to(ROOT) else card_path
    notes = [
        f"Model v{card.get('version')} (`{shown}`), "
        f"one decision tree per pool; trained on {data.get('source', '?')} data "
        f"({ev.get('rows', '?')} rows from {ev.get('runs', '?')} runs); evaluation: "
        f"{ev.get('protocol', '?')}. Capacity behind the labels: {cap}.",
        "Ours are support-weighted averages over the node-count classes, per pool (the paper "
        "reports one model and does not say how it averages; its F1 0.912 is not the harmonic "
        "mean of its precision 0.874 and recall 0.913, which is 0.893).",
    ]
    if cap == "provisional":
        notes.append("Labels from provisional capacity: retrain after the capacity sweep "
                     "before reading these as measured on the platform.")
    if data.get("source") == "synthetic":
        # Measured capacity makes the labels this machine's; the rows are still simulated.
        notes.append("Rows from simulated runs (autoscaler.model.simulate obeying the capacity "
                     "file): this says how well the tree learns the labels; make retrain "
                     "trains on the platform's own history.")
    return ours, " ".join(notes)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fig7_model",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default: $VPP_RESULTS or results/)")
    ap.add_argument("--model-dir", type=Path, default=None,
                    help="artifacts folder with latest.json (default: $VPP_MODEL_DIR or the "
                         "shipped autoscaler/model/artifacts)")
    ap.add_argument("--quick", action="store_true", help="accepted for symmetry; no effect")
    args = ap.parse_args(argv)
    t0, started = time.monotonic(), now_iso()
    card, card_path = load_card(args.model_dir or model_dir())
    out = (args.results or default_results()) / "fig7"
    out.mkdir(parents=True, exist_ok=True)

    write_csv(out / "fig7.csv", metric_rows(card), ("model", "pool", "metric", "value"))
    write_csv(out / "fig7_confusion.csv", confusion_rows(card),
               ("model", "pool", "actual", "predicted", "count"))
    files = ["fig7.csv", "fig7_confusion.csv", "fig7.png"]
    plot_bars(card, out / "fig7.png")
    for pool in pools(card):
        if card["evaluation"]["model"][pool].get("confusion"):
            plot_confusion(card, pool, out / f"fig7_confusion_{pool}.png")
            files.append(f"fig7_confusion_{pool}.png")

    ours, notes = summarise(card, card_path)
    write_summary(out, experiment="fig7", title="Resource model evaluation (Fig. 7)",
                  paper=PAPER, ours=ours, command="python -m bench.fig7_model",
                  quick=args.quick, started=started, duration_s=time.monotonic() - t0,
                  notes=notes, files=files, model_version=card.get("version"))
    for pool in pools(card):
        m = card["evaluation"]["model"][pool]
        print(f"{pool:<11} " + "  ".join(f"{k} {m[v]:.3f}" for k, v in HEADLINE.items()))
    print("paper       " + "  ".join(f"{k} {v:.3f}" for k, v in PAPER.items()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
