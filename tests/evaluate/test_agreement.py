"""Label agreement metrics checked against values worked out by hand on tiny examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from quagga.evaluate.agreement import (
    best_cluster_per_label,
    bootstrap_intervals,
    contingency_table,
    label_agreement,
    likely_mislabelled,
)

SCORES = ("homogeneity", "completeness", "v_measure", "ari", "ami")


def test_perfect_clustering_scores_one() -> None:
    result = label_agreement(pd.Series(list("aabbcc")), pd.Series([5, 5, 0, 0, 2, 2]))
    for name in SCORES:
        assert result[name] == pytest.approx(1.0)
        assert result[f"nonnoise_{name}"] == pytest.approx(1.0)
    assert result["noise_fraction"] == 0.0
    counts = (result["n_clusters"], result["n_labels"], result["n_items"], result["n_unlabelled"])
    assert counts == (3, 3, 6, 0)


def test_noise_counts_as_its_own_cluster() -> None:
    # a: clusters 0, 0, noise; b: clusters 1, 1, noise
    labels, clusters = pd.Series(list("aaabbb")), pd.Series([0, 0, -1, 1, 1, -1])
    result = label_agreement(labels, clusters)
    # H(label | cluster) = 2/6 * 1 bit (the noise cluster is half a, half b); H(label) = 1 bit
    homogeneity = 1 - 1 / 3
    # H(cluster | label) = H(2/3, 1/3); H(cluster) = log2(3)
    h_cond = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    completeness = 1 - h_cond / math.log2(3)
    # ARI from pair counts: sum C(n_ij, 2) = 2, label pairs 6, cluster pairs 3, all pairs 15
    expected_index = 6 * 3 / 15
    ari = (2 - expected_index) / ((6 + 3) / 2 - expected_index)
    assert result["homogeneity"] == pytest.approx(homogeneity)
    assert result["completeness"] == pytest.approx(completeness)
    assert result["v_measure"] == pytest.approx(2 * homogeneity * completeness / (homogeneity + completeness))
    assert result["ari"] == pytest.approx(ari)
    assert result["nonnoise_v_measure"] == pytest.approx(1.0) and result["nonnoise_ari"] == pytest.approx(1.0)
    assert result["noise_fraction"] == pytest.approx(2 / 6)
    assert result["n_clusters"] == 2


def test_missing_labels_are_excluded_but_counted() -> None:
    labels = pd.Series(["a", "a", None, "b", "b", float("nan")])
    clusters = pd.Series([0, 0, 0, 1, 1, -1])
    result = label_agreement(labels, clusters)
    assert result["n_unlabelled"] == 2 and result["n_items"] == 6 and result["n_labels"] == 2
    assert result["v_measure"] == pytest.approx(1.0)
    assert result["noise_fraction"] == pytest.approx(1 / 6)  # a property of the clustering: all items
    assert all(isinstance(v, int | float) for v in result.values())
    json.dumps(result, allow_nan=False)


def test_all_noise_leaves_nonnoise_scores_undefined() -> None:
    result = label_agreement(pd.Series(list("ab")), pd.Series([-1, -1]))
    assert result["nonnoise_v_measure"] is None
    assert result["noise_fraction"] == 1.0 and result["n_clusters"] == 0
    json.dumps(result, allow_nan=False)


def test_contingency_counts() -> None:
    labels = pd.Series(["b", "a", "a", "a", "b", "c", None])
    clusters = pd.Series([1, 0, 0, -1, 1, -1, 1])
    table = contingency_table(labels, clusters)
    assert table.index.tolist() == ["a", "b", "c"] and table.columns.tolist() == [-1, 0, 1]
    assert table.to_numpy().tolist() == [[1, 2, 0], [0, 0, 2], [1, 0, 0]]


def test_best_cluster_per_label() -> None:
    labels = pd.Series(["a", "a", "a", "b", "b", "b", "c", "c"])
    clusters = pd.Series([0, 0, 1, 1, 1, -1, -1, -1])
    best = best_cluster_per_label(labels, clusters).set_index("label")
    assert best.loc["a"].to_dict() == {"cluster": 0, "n": 3, "purity": 1.0, "recall": pytest.approx(2 / 3)}
    # cluster 1 holds a, b, b
    assert best.loc["b"].to_dict() == {"cluster": 1, "n": 3, "purity": pytest.approx(2 / 3),
                                       "recall": pytest.approx(2 / 3)}
    # c is only in noise (b, c, c)
    assert best.loc["c"].to_dict() == {"cluster": -1, "n": 2, "purity": pytest.approx(2 / 3), "recall": 1.0}
    json.dumps(best.reset_index().to_dict(orient="records"))


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        label_agreement(pd.Series(["a"]), pd.Series([0, 1]))


def test_bootstrap_intervals_bracket_the_score_and_shrink_with_more_items() -> None:
    rng = np.random.default_rng(0)

    def noisy(n: int) -> tuple[pd.Series, pd.Series]:
        labels = rng.integers(0, 3, n)
        clusters = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 3, n))  # 80 % faithful
        return pd.Series(labels.astype(str)), pd.Series(clusters)

    small, large = noisy(100), noisy(3000)
    width = {}
    for name, (labels, clusters) in {"small": small, "large": large}.items():
        intervals = bootstrap_intervals(labels, clusters, n_boot=100, seed=1)
        assert set(intervals) == set(SCORES)
        point = label_agreement(labels, clusters)
        for score in SCORES:
            lo, hi = intervals[score]
            assert lo <= hi
            assert lo - 0.02 <= point[score] <= hi + 0.02  # the bootstrap is biased a little, not more
        width[name] = intervals["v_measure"][1] - intervals["v_measure"][0]
    assert width["large"] < width["small"] / 3  # about 1/sqrt(n): sqrt(30) = 5.5
    assert bootstrap_intervals(pd.Series(["a", None]), pd.Series([0, 0])) == {}
    assert bootstrap_intervals(*small, n_boot=50, seed=3) == bootstrap_intervals(*small, n_boot=50, seed=3)


def test_likely_mislabelled_are_confident_members_of_a_cluster_of_another_label() -> None:
    items = pd.DataFrame({
        "item_id": [f"i{k}" for k in range(12)],
        "label": ["a"] * 9 + ["b", "b", None],
        "cluster": [0] * 5 + [1] * 3 + [-1] + [0, 0, 0],
        "probability": [1.0] * 5 + [1.0, 1.0, 1.0] + [0.0] + [0.95, 0.5, 1.0],
    })
    # cluster 0: a x5, b x2 (+1 unlabelled) -> dominant a, purity 5/7 = 0.71; cluster 1: a x3
    assert likely_mislabelled(items).empty  # 0.71 is below the default purity bar
    flagged = likely_mislabelled(items, min_purity=0.7)
    assert flagged["item_id"].tolist() == ["i9"]  # i10 is a weak member, i11 has no label, i8 is noise
    row = flagged.iloc[0]
    assert (row["label"], row["cluster"], row["cluster_label"]) == ("b", 0, "a")
    assert row["cluster_purity"] == pytest.approx(5 / 7) and row["probability"] == 0.95
    assert likely_mislabelled(items.assign(label=None)).empty
