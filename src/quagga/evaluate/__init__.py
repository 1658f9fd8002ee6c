"""Clusters against human labels: agreement scores with intervals, items to re-check, few-label curve."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagga.evaluate.agreement import (
    best_cluster_per_label,
    bootstrap_intervals,
    contingency_table,
    label_agreement,
    likely_mislabelled,
)
from quagga.evaluate.few_labels import few_label_curve, pixel_pca
from quagga.params import EvaluateParams, to_dict
from quagga.tiles.store import TileStore

log = logging.getLogger(__name__)
MISLABELLED_MAX = 500  # longer lists are cut in metrics.json (the count stays exact)


def evaluate_dataset(
    tiles_dir: Path, clusters_path: Path, latents_path: Path | None, params: EvaluateParams
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds for one dataset (plain JSON values)."""
    store = TileStore(tiles_dir)
    table = store.index[["item_id", "label"]].merge(pd.read_parquet(clusters_path), on="item_id", how="inner")
    metrics: dict[str, Any] = label_agreement(table["label"], table["cluster"])
    if params.bootstrap:
        metrics["intervals"] = bootstrap_intervals(table["label"], table["cluster"], params.bootstrap, seed=params.seed)
    labelled = table[table["label"].notna()]
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
    if latents_path is not None and params.few_label_repeats and labelled["label"].nunique() >= 2:
        metrics["few_label_curve"] = _curve(store, labelled, Path(latents_path), params).to_dict(orient="records")
    metrics["n_skipped"] = len(store.skipped)
    metrics["evaluate_params"] = to_dict(params)
    return metrics


def _curve(store: TileStore, labelled: pd.DataFrame, latents_path: Path, params: EvaluateParams) -> pd.DataFrame:
    """The few-label curve on latents and on the pixels' PCA, over a seeded sample of labelled items."""
    latents = pd.read_parquet(latents_path).set_index("item_id")
    items = labelled[labelled["item_id"].isin(latents.index)]
    if len(items) > params.few_label_max_items:
        items = items.sample(params.few_label_max_items, random_state=params.seed)
    z = latents.loc[items["item_id"]].filter(regex=r"^z_\d+$").to_numpy(dtype=np.float32)
    rows = pd.Series(np.arange(len(store.index)), index=store.index["item_id"]).loc[items["item_id"]]
    pixels = pixel_pca(store.tiles, rows.to_numpy(), z.shape[1])
    log.info("few-label curve on %d items (%d-D latents vs pixel PCA)", len(items), z.shape[1])
    return few_label_curve(
        {"latents": z, "pixels_pca": pixels}, items["label"].to_list(), repeats=params.few_label_repeats,
        seed=params.seed,
    )
