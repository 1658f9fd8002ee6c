"""evaluate_dataset: metrics.json's content from a tile store, clusters and latents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from quagga.evaluate.dataset import evaluate_dataset
from quagga.params import EvaluateParams
from quagga.tables import write_table
from quagga.tiles.store import TileItem, write_store


def write_inputs(tmp_path: Path, n: int = 90) -> None:
    """A store of ``n`` tiles in 3 labels, clusters matching them but for item i00 ("a" in b's), and latents."""
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    items = [
        TileItem(f"i{k:02d}", np.clip(0.1 + 0.3 * (k % 3) + rng.normal(0, 0.02, (8, 8)), 0, 1), {"label": labels[k]})
        for k in range(n)
    ]
    write_store(tmp_path / "tiles", items, {"v": 1}, "images")
    ids = [f"i{k:02d}" for k in range(n)]
    cluster = np.arange(n) % 3
    cluster[0] = 1  # item i00 ("a") sits firmly in b's cluster
    write_table(
        pd.DataFrame({"item_id": ids, "cluster": cluster, "probability": 1.0, "outlier_score": 0.0}),
        tmp_path / "clusters.parquet",
    )
    z = np.eye(3)[np.arange(n) % 3] + rng.normal(0, 0.05, (n, 3))
    write_table(pd.DataFrame({"item_id": ids, **{f"z_{d}": z[:, d] for d in range(3)}}), tmp_path / "latents.parquet")


def test_metrics_json_content(tmp_path: Path) -> None:
    n = 90
    write_inputs(tmp_path, n)
    params = EvaluateParams(bootstrap=50, few_label_repeats=2)
    metrics = evaluate_dataset(tmp_path / "tiles", tmp_path / "clusters.parquet", tmp_path / "latents.parquet", params)
    json.dumps(metrics)  # plain JSON values only
    assert metrics["n_items"] == n and metrics["n_clusters"] == 3 and metrics["n_skipped"] == 0
    lo, hi = metrics["intervals"]["v_measure"]
    assert lo <= metrics["v_measure"] <= hi
    assert metrics["n_likely_mislabelled"] == 1
    assert metrics["likely_mislabelled"][0] | {"cluster_purity": None} == {
        "item_id": "i00", "label": "a", "cluster": 1, "cluster_label": "b", "cluster_purity": None,
        "probability": 1.0,
    }  # fmt: skip
    curve = pd.DataFrame(metrics["few_label_curve"])
    assert set(curve["features"]) == {"latents", "pixels_pca"} and len(curve) == 2 * 2 * 6
    assert curve.loc[curve["features"] == "latents", "balanced_accuracy"].min() > 0.9
    assert metrics["evaluate_params"]["bootstrap"] == 50

    without = evaluate_dataset(tmp_path / "tiles", tmp_path / "clusters.parquet", None, EvaluateParams(bootstrap=0))
    assert "few_label_curve" not in without and "intervals" not in without


def test_worker_processes_give_the_same_metrics(tmp_path: Path) -> None:
    """Bootstrap, few-label curve and the propagation's cross-validation in 2 processes: the same arithmetic,
    so metrics.json and the predictions are identical to one process's, value for value."""
    write_inputs(tmp_path)
    params = EvaluateParams(bootstrap=40, few_label_repeats=2)
    runs = [evaluate_dataset(tmp_path / "tiles", tmp_path / "clusters.parquet", tmp_path / "latents.parquet", params,
                             predicted_path=tmp_path / f"predicted{workers}.csv", workers=workers)
            for workers in (1, 2)]
    assert json.dumps(runs[0]) == json.dumps(runs[1])
    assert (tmp_path / "predicted1.csv").read_bytes() == (tmp_path / "predicted2.csv").read_bytes()
    assert "intervals" in runs[0] and "few_label_curve" in runs[0] and "propagation" in runs[0]
