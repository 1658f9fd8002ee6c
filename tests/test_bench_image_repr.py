"""bench/image_repr.py's own logic: variant overrides, the stability figure, a feature row end to end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import image_repr  # noqa: E402 - bench/ is not a package

from quagga.params import ClusterParams, EmbedParams  # noqa: E402


def test_merged_overrides_nested_keys_only() -> None:
    base = {"images": {"channel": "auto", "normalize": {"orient": "none", "tile_size": 128}}, "train": {}}
    out = image_repr.merged(base, {"images": {"normalize": {"orient": "canonical"}}, "train": {"invariance": 0}})
    assert out == {"images": {"channel": "auto", "normalize": {"orient": "canonical", "tile_size": 128}},
                   "train": {"invariance": 0}}
    assert base["images"]["normalize"]["orient"] == "none"  # the base is left as it was


def test_min_pairwise_ari_is_the_worst_pair() -> None:
    a = pd.Series([0, 0, 1, 1, 2, 2], index=list("uvwxyz"))
    same = pd.Series([5, 5, 7, 7, 9, 9], index=list("zyxwvu"))[::-1]  # relabelled, other order
    other = pd.Series([0, 1, 0, 1, 0, 1], index=list("uvwxyz"))
    assert image_repr.min_pairwise_ari([a, same]) == 1.0
    assert image_repr.min_pairwise_ari([a, same, other]) < 0.1
    assert image_repr.min_pairwise_ari([a]) is None


def test_feature_row_scores_separated_groups_through_the_workflow_stage() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (3, 8))
    values = np.concatenate([c + rng.normal(0, 0.3, (60, 8)) for c in centres])
    ids = np.array([f"i{k}" for k in range(len(values))])
    labels = pd.Series(np.repeat(["a", "b", "c"], 60), index=ids)
    args = argparse.Namespace(seeds=2, seed=0)
    row = image_repr.feature_row(args, image_repr.columns("f", values, ids), EmbedParams(epochs=5, min_steps=50),
                                 ClusterParams(), labels)
    assert row["knn_balanced_accuracy"] == 1.0 and row["dims"] == 8
    assert row["v_measure"] > 0.95 and row["n_clusters"] == 3 and row["seed_min_ari"] > 0.95
