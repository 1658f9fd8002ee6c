"""Which representation of the particles carries their class? Pixels, morphology, latents, side by side.

    .venv/bin/python bench/image_repr.py DATA_DIR [--results DIR] [--seeds 3] [--config YAML]
                                         [--variant NAME JSON]...

DATA_DIR is an image folder laid out like the shared sets (``labels.csv`` or ``boxes.csv``, see
``bench/quality.py``). The default model is the workflow run with the defaults only (every ``auto`` setting
found from the data; ``--config`` gives a preset instead), in the same folders as ``bench/quality.py
--no-preset`` uses (``<results>/<name>``, ``<results>/seed<k>/<name>``), so a finished quality run is reused.
Each ``--variant NAME JSON`` is the same run with JSON merged into the dataset's section (e.g.
``--variant grey '{"images": {"channel": "luminance"}}'`` or ``--variant no-invariance '{"train":
{"invariance": 0}}'``), in ``<results>/variant-NAME/``.

One row per representation:

- **pixel PCA**: the tiles' pixels, PCA (fitted without labels) to as many components as the latents;
- **morphology**: the tile index's measured shape, size and intensity features (``feat_*``), z-scored;
- **latents (default model)**: kNN on the default model's latent means, and the clusters the workflow made
  (with ``embed.morphology``, from the latents plus the scaled features); with ``embed.morphology`` also
  **latents alone** and **latents + morphology** reclustered through the same stage (the first of these
  separates what the network adds from what the measured features add); then each variant's run.

Columns: balanced kNN accuracy (k=5, stratified 5-fold); V-measure, ARI, noise and clusters after the
same ParametricUMAP + HDBSCAN selection stage the workflow runs (its parameters as the default run used
them); the minimum pairwise ARI over ``--seeds`` runs (models: the whole chain retrained; pixel PCA and
morphology: the embedding and clustering reseeded); the training time. Ends with one JSON line: the
default model's ``knn_balanced_accuracy``, ``v_measure`` and ``seed_min_ari`` at the top level, pixel PCA
and morphology under ``baselines``, the variants under ``variants``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from benchutil import ROOT, knn_scores
from quality import build_config, figures, layout, run_pipeline
from sklearn.metrics import adjusted_rand_score

from quagga.embed.cluster import cluster_embedding
from quagga.embed.morphology import FEATURE_PREFIX, with_morphology
from quagga.embed.parametric_umap import cluster_space
from quagga.evaluate.few_labels import pixel_pca
from quagga.params import ClusterParams, EmbedParams, from_dict
from quagga.tables import read_table_params
from quagga.tiles.store import TileStore


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested sections key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def run_model(args: argparse.Namespace, results: Path, overrides: dict, seed: int) -> Path:
    """The workflow up to the clusters with ``overrides`` on the dataset section; its dataset folder."""
    name = args.data_dir.name
    config = build_config(args.data_dir, name, args.config, results)
    config["datasets"][name] = merged(config["datasets"][name], overrides)
    if seed:
        config["seed"] = seed
    out = results / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_pipeline((out / "bench-config.yaml").resolve(), out / "clusters.parquet", args.cores, args.rerun_triggers)
    return out


def train_seconds(out: Path) -> float | None:
    """Wall seconds of the train rule (its Snakemake benchmark file)."""
    path = out.parent / "benchmarks" / "train" / f"{out.name}.tsv"
    return round(float(pd.read_csv(path, sep="\t")["s"].iloc[0]), 1) if path.is_file() else None


def min_pairwise_ari(runs: list[pd.Series]) -> float | None:
    """The lowest ARI between any two clusterings of the same items (noise counts as a cluster)."""
    pairs = [adjusted_rand_score(a, b.loc[a.index]) for a, b in itertools.combinations(runs, 2)]
    return round(float(min(pairs)), 4) if pairs else None


def latent_table(out: Path, embedded: bool) -> pd.DataFrame:
    """item_id and z_* columns of a run: the latent means, or (``embedded``) what its embed stage embedded."""
    latents = pd.read_parquet(out / "latents.parquet")
    latents = latents[["item_id", *[c for c in latents.columns if c.startswith("z_")]]]
    if embedded and read_table_params(out / "embedding.parquet").get("morphology") is True:
        latents = with_morphology(latents, TileStore(out / "tiles").index)
    return latents


def model_row(args: argparse.Namespace, results: Path, overrides: dict, labels: pd.Series,
              first: Path | None = None) -> dict:
    """kNN on the latents, the run's own clusters, and their stability over retrained models (``first``: the
    seed-0 run when the caller already has it)."""
    runs = [first or run_model(args, results, overrides, 0)]
    runs += [run_model(args, results / f"seed{seed}", overrides, seed) for seed in range(1, args.seeds)]
    clusters = [pd.read_parquet(out / "clusters.parquet").set_index("item_id")["cluster"] for out in runs]
    z = latent_table(runs[0], embedded=False).set_index("item_id").loc[labels.index].to_numpy()
    return {"knn_balanced_accuracy": knn_scores(z, labels.to_numpy(), args.seed)["balanced_accuracy"],
            **figures(labels.to_numpy(), clusters[0].loc[labels.index].to_numpy()),
            "seed_min_ari": min_pairwise_ari(clusters), "train_s": train_seconds(runs[0]), "dims": z.shape[1]}


def feature_row(args: argparse.Namespace, features: pd.DataFrame, embed: EmbedParams, cluster: ClusterParams,
                labels: pd.Series) -> dict:
    """kNN on ``features`` (item_id + z_* columns), then the workflow's n-D ParametricUMAP and cluster selection
    on them, reseeded ``--seeds`` times."""
    z = features.set_index("item_id").loc[labels.index].to_numpy()
    runs = []
    for seed in range(args.seeds):
        space, _ = cluster_space(features, dataclasses.replace(embed, seed=embed.seed + seed, morphology=False))
        found, _ = cluster_embedding(space, dataclasses.replace(cluster, seed=cluster.seed + seed))
        runs.append(found.set_index("item_id")["cluster"])
    return {"knn_balanced_accuracy": knn_scores(z, labels.to_numpy(), args.seed)["balanced_accuracy"],
            **figures(labels.to_numpy(), runs[0].loc[labels.index].to_numpy()),
            "seed_min_ari": min_pairwise_ari(runs), "train_s": None, "dims": z.shape[1]}


def columns(prefix: str, values: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(values.astype(np.float32), columns=[f"z_{prefix}{i}" for i in range(values.shape[1])])
    table.insert(0, "item_id", item_ids)
    return table


def print_rows(rows: dict[str, dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'representation':34}{'dims':>6}{'kNN bal':>9}{'V':>8}{'ARI':>8}{'noise':>8}{'clusters':>10}"
          f"{'seed ARI':>10}{'train s':>9}")
    for name, r in rows.items():
        seed_ari = "-" if r["seed_min_ari"] is None else f"{r['seed_min_ari']:.3f}"
        train = "-" if r["train_s"] is None else f"{r['train_s']:.0f}"
        print(f"{name:34}{r['dims']:>6}{r['knn_balanced_accuracy']:>9.3f}{r['v_measure']:>8.3f}{r['ari']:>8.3f}"
              f"{r['noise_fraction']:>8.3f}{r['n_clusters']:>10d}{seed_ari:>10}{train:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--config", type=Path, help="a preset for the dataset (default: none, the defaults only)")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="workflow results folder")
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                        help="a variant of the default run: JSON merged into the dataset section")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seeds", type=int, default=3, help="retrained models per row (1: no stability check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kNN folds")
    parser.add_argument("--rerun-triggers", nargs="+", default=["mtime", "params", "input"],
                        help="what makes Snakemake redo a finished stage")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.data_dir = args.data_dir.resolve()
    if layout(args.data_dir)[0] != "images":
        sys.exit(f"{args.data_dir}: not an image folder (labels.csv or boxes.csv)")
    variants = {}
    for name, text in args.variant:
        try:
            variants[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            sys.exit(f"--variant {name}: not JSON ({exc})")
    results = args.results.resolve()
    name = args.data_dir.name

    default = run_model(args, results, {}, 0)
    store = TileStore(default / "tiles")
    index = store.index.reset_index(names="row")
    labelled = index[index["label"].notna()]
    labels = pd.Series(labelled["label"].astype(str).to_numpy(), index=labelled["item_id"].to_numpy())
    embed = from_dict(EmbedParams, {k: v for k, v in read_table_params(default / "embedding.parquet").items()
                                    if k != "settings"})
    cluster_fields = {f.name for f in dataclasses.fields(ClusterParams)}
    cluster = from_dict(ClusterParams, {k: v for k, v in read_table_params(default / "clusters.parquet").items()
                                        if k in cluster_fields})

    rows: dict[str, dict] = {}
    rows["latents (default model)"] = model_row(args, results, {}, labels, first=default)
    dims = rows["latents (default model)"]["dims"]
    rows[f"pixel PCA-{dims}"] = feature_row(
        args, columns("pca", pixel_pca(store.tiles, index["row"].to_numpy(), dims), index["item_id"].to_numpy()),
        embed, cluster, labels)
    features = index.filter(like=FEATURE_PREFIX)
    if features.shape[1]:
        values = features.to_numpy(dtype=np.float64)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        z = np.nan_to_num((values - mean) / np.where(std > 0, std, 1.0), nan=0.0)
        rows["morphology features"] = feature_row(args, columns("m", z, index["item_id"].to_numpy()), embed,
                                                  cluster, labels)
    if embed.morphology is True:  # the run embedded both: each on its own through the same stage
        rows["latents alone"] = {**feature_row(args, latent_table(default, embedded=False), embed, cluster, labels),
                                 "train_s": rows["latents (default model)"]["train_s"]}
        rows["latents + morphology (embedded)"] = {
            **feature_row(args, latent_table(default, embedded=True), embed, cluster, labels),
            "train_s": rows["latents (default model)"]["train_s"]}
    for variant, overrides in variants.items():
        rows[f"variant {variant}"] = model_row(args, results / f"variant-{variant}", overrides, labels)
        rows[f"variant {variant}"]["overrides"] = overrides

    print_rows(rows, f"{name}: {len(labels)} labelled items, {labels.nunique()} labels; "
                     f"{args.seeds} seed(s); noise counts as a cluster")
    top = rows["latents (default model)"]
    baselines = {k: v for k, v in rows.items() if not k.startswith(("latents", "variant"))}
    print(json.dumps({"dataset": name, "n_items": len(labels), **top,
                      "latents_alone": rows.get("latents alone"),
                      "baselines": {("pixels_pca" if k.startswith("pixel") else "morphology"): v
                                    for k, v in baselines.items()},
                      "variants": {k[len("variant "):]: v for k, v in rows.items() if k.startswith("variant ")}}))


if __name__ == "__main__":
    main()
