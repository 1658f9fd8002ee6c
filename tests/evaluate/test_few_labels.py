"""The few-label classifier curve: stratified draws, informative features beat noise, streamed PCA."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from quagga.evaluate.few_labels import few_label_curve, pixel_pca


def test_informative_features_learn_from_few_labels() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 200)
    centres = {"a": [0, 0], "b": [4, 0], "c": [0, 4]}
    informative = np.array([centres[v] for v in labels]) + rng.normal(0, 0.5, (600, 2))
    noise = rng.normal(0, 1, (600, 2))
    curve = few_label_curve({"latents": informative, "noise": noise}, labels, fractions=(0.01, 0.5), repeats=2)
    assert len(curve) == 2 * 2 * 2  # features x classifiers x fractions
    smallest = curve[curve["fraction"] == 0.01]
    assert (smallest["n_train"] == 6).all()  # 1 % of 200 per label: 2 each
    good = smallest[smallest["features"] == "latents"]
    bad = curve[curve["features"] == "noise"]
    assert (good["accuracy"] > 0.9).all() and (bad["accuracy"] < 0.5).all()
    assert curve["balanced_accuracy"].between(0, 1).all()
    again = [few_label_curve({"x": noise}, labels, (0.1,), seed=4) for _ in range(2)]
    assert again[0].equals(again[1])


def test_rare_labels_keep_one_item_to_score() -> None:
    labels = ["a"] * 50 + ["b"] * 2
    x = np.arange(52, dtype=float)[:, None]
    curve = few_label_curve({"x": x}, labels, fractions=(0.5,), repeats=1)
    assert curve["n_train"].tolist() == [26, 26]  # 25 a + 1 b, not both b


def test_pixel_pca_streams_and_matches_pca() -> None:
    rng = np.random.default_rng(1)
    tiles = (rng.normal(0, 1, (5000, 1, 4, 4)) * np.linspace(3, 0.1, 16).reshape(1, 1, 4, 4)).astype(np.float32)
    rows = np.arange(0, 5000, 1)
    scores = pixel_pca(tiles, rows, 3)
    reference = PCA(3).fit_transform(tiles.reshape(5000, -1))
    for k in range(3):  # the same components up to sign
        assert abs(np.corrcoef(scores[:, k], reference[:, k])[0, 1]) > 0.99
    with pytest.raises(ValueError, match="two labels"):
        few_label_curve({"x": scores}, ["a"] * 5000)
