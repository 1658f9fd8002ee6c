"""HDBSCAN on an embedding table: recovery of blobs, sizes, noise assignment, prediction, tiny inputs."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, v_measure_score

from quagga.embed.cluster import (
    REFINE_MIN_DBCV,
    _candidates,
    cluster_embedding,
    embedding_columns,
    most_supported,
    other_granularity,
    place,
    predict_new,
    refine_clusters,
    refit_refinements,
    resolve_min_cluster_size,
    soft_membership,
)
from quagga.params import ClusterParams


def _table(X: np.ndarray, prefix: str = "item") -> pd.DataFrame:
    table = pd.DataFrame(X, columns=[f"u_{i}" for i in range(X.shape[1])])
    table.insert(0, "item_id", [f"{prefix}{i}" for i in range(len(X))])
    return table


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """5 tight blobs in 5-D plus 50 points of uniform background (noise candidates); labels -1 for those."""
    X, y = make_blobs(n_samples=1000, n_features=5, centers=5, cluster_std=0.5, random_state=0)
    background = np.random.default_rng(0).uniform(-15, 15, size=(50, 5))
    return np.vstack([X, background]), np.concatenate([y, np.full(50, -1)])


def test_recovers_blobs_with_fraction_min_cluster_size(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = blobs
    table, model = cluster_embedding(_table(X), ClusterParams(min_cluster_size=0.05))
    assert list(table.columns) == ["item_id", "cluster", "probability", "outlier_score"]
    assert model is not None and model.min_cluster_size == 53  # ceil(0.05 * 1050)
    in_blob = y >= 0
    assert v_measure_score(y[in_blob], table["cluster"][in_blob]) >= 0.95
    assert table["cluster"].max() == 4
    # background points are mostly noise and score as outliers
    assert (table["cluster"][~in_blob] == -1).mean() >= 0.8
    assert table["outlier_score"][~in_blob].mean() > table["outlier_score"][in_blob].mean()
    assert table["probability"].between(0, 1).all()


def test_resolve_min_cluster_size() -> None:
    assert resolve_min_cluster_size(0.02, 1000) == 20
    assert resolve_min_cluster_size(0.001, 100) == 2  # a fraction never goes below 2
    assert resolve_min_cluster_size(15, 1000) == 15
    assert resolve_min_cluster_size(1, 1000) == 2
    with pytest.raises(ValueError, match="positive"):
        resolve_min_cluster_size(0, 10)


def test_assign_noise_keeps_cluster_column(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = blobs
    plain, _ = cluster_embedding(_table(X), ClusterParams(min_cluster_size=0.05))
    assigned, _ = cluster_embedding(_table(X), ClusterParams(min_cluster_size=0.05, assign_noise=True))
    pd.testing.assert_series_equal(assigned["cluster"], plain["cluster"])
    noise = assigned["cluster"] == -1
    assert noise.sum() > 0
    assert (assigned["assigned_cluster"] >= 0).all()
    assert (assigned["assigned_cluster"][~noise] == assigned["cluster"][~noise]).all()


def test_predict_new_points_join_their_blob() -> None:
    X, y = make_blobs(n_samples=600, n_features=5, centers=4, cluster_std=0.5, random_state=1)
    table, model = cluster_embedding(_table(X[:500]), ClusterParams(min_cluster_size=20))
    assert model is not None
    blob_of_cluster = pd.crosstab(table["cluster"], y[:500]).idxmax(axis=1)  # cluster id -> blob id
    new = predict_new(model, _table(X[500:], prefix="new"))
    assert list(new.columns) == ["item_id", "cluster", "probability", "outlier_score"]
    assert new["item_id"].iloc[0] == "new0"
    predicted_blob = new["cluster"].map(blob_of_cluster)
    assert (predicted_blob.to_numpy() == y[500:]).mean() >= 0.95
    with pytest.raises(ValueError, match="5 embedding dims"):
        predict_new(model, _table(X[500:, :3]))


def test_tiny_input_is_all_noise(caplog: pytest.LogCaptureFixture) -> None:
    X = np.random.default_rng(0).normal(size=(5, 3))
    with caplog.at_level(logging.WARNING, logger="quagga.embed.cluster"):
        table, model = cluster_embedding(_table(X), ClusterParams(min_cluster_size=10, assign_noise=True))
    assert model is None
    assert (table["cluster"] == -1).all() and (table["assigned_cluster"] == -1).all()
    assert (table["probability"] == 0).all() and table["outlier_score"].isna().all()
    assert "every item is noise" in caplog.text
    # min_samples larger than the data would crash hdbscan's neighbour query
    table, model = cluster_embedding(_table(X), ClusterParams(min_cluster_size=2, min_samples=8))
    assert model is None and (table["cluster"] == -1).all()


def test_no_cluster_found_assigns_nothing() -> None:
    X = np.random.default_rng(0).uniform(size=(40, 2))
    table, model = cluster_embedding(_table(X), ClusterParams(min_cluster_size=30, assign_noise=True))
    assert model is not None
    assert (table["cluster"] == -1).all() and (table["assigned_cluster"] == -1).all()


def test_embedding_columns_in_numeric_order() -> None:
    names = ["u_10", "u_2", "u_0", "u_1", *(f"u_{i}" for i in range(3, 10))]
    table = pd.DataFrame(columns=["item_id", "x", *names])
    assert embedding_columns(table) == [f"u_{i}" for i in range(11)]
    with pytest.raises(ValueError, match="no u_"):
        embedding_columns(pd.DataFrame(columns=["item_id", "x", "y"]))


def test_label_free_selection_prefers_the_valid_clustering() -> None:
    """Two blobs of two tight sub-blobs each: a tiny min_cluster_size splits them into four; DBCV, not the
    labels, decides; the choice and every candidate's scores are recorded, noise-heavy candidates lose."""
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [0.6, 0], [20, 0], [20.6, 0]], dtype=float)
    X = np.vstack([c + rng.normal(0, 0.15, size=(150, 2)) for c in centres])
    params = ClusterParams(min_cluster_size=[10, 200], min_samples=[None], cluster_selection_method=["eom", "leaf"])
    table, model = cluster_embedding(_table(X), params)
    selection = table.attrs["selection"]
    rows = selection["candidates"]
    assert len(rows) == 4 and {"dbcv", "n_clusters", "noise_fraction"} <= set(rows[0])
    best = max((r for r in rows if r["noise_fraction"] <= 0.05), key=lambda r: r["dbcv"])
    assert selection["selected"]["min_cluster_size"] == best["min_cluster_size"]
    assert model.min_cluster_size == best["min_cluster_size"]
    assert table["cluster"].max() + 1 == best["n_clusters"]
    assert (table["cluster"] == -1).mean() <= 0.05


def test_the_grouping_most_valid_candidates_reproduce_is_kept() -> None:
    """Six groups of 100 items, paired: a coarse labeling (3 pairs) and a fine one (6 groups). One candidate
    finds the coarse one at DBCV 0.40, three find the fine one at 0.35: the fine one has the support (DBCV's
    maximum alone would flip to the lone coarse candidate). One coarse candidate far more valid than three
    fine ones (0.86 against 0.21) keeps it; a candidate outside the noise cap neither competes nor votes."""
    fine = np.repeat(np.arange(6), 100)
    coarse = fine // 2

    def rows_of(dbcvs: list[float]) -> list[dict]:
        return [_row(10 * (i + 1), "eom", d, 3 if i == 0 else 6) for i, d in enumerate(dbcvs)]

    labels = [coarse, fine, fine.copy(), fine.copy()]
    rows = rows_of([0.40, 0.35, 0.35, 0.35])
    assert most_supported(rows, labels, [0, 1, 2, 3]) in (1, 2, 3)
    assert rows[1]["support"] == pytest.approx(3 * 0.35 + 0.40 * adjusted_rand_score(fine, coarse), abs=1e-4)
    rows = rows_of([0.86, 0.21, 0.21, 0.21])
    assert most_supported(rows, labels, [0, 1, 2, 3]) == 0
    rows = rows_of([0.40, 0.35, 0.35, 0.35])
    assert most_supported(rows, labels, [0, 1]) == 0 and rows[2]["support"] is None  # too noisy: no vote
    tied = rows_of([0.30, 0.35])  # equal support: the higher DBCV
    assert most_supported(tied, [fine, fine.copy()], [0, 1]) == 1


def test_single_setting_skips_selection(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = blobs
    table, model = cluster_embedding(
        _table(X), ClusterParams(min_cluster_size=0.05, min_samples=None, cluster_selection_method="eom")
    )
    assert table.attrs["selection"]["candidates"] == []
    assert table.attrs["selection"]["selected"] == {
        "min_cluster_size": 53, "min_samples": None, "cluster_selection_method": "eom"
    }


def test_noise_beyond_the_cap_goes_to_the_most_likely_cluster(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    """Leaf selection leaves the background as noise; over max_noise_fraction, each noise point is given its
    most likely cluster, the raw noise is recorded, and the blobs stay as they were."""
    X, y = blobs
    params = ClusterParams(min_cluster_size=[0.05, 0.1], min_samples=[None], cluster_selection_method=["leaf"],
                           max_noise_fraction=0.0)
    table, model = cluster_embedding(_table(X), params)
    selection = table.attrs["selection"]
    raw = model.labels_
    assert (raw == -1).any() and (table["cluster"] >= 0).all()
    assert selection["noise_assigned"] == pytest.approx(float(np.mean(raw == -1)), abs=1e-4)
    kept = raw >= 0
    np.testing.assert_array_equal(table["cluster"].to_numpy()[kept], raw[kept])
    assert v_measure_score(y[:1000], table["cluster"].to_numpy()[:1000]) > 0.95
    alone, alone_model = cluster_embedding(_table(X), ClusterParams(min_cluster_size=0.05, min_samples=None,
                                                                   cluster_selection_method="leaf",
                                                                   max_noise_fraction=0.0))
    assert (alone["cluster"] == -1).sum() == (alone_model.labels_ == -1).sum() > 0  # one setting: kept as is


def _row(size: int, method: str, dbcv: float, n_clusters: int, noise: float = 0.01) -> dict:
    return {"min_cluster_size": size, "min_samples": None, "cluster_selection_method": method, "dbcv": dbcv,
            "n_clusters": n_clusters, "noise_fraction": noise}


def test_other_granularity_is_named_only_when_about_as_valid_and_really_different() -> None:
    """6 against 19 clusters at nearly the same DBCV is the case to report; 13 against 14 is not another
    granularity, and a much worse DBCV is not a rival."""
    chosen = {"min_cluster_size": 40, "min_samples": None, "cluster_selection_method": "eom"}
    fine = _row(10, "leaf", 0.58, 19)
    rows = [_row(40, "eom", 0.60, 6), fine, _row(20, "eom", 0.59, 7), _row(5, "leaf", 0.30, 40)]
    assert other_granularity(rows, chosen) == fine
    assert other_granularity([rows[0], rows[2], rows[3]], chosen) is None
    noisy = _row(10, "leaf", 0.62, 19, noise=0.2)  # its noise would be assigned: still a rival
    assert other_granularity([rows[0], noisy], chosen) == noisy


def test_selection_records_no_other_granularity_when_one_grouping_clearly_wins() -> None:
    """Two far groups of three close blobs: DBCV rates the 2 groups far above the 6 blobs (0.86 against
    0.21), so the record names no rival; the selection is written with the table either way."""
    rng = np.random.default_rng(3)
    centres = [(gx + dx, 0.0) for gx in (0.0, 30.0) for dx in (0.0, 1.5, 3.0)]
    X = np.vstack([np.array(c) + rng.normal(0, 0.2, size=(100, 2)) for c in centres])
    params = ClusterParams(min_cluster_size=[20, 250], min_samples=[None], cluster_selection_method=["eom", "leaf"])
    table, _ = cluster_embedding(_table(X), params)
    selection = table.attrs["selection"]
    assert table["cluster"].max() + 1 == 2 and {r["n_clusters"] for r in selection["candidates"]} == {2, 6}
    assert selection["other_granularity"] is None


def test_a_large_set_is_clustered_in_this_process_alone() -> None:
    """Above 16,384 items hdbscan's default starts joblib worker processes; the cluster rule holds one core."""
    import psutil

    X, _ = make_blobs(n_samples=17000, n_features=3, centers=4, random_state=0)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    table, _ = cluster_embedding(_table(X), ClusterParams(min_cluster_size=0.05))
    assert table["cluster"].max() >= 1
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_soft_membership_of_new_items_does_not_depend_on_their_memory_order() -> None:
    """hdbscan's membership_vector misreads a column-major array (what a DataFrame's to_numpy gives):
    the training points' own vectors must agree with the fit's soft clustering either way."""
    import hdbscan

    X, _ = make_blobs(n_samples=300, n_features=2, centers=3, random_state=0)
    model = hdbscan.HDBSCAN(min_cluster_size=8, cluster_selection_method="leaf", prediction_data=True).fit(X)
    fit = hdbscan.all_points_membership_vectors(model).argmax(axis=1)
    for order in (np.ascontiguousarray(X), np.asfortranarray(X)):
        assert np.mean(soft_membership(model, order).argmax(axis=1) == fit) >= 0.99


def _groups(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One blob (class 0) far from a ring of six separate blobs (classes 1-6): items, classes, and the
    two-cluster labeling excess of mass gives when one group stands apart (the blob, the ring)."""
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    centres = [(0.0, 0.0)] + [(100 + 3 * np.cos(a), 3 * np.sin(a)) for a in angles]
    X = np.vstack([np.array(c) + rng.normal(0, 0.2, size=(n, 2)) for c in centres])
    y = np.repeat(np.arange(7), n)
    return X, y, np.minimum(y, 1)


def test_a_cluster_holding_clearly_valid_sub_clusters_is_split_and_new_items_follow() -> None:
    """The ring's six blobs are found by a selection on its items alone; the lone blob is not split; the
    record refits the same clusters, and new items land in the sub-clusters of their blob."""
    import json

    X, y, top = _groups(np.random.default_rng(0), 150)
    refined = refine_clusters(X, top, _candidates(ClusterParams(), len(X)), 0.05)
    assert list(refined) == [1] and refined[1].n_clusters == 6 and refined[1].dbcv >= REFINE_MIN_DBCV
    final = place(X, top, 2, refined)
    assert final.max() + 1 == 7 and (final[y == 0] == 0).all()
    assert v_measure_score(y, final) > 0.95
    records = json.loads(json.dumps({str(c): node.record() for c, node in refined.items()}))
    np.testing.assert_array_equal(place(X, top, 2, refit_refinements(X, top, records)), final)
    X_new, y_new, top_new = _groups(np.random.default_rng(1), 20)
    placed = place(X_new, top_new, 2, refined, fitted=False)
    assert v_measure_score(y_new, placed) > 0.95
    assert {int(final[(y == k)][0]) for k in range(7)} == set(range(7))  # same ids as the fit's classes
    assert all(np.mean(placed[y_new == k] == final[y == k][0]) >= 0.9 for k in range(7))


def test_a_cluster_without_sub_structure_is_kept_whole() -> None:
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(0, 0.2, size=(150, 2)), rng.normal(0, 1.0, size=(900, 2)) + 100])
    top = np.repeat([0, 1], [150, 900])
    assert refine_clusters(X, top, _candidates(ClusterParams(), len(X)), 0.05) == {}


def test_a_minority_cluster_is_not_offered_for_a_split() -> None:
    """Where excess of mass already separated the groups, a cluster's finer structure is left alone: the
    same ring of six blobs beside a blob holding more items than the ring is not split."""
    X, _, top = _groups(np.random.default_rng(3), 100)
    X = np.vstack([X, np.random.default_rng(4).normal(0, 0.2, size=(700, 2))])  # the blob: 800 of 1,400
    top = np.concatenate([top, np.zeros(700, dtype=top.dtype)])
    assert refine_clusters(X, top, _candidates(ClusterParams(), len(X)), 0.05) == {}
