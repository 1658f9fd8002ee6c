"""ParametricUMAP (torch) on separated Gaussian blobs: quality, new data, persistence, seeding."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import umap
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness
from sklearn.metrics import v_measure_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from quagga.embed.cluster import cluster_embedding
from quagga.embed.parametric_umap import Adam, ParametricUMAP, embed_latents, latent_matrix, umap_loss
from quagga.params import ClusterParams, EmbedParams


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small MLPs gain little from intra-op threads, and on a busy machine OpenMP threads slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """5 blobs in 32-D: 800 points to fit, 200 held out."""
    X, y = make_blobs(n_samples=1000, n_features=32, centers=5, cluster_std=2.0, random_state=0)
    return X[:800], y[:800], X[800:], y[800:]


@pytest.fixture(scope="module")
def fitted(blobs: tuple[np.ndarray, ...]) -> ParametricUMAP:
    return ParametricUMAP(seed=0).fit(blobs[0])


def _knn_accuracy(E: np.ndarray, y: np.ndarray) -> float:
    return float(cross_val_score(KNeighborsClassifier(10), E, y, cv=5).mean())


def test_embedding_preserves_neighbourhoods(fitted: ParametricUMAP, blobs: tuple[np.ndarray, ...]) -> None:
    X, y = blobs[0], blobs[1]
    E = fitted.transform(X)
    assert E.shape == (800, 2) and E.dtype == np.float32
    assert trustworthiness(X, E, n_neighbors=10) >= 0.9
    assert _knn_accuracy(E, y) >= 0.95
    assert fitted.loss_history_[-1] < fitted.loss_history_[0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # umap-learn: seed forces n_jobs=1; blobs are disconnected
def test_close_to_umap_learn(fitted: ParametricUMAP, blobs: tuple[np.ndarray, ...]) -> None:
    X = blobs[0]
    ours = trustworthiness(X, fitted.transform(X), n_neighbors=10)
    reference = trustworthiness(X, umap.UMAP(random_state=0).fit_transform(X), n_neighbors=10)
    assert ours >= reference - 0.05


def test_transform_places_new_points_near_their_blob(
    fitted: ParametricUMAP, blobs: tuple[np.ndarray, ...]
) -> None:
    X, y, X_new, y_new = blobs
    knn = KNeighborsClassifier(10).fit(fitted.transform(X), y)
    assert knn.score(fitted.transform(X_new), y_new) >= 0.9


def test_save_load_round_trip(fitted: ParametricUMAP, blobs: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    path = tmp_path / "models" / "umap_2d.pt"
    fitted.save(path)
    state = torch.load(path, weights_only=True)  # a plain dict of tensors and config: no pickled classes
    assert state["config"]["n_components"] == 2
    loaded = ParametricUMAP.load(path)
    np.testing.assert_array_equal(loaded.transform(blobs[2]), fitted.transform(blobs[2]))
    assert loaded.config == fitted.config


def test_same_seed_same_embedding_other_seed_differs() -> None:
    X, _ = make_blobs(n_samples=300, n_features=8, centers=3, random_state=1)
    runs = [ParametricUMAP(epochs=3, seed=s).fit_transform(X) for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_fit_leaves_global_torch_rng_alone() -> None:
    X, _ = make_blobs(n_samples=100, n_features=4, centers=2, random_state=2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ParametricUMAP(epochs=1, seed=0).fit(X)
    torch.testing.assert_close(torch.rand(3), expected)


def test_transform_rejects_wrong_width(fitted: ParametricUMAP) -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        fitted.transform(np.zeros((4, 5)))
    with pytest.raises(RuntimeError, match="not fitted"):
        ParametricUMAP().transform(np.zeros((4, 5)))


def test_adam_is_torchs_adam_bit_for_bit() -> None:
    """The encoder's optimizer: torch.optim.Adam's arithmetic, parameters identical after 60 steps of the UMAP
    loss on an encoder like the map's (the learning rate of the embed stage, and a tiny one)."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 32, generator=gen)
    negatives = torch.randint(0, 128, (640,), generator=gen)
    for lr in (1e-2, 1e-5):
        runs = []
        for make in (torch.optim.Adam, Adam):
            torch.manual_seed(1)
            net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
            optimizer = make(list(net.parameters()), lr=lr)
            for _ in range(60):
                emb = net(inputs)
                loss = umap_loss(emb[:128], emb[128:], negatives, 1.58, 0.9)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_value_(net.parameters(), 4.0)
                optimizer.step()
            runs.append([p.detach().clone() for p in net.parameters()])
        for ours, torchs in zip(runs[1], runs[0], strict=True):
            assert torch.equal(ours, torchs)


def test_a_fit_does_not_import_the_compiler() -> None:
    """torch.optim's Optimizer imports torch._dynamo (seconds) on construction; the map's fit needs none."""
    code = ("import sys, numpy as np; from quagga.embed.parametric_umap import ParametricUMAP; "
            "ParametricUMAP(epochs=1, min_steps=2).fit(np.random.default_rng(0).normal(size=(60, 4))); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_umap_loss_attracts_edges_and_repels_negatives() -> None:
    a, b = 1.577, 0.895  # find_ab_params(1.0, 0.1)
    near, far = torch.zeros(4, 2), torch.full((4, 2), 10.0)
    no_neg = torch.zeros(0, dtype=torch.long)
    # positives only: cost grows with distance; softplus(log a + b log(d^2 + eps)) at d = 0
    assert umap_loss(near, near, no_neg, a, b) == pytest.approx(np.log1p(a * 1e-3**b), rel=1e-4)
    assert umap_loss(near, far, no_neg, a, b) > umap_loss(near, near, no_neg, a, b)
    # one positive pair plus one negative drawn from the same (coincident) batch: repulsion dominates
    assert umap_loss(near[:1], near[:1], torch.zeros(1, dtype=torch.long), a, b) > 1.0


def test_embed_latents_table_and_clusters() -> None:
    X, y = make_blobs(n_samples=400, n_features=16, centers=4, cluster_std=1.5, random_state=3)
    latents = pd.DataFrame(X, columns=[f"z_{i}" for i in range(16)])
    latents.insert(0, "item_id", [f"item{i}" for i in range(400)])
    params = EmbedParams(cluster_dims=3, epochs=10, seed=0)
    table, map2d, map_nd = embed_latents(latents, params)
    assert list(table.columns) == ["item_id", "x", "y", "u_0", "u_1", "u_2"]
    assert table["item_id"].tolist() == latents["item_id"].tolist()
    assert map2d.config.min_dist == params.min_dist and map_nd.config.min_dist == params.cluster_min_dist
    np.testing.assert_array_equal(table[["u_0", "u_1", "u_2"]].to_numpy(), map_nd.transform(X))
    clusters, _ = cluster_embedding(table, ClusterParams(min_cluster_size=0.1))
    assert v_measure_score(y, clusters["cluster"]) >= 0.95
    # the two maps fitted side by side (two threads) are the maps fitted one after the other, bit for bit;
    # each alone on the shared fuzzy graph is the map fitted on its own graph
    side_by_side, _, _ = embed_latents(latents, params, workers=2)
    pd.testing.assert_frame_equal(side_by_side, table, check_exact=True)
    z = latent_matrix(latents)  # float32, in the DataFrame's memory order (BLAS sums follow it)
    alone = ParametricUMAP(n_components=2, min_dist=params.min_dist, epochs=10, seed=0).fit(z)
    np.testing.assert_array_equal(alone.transform(z), table[["x", "y"]].to_numpy())


def test_embed_latents_needs_z_columns() -> None:
    with pytest.raises(ValueError, match="no z_"):
        embed_latents(pd.DataFrame({"item_id": ["a"], "x": [1.0]}), EmbedParams())


def test_transform_many_new_points_in_pieces_equals_at_once(fitted: ParametricUMAP) -> None:
    """10,000 new items (bench/umap_speed.py times this: <= 1 s on CPU) map as they would one piece at a time."""
    X_new = np.random.default_rng(3).normal(0, 3, size=(10_000, 32))
    whole = fitted.transform(X_new)
    assert whole.shape == (10_000, 2) and whole.dtype == np.float32 and np.isfinite(whole).all()
    np.testing.assert_allclose(np.vstack([fitted.transform(X_new[:4000]), fitted.transform(X_new[4000:])]), whole,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data", ["scales", "duplicates"])
def test_fuzzy_graph_is_umap_learns_within_float32_rounding(data: str) -> None:
    """The numpy fuzzy graph has umap-learn's edges and weights (within 1e-5: the exponentials are rounded from
    float64, umap-learn's numba ones are not exact), also with coincident points (zero distances, rho 0)."""
    import scipy.sparse
    from sklearn.neighbors import NearestNeighbors
    from umap.umap_ import find_ab_params as umap_ab
    from umap.umap_ import fuzzy_simplicial_set

    from quagga.embed.parametric_umap import find_ab_params, fuzzy_graph

    rng = np.random.default_rng(0)
    if data == "scales":  # features from 0.01 to 100 across
        X = (rng.standard_normal((1500, 8)) * rng.uniform(0.01, 100, 8)).astype(np.float32)
    else:
        X = rng.standard_normal((400, 5)).astype(np.float32)
        X[100:150], X[200:203] = X[0], X[5]
    dist, idx = NearestNeighbors(n_neighbors=15).fit(X).kneighbors(X)
    expected, _, _ = fuzzy_simplicial_set(X, 15, np.random.RandomState(0), "euclidean", knn_indices=idx,
                                          knn_dists=dist.astype(np.float32))
    expected = scipy.sparse.coo_matrix(expected)
    expected.sum_duplicates()
    head, tail, weight = fuzzy_graph(X, 15, "euclidean", seed=0)
    keep = expected.data > 0
    np.testing.assert_array_equal(head, expected.row[keep])
    np.testing.assert_array_equal(tail, expected.col[keep])
    np.testing.assert_allclose(weight, expected.data[keep], rtol=0, atol=1e-5)
    assert weight.min() > 0 and weight.max() <= 1
    assert all(umap_ab(1.0, d) == find_ab_params(1.0, d) for d in (0.0, 0.1, 0.5))
