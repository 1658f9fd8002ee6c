"""One dataset's evaluation: what ``metrics.json`` and ``predicted_labels.csv`` hold (see the package's note).

The package itself imports nothing heavy, so the report can use its light modules (labelling, corrections)
without scikit-learn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from quagga.evaluate.agreement import (
    best_cluster_per_label,
    bootstrap_intervals,
    contingency_table,
    label_agreement,
    likely_mislabelled,
)
from quagga.evaluate.corrections import apply_corrections, read_corrections
from quagga.evaluate.few_labels import few_label_curve, pixel_pca, stratified_rows
from quagga.evaluate.propagation import start_propagation
from quagga.params import EvaluateParams, to_dict
from quagga.pool import shared_workers, submit_tasks
from quagga.tables import atomic_path
from quagga.tiles.store import TileStore

log = logging.getLogger(__name__)
MISLABELLED_MAX = 500  # longer lists are cut in metrics.json (the count stays exact)


PREDICTED_COLUMNS = ["item_id", "label", "predicted_label", "probability", "labelled"]


def evaluate_dataset(
    tiles_dir: Path, clusters_path: Path, latents_path: Path | None, params: EvaluateParams,
    corrections_path: Path | None = None, predicted_path: Path | None = None, embedding_path: Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds for one dataset (plain JSON values).

    ``corrections_path``: a CSV of item_id,label whose labels replace the annotations' everywhere below.
    ``predicted_path``: where to write every item's predicted label (``PREDICTED_COLUMNS``; no rows when no
    two labels or no latents are there to predict from), predicted from the latents and, if given, the
    n-D embedding at ``embedding_path`` (label propagation picks the better by cross-validation).
    ``workers``: processes for the bootstrap, the few-label curve and the propagation's cross-validation
    (the same results for any number).
    """
    with shared_workers(workers):  # the bootstrap, curve and propagation rounds share one pool
        return _evaluate(tiles_dir, clusters_path, latents_path, params, corrections_path, predicted_path,
                         embedding_path, workers)


def _evaluate(
    tiles_dir: Path, clusters_path: Path, latents_path: Path | None, params: EvaluateParams,
    corrections_path: Path | None, predicted_path: Path | None, embedding_path: Path | None, workers: int,
) -> dict[str, Any]:
    store = TileStore(tiles_dir)
    items = store.index[["item_id", "label"]].astype({"item_id": str, "label": "string"})
    clusters = pd.read_parquet(clusters_path)
    corrections = None
    if corrections_path is not None:
        corrected, corrections = apply_corrections(items, read_corrections(corrections_path))
        before = items.merge(clusters, on="item_id", how="inner")
        corrections["before"] = label_agreement(before["label"], before["cluster"])
        items = items.assign(label=corrected.to_numpy())
        log.info("%d labels corrected from %s (%d rows, %d problems)", corrections["n_changed"], corrections_path,
                 corrections["n_rows"], corrections["n_problems"])
    table = items.merge(clusters, on="item_id", how="inner")
    labelled = table[table["label"].notna()]
    # the pool's slowest tasks first (the propagation's cross-validation, the pixels' PCA): the workers are
    # busy with them while the rest queues behind; every task is the arithmetic it is alone, in any order
    propagation = curve = None
    if latents_path is not None and labelled["label"].nunique() >= 2:
        latents = pd.read_parquet(latents_path).astype({"item_id": str})  # read once, for both
        if params.few_label_repeats:  # the curve's draws wait for the PCA: it goes first
            curve = _start_curve(store, labelled, latents, params, workers)
        propagation = _start_propagation(items, latents, embedding_path, params, workers)
    metrics: dict[str, Any] = label_agreement(table["label"], table["cluster"])
    if params.bootstrap:
        metrics["intervals"] = bootstrap_intervals(table["label"], table["cluster"], params.bootstrap, seed=params.seed,
                                                  workers=workers)
    cont = contingency_table(labelled["label"], labelled["cluster"])
    metrics["contingency"] = {
        "labels": [str(v) for v in cont.index],
        "clusters": [int(v) for v in cont.columns],
        "counts": cont.to_numpy().tolist(),
    }
    metrics["best_cluster_per_label"] = best_cluster_per_label(
        labelled["label"], labelled["cluster"]
    ).to_dict(orient="records")
    flagged = likely_mislabelled(table, params.mislabelled_min_probability, params.mislabelled_min_purity)
    metrics["n_likely_mislabelled"] = len(flagged)
    metrics["likely_mislabelled"] = flagged.head(MISLABELLED_MAX).to_dict(orient="records")
    if curve is not None:
        metrics["few_label_curve"] = curve().to_dict(orient="records")
    predicted = pd.DataFrame(columns=PREDICTED_COLUMNS)
    if propagation is not None:
        predicted, metrics["propagation"] = propagation()
    if corrections is not None:
        metrics["corrections"] = corrections
    if predicted_path is not None:
        with atomic_path(predicted_path) as tmp:
            predicted.to_csv(tmp, index=False)
    metrics["n_skipped"] = len(store.skipped)
    metrics["evaluate_params"] = to_dict(params)
    return metrics


def _start_propagation(
    items: pd.DataFrame, latents: pd.DataFrame, embedding_path: Path | None, params: EvaluateParams,
    workers: int = 1,
) -> Callable[[], tuple[pd.DataFrame, dict]]:
    """Every item's label predicted from the labelled ones, and the summary metrics.json keeps: started in the
    workers, returns the wait for them.

    With ``propagation_keep_percent``, all but that share of each label's items are hidden (seeded draw)
    before training, and the predictions of the hidden items are scored against their labels.
    """
    table = items.merge(latents, on="item_id", how="inner")
    features = {"latents": table.filter(regex=r"^z_\d+$").to_numpy(dtype=np.float32)}
    if embedding_path is not None:
        embedding = pd.read_parquet(embedding_path).astype({"item_id": str}).set_index("item_id")
        columns = embedding.filter(regex=r"^u_\d+$").columns
        if len(columns) and table["item_id"].isin(embedding.index).all():
            features["embedding"] = embedding.loc[table["item_id"], columns].to_numpy(dtype=np.float32)
    known = np.flatnonzero(table["label"].notna().to_numpy())
    train = table["label"].copy()
    summary: dict[str, Any] = {}
    if params.propagation_keep_percent is not None:
        kept = stratified_rows(table["label"].iloc[known].astype(str).to_numpy(),
                               params.propagation_keep_percent / 100, np.random.default_rng(params.seed))
        hidden = np.setdiff1d(known, known[kept])
        train.iloc[hidden] = pd.NA
        summary["keep_percent"] = params.propagation_keep_percent
    wait = start_propagation(features, train.tolist(), seed=params.seed, workers=workers)

    def finish() -> tuple[pd.DataFrame, dict]:
        result = wait()
        predicted = pd.DataFrame({
            "item_id": table["item_id"], "label": table["label"], "predicted_label": result.predicted,
            "probability": result.probability.round(4), "labelled": train.notna().to_numpy(),
        }, columns=PREDICTED_COLUMNS)
        summary.update({"classifier": result.classifier, "features": result.features,
                        "cv_balanced_accuracy": result.cv_balanced_accuracy,
                        "n_labelled": int(train.notna().sum()), "n_predicted": len(predicted)})
        if params.propagation_keep_percent is not None:
            truth = table["label"].iloc[hidden].astype(str).to_numpy()
            guess = result.predicted[hidden]
            summary["hidden"] = {"n": len(hidden), "accuracy": float(accuracy_score(truth, guess)),
                                 "balanced_accuracy": float(balanced_accuracy_score(truth, guess))}
            log.info("propagation from %g %% of the labels: balanced accuracy %.3f on the %d hidden",
                     params.propagation_keep_percent, summary["hidden"]["balanced_accuracy"], len(hidden))
        return predicted, summary

    return finish


def _store_pixel_pca(tiles_dir: str, rows: np.ndarray, n_components: int) -> np.ndarray:
    """:func:`pixel_pca` of a store's tiles, read from its memory map (a worker's task: the path travels, not
    the pixels)."""
    return pixel_pca(TileStore(tiles_dir).tiles, rows, n_components)


def _start_curve(store: TileStore, labelled: pd.DataFrame, latents: pd.DataFrame, params: EvaluateParams,
                 workers: int = 1) -> Callable[[], pd.DataFrame]:
    """The few-label curve on latents and on the pixels' PCA, over a seeded sample of labelled items: the PCA
    started in a worker, returns the wait for the curve."""
    latents = latents.set_index("item_id")
    items = labelled[labelled["item_id"].isin(latents.index)]
    if len(items) > params.few_label_max_items:
        items = items.sample(params.few_label_max_items, random_state=params.seed)
    z = latents.loc[items["item_id"]].filter(regex=r"^z_\d+$").to_numpy(dtype=np.float32)
    rows = pd.Series(np.arange(len(store.index)), index=store.index["item_id"]).loc[items["item_id"]]
    pca = submit_tasks([(_store_pixel_pca, (str(store.path), rows.to_numpy(), z.shape[1]))], workers)

    def finish() -> pd.DataFrame:
        pixels = pca.results()[0]
        log.info("few-label curve on %d items (%d-D latents vs pixel PCA)", len(items), z.shape[1])
        return few_label_curve(
            {"latents": z, "pixels_pca": pixels}, items["label"].to_list(), repeats=params.few_label_repeats,
            seed=params.seed, workers=workers,
        )

    return finish
