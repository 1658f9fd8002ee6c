"""ParametricUMAP against umap-learn's UMAP on the same latents: fit time, transform time, map quality.

    .venv/bin/python bench/umap_speed.py [--latents results/koumura-bird0/latents.parquet] [--n 20000]

Data: ``--n`` items drawn (with replacement) from a workflow run's latents, each jittered by Gaussian noise
of 0.1 of every dimension's standard deviation, so the set has the real latents' shape at the size asked
for; the item's label (from the run's tile store) rides along for the kNN score. Without a latents file,
``--n`` points of 12 Gaussian blobs in 32-D. Another ``--n-new`` (10,000) items drawn the same way are
"new data" for ``transform``.

In the same run, with the same n_neighbors / min_dist / n_components and seed: umap-learn's ``UMAP``
(``fit_transform``; seeded, hence single-threaded, and unseeded, parallel) and quagga's ``ParametricUMAP``
(``fit``, then ``transform``) with the workflow's default settings (``EmbedParams``). Quality of each map:
trustworthiness (scikit-learn, 15 neighbours, on a 5,000-item sample) and kNN accuracy (k=5, stratified
5-fold) of the embedding against the labels. Targets (issue 6): transform of 10,000 new items <= 1 s;
fit not slower than umap-learn. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from benchutil import ROOT, knn_scores
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness

from quagga.embed.parametric_umap import ParametricUMAP
from quagga.params import EmbedParams


def data(latents: Path, n: int, n_new: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Training items, their labels, new items, and what they are."""
    rng = np.random.default_rng(seed)
    if latents.is_file():
        from quagga.tiles.store import TileStore

        table = pd.read_parquet(latents)
        index = TileStore(latents.parent / "tiles").index[["item_id", "label"]]
        table = table.merge(index, on="item_id")
        Z = table.filter(regex=r"^z_\d+$").to_numpy(np.float32)
        labels = table["label"].astype(str).to_numpy()
        rows = rng.integers(0, len(Z), n + n_new)
        X = Z[rows] + rng.normal(0, 0.1, (len(rows), Z.shape[1])).astype(np.float32) * Z.std(axis=0)
        what = f"{latents} ({len(Z)} items x {Z.shape[1]}) resampled with jitter"
        y = labels[rows]
    else:
        X, y = make_blobs(n + n_new, n_features=32, centers=12, cluster_std=2.0, random_state=seed)
        X, y = X.astype(np.float32), y.astype(str)
        what = "12 Gaussian blobs in 32-D"
    return X[:n], y[:n], X[n:], what


def quality(X: np.ndarray, emb: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    sample = np.random.default_rng(seed).choice(len(X), min(5000, len(X)), replace=False)
    return {
        "trustworthiness": round(float(trustworthiness(X[sample], emb[sample], n_neighbors=15)), 4),
        "knn_accuracy": knn_scores(emb, y, seed)["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=Path, default=ROOT / "results" / "koumura-bird0" / "latents.parquet")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--n-new", type=int, default=10000)
    parser.add_argument("--dims", type=int, default=2, help="n_components (2: the plot map; 10: clustering)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import umap

    X, y, X_new, what = data(args.latents, args.n, args.n_new, args.seed)
    p = EmbedParams(seed=args.seed)
    min_dist = p.min_dist if args.dims == 2 else p.cluster_min_dist
    print(f"{len(X)} x {X.shape[1]} items: {what}; {args.dims}-D, n_neighbors {p.n_neighbors}, min_dist {min_dist}")
    results: dict[str, dict] = {}
    # umap-learn first compiles its numba functions (ParametricUMAP's graph uses some of them, with other
    # argument types); warm both on a small set so neither side's fit time includes compiling
    umap.UMAP(n_components=args.dims, n_neighbors=p.n_neighbors, random_state=0, n_epochs=5).fit(X[:5000])
    ParametricUMAP(n_components=args.dims, epochs=1, min_steps=1).fit(X[:5000])

    for name, seed in (("umap_learn_seeded", args.seed), ("umap_learn_parallel", None)):
        started = time.perf_counter()
        emb = umap.UMAP(
            n_components=args.dims, n_neighbors=p.n_neighbors, min_dist=min_dist, random_state=seed
        ).fit_transform(X)
        results[name] = {"fit_s": round(time.perf_counter() - started, 2), **quality(X, emb, y, args.seed)}
        print(f"  {name}: {results[name]}", flush=True)

    started = time.perf_counter()
    model = ParametricUMAP(n_components=args.dims, min_dist=min_dist, seed=args.seed).fit(X)  # EmbedParams' defaults
    fit_s = time.perf_counter() - started
    times = []
    for _ in range(5):
        started = time.perf_counter()
        model.transform(X_new)
        times.append(time.perf_counter() - started)
    results["parametric_umap"] = {
        "fit_s": round(fit_s, 2), "transform_new_s": round(float(np.median(times)), 4),
        **quality(X, model.transform(X), y, args.seed),
    }
    print(f"  parametric_umap: {results['parametric_umap']}", flush=True)

    print(f"\n{'method':24}{'fit s':>9}{'transform s':>13}{'trust.':>9}{'kNN acc.':>10}")
    for name, r in results.items():
        tr = f"{r['transform_new_s']:.3f}" if "transform_new_s" in r else "-"
        print(f"{name:24}{r['fit_s']:>9.1f}{tr:>13}{r['trustworthiness']:>9.4f}{r['knn_accuracy']:>10.4f}")
    pu = results["parametric_umap"]
    print(f"\ntransform of {len(X_new)} new items: {pu['transform_new_s']:.3f} s (target <= 1 s) -> "
          f"{'met' if pu['transform_new_s'] <= 1 else 'NOT met'}")
    for base in ("umap_learn_seeded", "umap_learn_parallel"):
        ratio = pu["fit_s"] / results[base]["fit_s"]
        print(f"fit: {ratio:.2f}x {base} (target <= 1) -> {'met' if ratio <= 1 else 'NOT met'}")
    print(json.dumps({"n": len(X), "dims": args.dims, "data": what, **results}))


if __name__ == "__main__":
    main()
