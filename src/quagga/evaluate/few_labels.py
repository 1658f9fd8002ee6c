"""Training assistance: how well a classifier on the latents learns the labels from a few examples.

The curve the course material describes: label 1, 2, 5 ... 50 % of the items, train logistic regression
and kNN on them, score the rest; the same on the raw pixels (PCA to the latent size) shows what the
autoencoder adds. If a handful of labels already give high accuracy on the latents, a person can label
a few calls per type and let the classifier propose the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from quagga.pool import run_tasks

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
PCA_BATCH = 1024  # tiles read at once (64 MB of 128 x 128 float64): the pixels are streamed, never all in memory


def pixel_pca(tiles: np.ndarray, rows: np.ndarray, n_components: int, power_iterations: int = 2,
              seed: int = 0) -> np.ndarray:
    """PCA scores of the flattened tiles ``tiles[rows]`` (e.g. a memory map), fitted without labels.

    Randomized PCA (Halko, Martinsson and Tropp 2011, with power iterations) on the centred pixels, which
    are streamed ``PCA_BATCH`` tiles at a time, never all in memory: every pass is a product with a thin
    matrix, so 7,652 tiles of 128 x 128 take seconds (the incremental PCA used before did an SVD of
    2,048 x 16,384 per batch: minutes). The components agree with an exact PCA's up to sign (tested).
    """
    rows = np.asarray(rows)
    n_components = min(n_components, len(rows))
    batches = [rows[i : i + PCA_BATCH] for i in range(0, len(rows), PCA_BATCH)]

    def flat(batch: np.ndarray) -> np.ndarray:
        return np.asarray(tiles[batch], dtype=np.float64).reshape(len(batch), -1)

    mean = sum(flat(b).sum(axis=0) for b in batches) / len(rows)
    width = len(mean)
    rank = min(n_components + 20, len(rows), width)  # 20 extra directions: the leading ones come out exact

    def times(right: np.ndarray) -> np.ndarray:  # (X - mean) @ right, [n, rank]
        return np.concatenate([flat(b) @ right for b in batches]) - mean @ right

    def transposed_times(left: np.ndarray) -> np.ndarray:  # (X - mean).T @ left, [width, rank]
        out, start = np.zeros((width, left.shape[1])), 0
        for b in batches:
            out += flat(b).T @ left[start : start + len(b)]
            start += len(b)
        return out - np.outer(mean, left.sum(axis=0))

    basis = np.linalg.qr(times(np.random.default_rng(seed).standard_normal((width, rank))))[0]
    for _ in range(power_iterations):
        basis = np.linalg.qr(times(np.linalg.qr(transposed_times(basis))[0]))[0]
    u, singular, _ = np.linalg.svd(transposed_times(basis).T, full_matrices=False)
    return (basis @ u[:, :n_components] * singular[:n_components]).astype(np.float32)


def stratified_rows(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A stratified draw of ``fraction`` of each label's items (at least one each, and one left to score)."""
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = min(max(1, round(fraction * len(members))), max(1, len(members) - 1))
        rows.append(rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(rows))


def _classifier(name: str, smallest_class: int):  # noqa: ANN202 - an sklearn estimator
    """Logistic regression on standardised features, or kNN with k no larger than the rarest label's
    labelled count (with two examples per label, five neighbours would be outvoted by other labels)."""
    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return KNeighborsClassifier(min(5, smallest_class))


def _draw_rows(
    features: Mapping[str, np.ndarray], y: np.ndarray, fraction: float, repeat: int, train: np.ndarray
) -> list[dict[str, object]]:
    """Every feature set and classifier trained on the rows ``train`` and scored on the rest."""
    test = np.setdiff1d(np.arange(len(y)), train)
    smallest_class = int(np.unique(y[train], return_counts=True)[1].min())
    rows = []
    for feature_name, x in features.items():
        for clf_name in ("logistic", "knn"):
            predicted = _classifier(clf_name, smallest_class).fit(x[train], y[train]).predict(x[test])
            rows.append({
                "features": feature_name,
                "classifier": clf_name,
                "fraction": fraction,
                "repeat": repeat,
                "n_train": len(train),
                "accuracy": accuracy_score(y[test], predicted),
                "balanced_accuracy": balanced_accuracy_score(y[test], predicted),
            })
    return rows


def few_label_curve(
    features: Mapping[str, np.ndarray],
    labels: Sequence[object],
    fractions: Sequence[float] = FRACTIONS,
    repeats: int = 3,
    seed: int = 0,
    workers: int = 1,
) -> pd.DataFrame:
    """Accuracy and balanced accuracy on the unlabelled rest, per feature set, classifier and fraction.

    Each (fraction, repeat) draws one stratified labelled set, shared by every feature set and
    classifier so that they are compared on the same items. Returns the mean and standard deviation
    over ``repeats`` draws. The draws are made here, in order; ``workers`` processes train on them (the
    same arithmetic, so the same curve for any number of workers).
    """
    y = np.asarray([str(v) for v in labels])
    if len(np.unique(y)) < 2:
        raise ValueError("the few-label curve needs at least two labels")
    rng = np.random.default_rng(seed)
    draws = [(fraction, repeat, stratified_rows(y, fraction, rng)) for fraction in fractions
             for repeat in range(repeats)]
    rows = [row for part in run_tasks([(_draw_rows, (features, y, *draw)) for draw in draws], workers) for row in part]
    runs = pd.DataFrame(rows)
    curve = runs.groupby(["features", "classifier", "fraction"], sort=False).agg(
        n_train=("n_train", "mean"),
        accuracy=("accuracy", "mean"),
        accuracy_sd=("accuracy", "std"),
        balanced_accuracy=("balanced_accuracy", "mean"),
        balanced_accuracy_sd=("balanced_accuracy", "std"),
    )
    return curve.reset_index()
