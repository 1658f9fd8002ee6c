"""Do the latents carry the call type? kNN label accuracy of a workflow run's latents vs raw pixels.

    .venv/bin/python bench/latent_knn.py [results/koumura-bird0]

Reads ``latents.parquet`` and the tile store's labels from a finished dataset folder (run the workflow
first, e.g. ``snakemake --cores all --configfile config/koumura-bird0.yaml``), and scores a k-nearest-
neighbour classifier (k=5, stratified 5-fold cross-validation, scikit-learn) on the latent means, and on
the same number of principal components of the raw tile pixels (fitted without labels, streamed)
for comparison. A sanity check of the model, not of the clustering: target accuracy >= 0.95 on
koumura-bird0. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from benchutil import ROOT, knn_scores

from quagga.evaluate.few_labels import pixel_pca
from quagga.tiles.store import TileStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", nargs="?", type=Path, default=ROOT / "results" / "koumura-bird0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    latents_path = args.dataset_dir / "latents.parquet"
    if not latents_path.is_file():
        sys.exit(f"no {latents_path}: run the workflow for this dataset first")
    store = TileStore(args.dataset_dir / "tiles")
    if "label" not in store.index:
        sys.exit(f"{store.path} has no labels to score against")
    latents = pd.read_parquet(latents_path)
    z = latents.filter(regex=r"^z_\d+$").to_numpy()
    labelled = store.index[["item_id", "label"]].reset_index(names="row").dropna(subset=["label"])
    labelled = labelled[labelled["item_id"].isin(latents["item_id"])]
    position = pd.Series(np.arange(len(latents)), index=latents["item_id"])
    labels = labelled["label"].astype(str).to_numpy()
    z = z[position[labelled["item_id"]].to_numpy()]
    pixels = pixel_pca(store.tiles, labelled["row"].to_numpy(), z.shape[1])  # streamed, never all in memory

    results = {
        "latents": knn_scores(z, labels, args.seed),
        "pixels_pca": knn_scores(pixels, labels, args.seed),
    }
    counts = pd.Series(labels).value_counts()
    print(f"\n{len(labels)} labelled items, {len(counts)} labels (smallest: {counts.iloc[-1]} items)")
    print(f"kNN (k=5), stratified 5-fold, {args.dataset_dir}\n")
    print(f"{'features':34}{'accuracy':>12}{'balanced':>12}")
    names = {"latents": f"latents ({z.shape[1]}-D means)", "pixels_pca": f"pixels (PCA to {z.shape[1]})"}
    for key, name in names.items():
        r = results[key]
        print(f"{name:34}{r['accuracy']:>8.4f} ±{r['accuracy_sd']:.3f}{r['balanced_accuracy']:>10.4f}")
    print(f"\ntarget: latent accuracy >= 0.95 -> {'met' if results['latents']['accuracy'] >= 0.95 else 'NOT met'}")
    print(
        json.dumps(
            {
                "knn_accuracy": results["latents"]["accuracy"],
                "knn_balanced_accuracy": results["latents"]["balanced_accuracy"],
                "n_items": len(labels),
                "n_labels": len(counts),
                "baselines": {"pixels_pca": results["pixels_pca"]},
                "latents": results["latents"],
            }
        )
    )


if __name__ == "__main__":
    main()
