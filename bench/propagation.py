"""How far do a few labels go? Label propagation from random labels against labels chosen by "label next".

    .venv/bin/python bench/propagation.py DATA_DIR [--config config/NAME.yaml] [--results results] [--seeds 3]

DATA_DIR is laid out like the shared sets (see bench/quality.py): the bench writes the same one-dataset
config as bench/quality.py and runs quagga's workflow with Snakemake up to the clusters (a finished run is
reused as it is; only missing or outdated stages run), for the latents and the n-D embedding that label
propagation predicts from, as the evaluate stage does. Then, on the labelled items, for each seed:

- both arms start from the same random 0.5 % of the items labelled;
- (a) **random**: more items drawn at random until 1, 2 and 5 % are labelled;
- (b) **label next**: rounds of the report's "label next" list: label the next ``--step`` % of the items
  (the most typical item of each cluster nobody has labelled, then the least certain: lowest probability
  of their predicted label), retrain, repeat, until the same budgets;
- at every budget, quagga's label propagation (``quagga.evaluate.propagation.propagate``: the classifier
  chosen by cross-validation on the labelled items only) predicts the rest, scored against their labels:
  accuracy and balanced accuracy (mean of the per-label recalls), mean over the seeds.

Prints a table, then one JSON line with ``balanced_accuracy_active_1pct``, ``balanced_accuracy_random_1pct``
and ``active_never_worse`` (label next's mean balanced accuracy >= random's at every budget) at the top level.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from benchutil import ROOT
from quality import build_config, layout, run_pipeline
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from quagga.evaluate.labelling import label_next
from quagga.evaluate.propagation import propagate
from quagga.tiles.store import TileStore

BUDGETS = (0.5, 1.0, 2.0, 5.0)  # % of the labelled items
Features = Mapping[str, np.ndarray]


def score(features: Features, truth: np.ndarray, known: np.ndarray, seed: int) -> tuple[dict, np.ndarray]:
    """Propagation from the items ``known`` (a boolean mask): its scores on the rest, and its probabilities."""
    result = propagate(features, np.where(known, truth, None), seed=seed)
    hidden = ~known
    scores = {"accuracy": float(accuracy_score(truth[hidden], result.predicted[hidden])),
              "balanced_accuracy": float(balanced_accuracy_score(truth[hidden], result.predicted[hidden])),
              "classifier": f"{result.classifier} on {result.features}"}
    return scores, result.probability


def _count(percent: float, n: int) -> int:
    return max(2, round(percent / 100 * n))


def run_arms(
    features: Features, truth: np.ndarray, clusters: pd.DataFrame, budgets: tuple[float, ...], step: float, seed: int,
) -> list[dict]:
    """Random and label-next labelling from one shared start, scored at every budget (rows of the table).

    ``clusters``: each item's HDBSCAN cluster and membership (columns cluster, probability), as the report's
    label-next list uses them."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    order = rng.permutation(n)  # the random arm labels items in this order (nested budgets)
    start = _count(budgets[0], n)
    while len(set(truth[order[:start]])) < 2:  # a classifier needs two labels to tell apart
        start += 1
    rows = []
    active = np.zeros(n, dtype=bool)
    active[order[:start]] = True
    for budget in budgets:
        target = max(_count(budget, n), start)
        random = np.zeros(n, dtype=bool)
        random[order[:target]] = True
        random_scores, _ = score(features, truth, random, seed)
        while True:  # label next: add the next batch of the list, retrain, until the budget is reached
            active_scores, probability = score(features, truth, active, seed)
            if active.sum() >= target:
                break
            batch = min(_count(step, n), target - int(active.sum()))
            active[label_next(probability, ~active, batch, clusters["cluster"].to_numpy(),
                              clusters["probability"].to_numpy(float))] = True
        rows.append({"seed": seed, "budget": budget, "n_labelled": target,
                     **{f"random_{k}": v for k, v in random_scores.items()},
                     **{f"active_{k}": v for k, v in active_scores.items()}})
        print(f"  seed {seed}, {budget:g} % ({target} items): random {random_scores['balanced_accuracy']:.4f}, "
              f"label next {active_scores['balanced_accuracy']:.4f} ({active_scores['classifier']})", flush=True)
    return rows


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over the seeds, per budget."""
    metrics = ["random_accuracy", "random_balanced_accuracy", "active_accuracy", "active_balanced_accuracy"]
    table = runs.groupby("budget")[metrics].agg(["mean", "std"])
    table.columns = [f"{a}_{b}" for a, b in table.columns]
    table.insert(0, "n_labelled", runs.groupby("budget")["n_labelled"].first())
    return table.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--config", type=Path, help="dataset settings (default: config/<folder name>.yaml if any)")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="workflow results folder")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seeds", type=int, default=3, help="random starts (each arm shares its start)")
    parser.add_argument("--step", type=float, default=0.25, help="%% of the items labelled per label-next round")
    parser.add_argument("--rerun-triggers", nargs="+", default=["mtime", "params", "input"],
                        help="what makes Snakemake redo a finished stage")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data_dir = args.data_dir.resolve()
    name = data_dir.name
    modality, table_name = layout(data_dir)
    base = args.config or (ROOT / "config" / f"{name}.yaml")
    base = base if base.is_file() else None
    out_dir = args.results / name
    config_path = out_dir / "bench-config.yaml"  # the same config as bench/quality.py: one run serves both
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(build_config(data_dir, name, base, args.results.resolve()), sort_keys=False))
    print(f"{data_dir} ({modality}, {table_name}); settings from {base or 'the defaults'}; config {config_path}")
    run_pipeline(config_path.resolve(), out_dir / "clusters.parquet", args.cores, args.rerun_triggers)

    index = TileStore(out_dir / "tiles").index[["item_id", "label"]].astype({"item_id": str})
    items = index[index["label"].notna()]
    for table in ("latents", "embedding", "clusters"):
        items = items.merge(pd.read_parquet(out_dir / f"{table}.parquet").astype({"item_id": str}), on="item_id")
    if items.empty:
        sys.exit(f"{out_dir}: no labelled item has latents")
    features = {"latents": items.filter(regex=r"^z_\d+$").to_numpy(np.float32),
                "embedding": items.filter(regex=r"^u_\d+$").to_numpy(np.float32)}
    truth = items["label"].astype(str).to_numpy()
    print(f"{len(items)} labelled items, {len(set(truth))} labels, features "
          f"{', '.join(f'{k} ({v.shape[1]}-D)' for k, v in features.items())}; budgets {BUDGETS} %, "
          f"label-next rounds of {args.step:g} %, {args.seeds} seeds")
    started = time.perf_counter()
    runs = pd.DataFrame([row for seed in range(args.seeds)
                         for row in run_arms(features, truth, items[["cluster", "probability"]], BUDGETS, args.step,
                                             seed)])
    table = summarise(runs)
    print(f"\n{name}: balanced accuracy (accuracy) of the propagated labels on the items not labelled, "
          f"mean of {args.seeds} seeds")
    print(f"{'labelled':>10}{'items':>8}{'random':>18}{'label next':>18}")
    for r in table.itertuples():
        print(f"{r.budget:>9g}%{r.n_labelled:>8d}"
              f"{r.random_balanced_accuracy_mean:>10.4f} ({r.random_accuracy_mean:.3f})"
              f"{r.active_balanced_accuracy_mean:>10.4f} ({r.active_accuracy_mean:.3f})")
    at = table.set_index("budget")
    never_worse = bool((at["active_balanced_accuracy_mean"] >= at["random_balanced_accuracy_mean"] - 1e-12).all())
    result = {
        "dataset": name, "n_items": len(items), "n_labels": len(set(truth)), "seeds": args.seeds, "step": args.step,
        "balanced_accuracy_active_1pct": round(float(at.loc[1.0, "active_balanced_accuracy_mean"]), 4),
        "balanced_accuracy_random_1pct": round(float(at.loc[1.0, "random_balanced_accuracy_mean"]), 4),
        "active_never_worse": never_worse,
        "budgets": json.loads(table.round(4).to_json(orient="records")),
        "classifiers": runs["active_classifier"].value_counts().to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\ntarget: balanced accuracy >= 0.97 at 1 % with label next -> "
          f"{'met' if result['balanced_accuracy_active_1pct'] >= 0.97 else 'NOT met'}; label next >= random at every "
          f"budget -> {'met' if never_worse else 'NOT met'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
