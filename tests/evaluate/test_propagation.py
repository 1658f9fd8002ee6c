"""Label propagation: a few labels of a generated set with known classes name the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagga.evaluate.dataset import PREDICTED_COLUMNS, evaluate_dataset
from quagga.evaluate.labelling import label_next
from quagga.evaluate.propagation import CLASSIFIERS, propagate
from quagga.params import EvaluateParams
from tests.evaluate.test_evaluate_dataset import write_inputs


def _blobs(n: int = 1200, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in ``k`` Gaussian classes of unequal size in 8-D; the class of each point."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(k, n, p=np.arange(1, k + 1) / np.arange(1, k + 1).sum())
    return rng.normal(0, 3, (k, 8))[truth] + rng.normal(0, 1, (n, 8)), np.array([f"c{t}" for t in truth])


def test_two_percent_of_the_labels_name_the_rest() -> None:
    x, truth = _blobs()
    rng = np.random.default_rng(1)
    labels = np.full(len(truth), None, dtype=object)
    known = np.concatenate([rng.choice(np.flatnonzero(truth == c), 5, replace=False) for c in np.unique(truth)])
    labels[known] = truth[known]
    noise = np.random.default_rng(2).normal(size=x.shape)  # a feature set that knows nothing
    result = propagate({"noise": noise, "blobs": x}, labels, seed=0)
    assert set(result.cv_balanced_accuracy) == {f"{c} on {f}" for c in CLASSIFIERS for f in ("noise", "blobs")}
    chosen = f"{result.classifier} on {result.features}"
    assert result.features == "blobs"
    assert result.cv_balanced_accuracy[chosen] == max(result.cv_balanced_accuracy.values())
    hidden = labels == None  # noqa: E711 - elementwise
    assert np.mean(result.predicted[hidden] == truth[hidden]) > 0.97
    assert result.probability.shape == (len(x),) and ((result.probability > 0) & (result.probability <= 1)).all()
    again = propagate({"noise": noise, "blobs": x}, labels, seed=0)
    np.testing.assert_array_equal(again.probability, result.probability)


def test_the_choice_is_cross_validated_on_the_labelled_items_only() -> None:
    """kNN's and logistic regression's scores are the same with or without the unlabelled items: they are
    scored on held-out labelled items (label spreading also uses where the unlabelled items lie, by design)."""
    x, truth = _blobs(400, 3)
    known = np.arange(len(x)) % 10 == 0
    with_rest = propagate({"x": x}, np.where(known, truth, None)).cv_balanced_accuracy
    alone = propagate({"x": x[known]}, truth[known]).cv_balanced_accuracy
    assert with_rest["knn on x"] == alone["knn on x"] and with_rest["logistic on x"] == alone["logistic on x"]


def test_few_labels_and_rare_labels() -> None:
    x, truth = _blobs(300, 3)
    one_each = np.full(len(x), None, dtype=object)
    for c in np.unique(truth):
        one_each[np.flatnonzero(truth == c)[0]] = c
    result = propagate({"x": x}, one_each)
    assert result.classifier == "label_spreading" and result.cv_balanced_accuracy == {}  # nothing to validate on
    assert np.mean(result.predicted == truth) > 0.9
    rare = one_each.copy()
    rare[np.flatnonzero(truth == "c2")[:10]] = "c2"  # c0 and c1 one item each, c2 ten
    assert set(propagate({"x": x}, rare).predicted) == set(truth)
    with pytest.raises(ValueError, match="at least two distinct labels"):
        propagate({"x": x}, np.where(truth == "c0", "c0", None))


def test_label_next_is_a_cluster_nobody_labelled_then_the_least_certain() -> None:
    probability = np.array([0.9, 0.2, 0.5, 0.2, 0.1, 0.99, 0.95, 0.97])
    unlabelled = np.array([True, True, True, True, False, True, True, True])
    assert label_next(probability, unlabelled, 3).tolist() == [1, 3, 2]
    assert label_next(probability, unlabelled, 10).tolist() == [1, 3, 2, 0, 6, 7, 5]
    clusters = np.array([0, 0, 0, -1, 0, 1, 1, 2])  # clusters 1 and 2 hold no labelled item; -1 is noise
    membership = np.array([1.0, 0.9, 0.8, 0.0, 1.0, 0.6, 0.9, 0.7])
    # the most typical of cluster 1 (two items, so first), then of cluster 2, then by probability
    assert label_next(probability, unlabelled, 4, clusters, membership).tolist() == [6, 7, 1, 3]


def test_evaluate_hides_labels_and_scores_the_predictions_on_the_hidden(tmp_path: Path) -> None:
    write_inputs(tmp_path, n=300)
    params = EvaluateParams(bootstrap=0, few_label_repeats=0, propagation_keep_percent=5)
    metrics = evaluate_dataset(tmp_path / "tiles", tmp_path / "clusters.parquet", tmp_path / "latents.parquet",
                               params, predicted_path=tmp_path / "predicted.csv")
    summary = metrics["propagation"]
    assert summary["keep_percent"] == 5 and summary["n_labelled"] == 15  # 5 % of 100 per label
    assert summary["hidden"]["n"] == 285 and summary["hidden"]["balanced_accuracy"] > 0.95
    predicted = pd.read_csv(tmp_path / "predicted.csv", keep_default_na=False)
    assert list(predicted.columns) == PREDICTED_COLUMNS and len(predicted) == 300
    assert predicted["labelled"].sum() == 15 and (predicted["label"] != "").all()  # hidden labels still listed
    no_latents = evaluate_dataset(tmp_path / "tiles", tmp_path / "clusters.parquet", None, params,
                                  predicted_path=tmp_path / "none.csv")
    assert "propagation" not in no_latents
    assert pd.read_csv(tmp_path / "none.csv").columns.tolist() == PREDICTED_COLUMNS  # header only: no prediction


def test_items_no_label_reaches_are_a_guess_and_come_first_to_label_next() -> None:
    """Three far-apart groups, one labelled item in each of two: the third group's items take the nearest
    label with probability 1/2 (no evidence), and label next lists them before any other item."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(centre, 0.3, (60, 2)) for centre in (0, 20, 40)])
    labels = np.full(180, None, dtype=object)
    labels[[0, 60]] = ["a", "b"]
    result = propagate({"x": x}, labels)
    assert result.classifier == "label_spreading"  # two labelled items: nothing to cross-validate
    assert (result.predicted[:120] == np.repeat(["a", "b"], 60)).all() and (result.probability[:120] > 0.9).all()
    assert (result.predicted[120:] == "b").all() and np.allclose(result.probability[120:], 0.5)
    assert set(label_next(result.probability, labels == None, 60)) == set(range(120, 180))  # noqa: E711
