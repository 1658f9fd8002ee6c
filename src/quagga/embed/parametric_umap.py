"""ParametricUMAP in torch: umap-learn's fuzzy graph, an MLP encoder trained with the UMAP loss.

umap-learn's own ParametricUMAP needs TensorFlow; this one follows it (Sainburg et al. 2021) with a plain
torch loop. A learned encoder (rather than a fixed point cloud) lets new items be placed on an existing map
and makes the map a small file that travels with the results.

The fuzzy graph is umap-learn's arithmetic (``smooth_knn_dist``, ``compute_membership_strengths`` and the
fuzzy union of ``fuzzy_simplicial_set``) written with numpy over all items at once: umap-learn's numba
kernels are compiled in every fresh process (``parallel=True``), 5-9 s per stage on 2 cores, where the
arithmetic itself takes a fraction of a second. umap-learn is imported only for NN-descent on large sets.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
import torch
from scipy.optimize import curve_fit
from sklearn.neighbors import NearestNeighbors
from torch import nn

from quagga.params import EmbedParams

log = logging.getLogger(__name__)

_DIST_EPS = 1e-3  # keeps log(d^2) finite for coincident points (umap-learn's SGD adds it to d^2 too)
_GRAD_CLIP = 4.0  # clip-by-value, as umap-learn's parametric Adam
_TRANSFORM_CHUNK = 65536
# Up to this many items the neighbours are exact (scikit-learn): 20,000 x 32 take about 7 s on 2 busy cores,
# less than NN-descent's numba compile (60-90 s in every fresh process) costs; umap.UMAP switches at 4,096.
# Metrics sklearn knows under the same name and meaning as umap-learn.
_SMOOTH_K_ITERATIONS, _SMOOTH_K_TOLERANCE, _MIN_K_DIST_SCALE = 64, 1e-5, 1e-3  # umap-learn's constants
_FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
_EXACT_KNN_BELOW = 25000
_EXACT_METRICS = frozenset(
    {"euclidean", "l2", "manhattan", "l1", "cityblock", "cosine", "correlation", "chebyshev", "canberra",
     "braycurtis"}
)


@dataclass(frozen=True)
class ParametricUMAPConfig:
    """The constructor arguments of a ParametricUMAP, saved with its weights."""

    n_components: int
    n_neighbors: int
    min_dist: float
    metric: str
    epochs: int
    batch_size: int
    negative_sample_rate: int
    learning_rate: float
    hidden: int
    seed: int
    min_steps: int = 0


Graph = tuple[np.ndarray, np.ndarray, np.ndarray]  # edges: head, tail (int64) and membership strength (float64)
_init_lock = threading.Lock()  # torch's random generator is global: one encoder initialised at a time


def _encoder(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


class Adam:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's defaults and its CPU arithmetic, op for op, so the maps
    are the same bit for bit (tested); without torch.optim's ``Optimizer``, whose first construction imports
    torch._dynamo: about 2 s of every embed process (a tenth of the stage) spent on a compiler it never uses.
    """

    def __init__(self, params: list[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step_size = self.lr / (1 - beta1 ** float(self.steps))
        bias_correction2_sqrt = (1 - beta2 ** float(self.steps)) ** 0.5
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.addcdiv_(exp_avg, (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)


def umap_loss(
    emb_to: torch.Tensor, emb_from: torch.Tensor, neg_index: torch.Tensor, a: float, b: float
) -> torch.Tensor:
    """UMAP fuzzy cross-entropy of positive edges plus in-batch negative samples.

    With t = log(a) + b log(d^2), the low-dimensional similarity is q = 1 / (1 + a d^2b) = sigmoid(-t), so
    attraction -log q = softplus(t) and repulsion -log(1 - q) = softplus(-t): stable for any distance.
    Negatives pair each head with tails drawn from the batch (as umap-learn's parametric loss), so no extra
    encoder pass is needed.
    """
    n_neg = neg_index.shape[0]
    heads = torch.cat([emb_to, emb_to.repeat_interleave(n_neg // emb_to.shape[0], dim=0)])
    tails = torch.cat([emb_from, emb_from[neg_index]])
    t = np.log(a) + b * torch.log((heads - tails).pow(2).sum(dim=1) + _DIST_EPS)
    n_pos = emb_to.shape[0]
    return torch.cat([nn.functional.softplus(t[:n_pos]), nn.functional.softplus(-t[n_pos:])]).mean()


class ParametricUMAP:
    """UMAP whose embedding is an MLP of the (standardised) input, so ``transform`` works on new data.

    The fuzzy graph is built on the raw inputs (standardising would inflate near-constant latent dims,
    e.g. inactive VAE units); only the network sees standardised inputs. Edges are drawn with probability
    proportional to their membership strength; one epoch draws sum(w)/max(w) of them, so an edge is seen
    as often per epoch as in classic UMAP, where an edge of weight w is sampled w/max(w) times an epoch.
    """

    def __init__(  # defaults: the workflow's (EmbedParams), so a model made in code matches the embed stage
        self,
        n_components: int = 2,
        n_neighbors: int = EmbedParams.n_neighbors,
        min_dist: float = EmbedParams.min_dist,
        metric: str = EmbedParams.metric,
        epochs: int = EmbedParams.epochs,
        batch_size: int = EmbedParams.batch_size,
        negative_sample_rate: int = EmbedParams.negative_sample_rate,
        learning_rate: float = EmbedParams.learning_rate,
        hidden: int = EmbedParams.hidden,
        seed: int = EmbedParams.seed,
        min_steps: int = EmbedParams.min_steps,
    ) -> None:
        self.config = ParametricUMAPConfig(
            n_components, n_neighbors, min_dist, metric, epochs, batch_size, negative_sample_rate,
            learning_rate, hidden, seed, min_steps,
        )
        self.a, self.b = (float(v) for v in find_ab_params(1.0, min_dist))
        self.encoder: nn.Sequential | None = None
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.loss_history_: list[float] = []

    def fit(self, X: np.ndarray, graph: Graph | None = None) -> ParametricUMAP:
        """Build the fuzzy k-NN graph of ``X`` (or take ``graph``, :func:`fuzzy_graph`'s of ``X`` with this
        model's n_neighbors, metric and seed) and train the encoder to embed it."""
        cfg = self.config
        X = _checked(X)
        started = time.perf_counter()
        head, tail, weight = fuzzy_graph(X, cfg.n_neighbors, cfg.metric, cfg.seed) if graph is None else graph
        graph_s = time.perf_counter() - started
        std = X.std(axis=0)
        self.mean_, self.std_ = X.mean(axis=0), np.where(std > 0, std, 1.0).astype(np.float32)
        with _init_lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.encoder = _encoder(X.shape[1], cfg.hidden, cfg.n_components)
        threads = torch.get_num_threads()
        # one thread: the encoder's matrices are small, and torch's worker threads spin-waiting for each
        # other made training 10x slower on 2 shared cores (measured, bench/umap_speed.py)
        torch.set_num_threads(1)
        try:
            n_steps = self._train(torch.from_numpy(self._standardise(X)), head, tail, weight)
        finally:
            torch.set_num_threads(threads)
        log.info(
            "ParametricUMAP %d-D: %d items, %d edges; graph %.1f s, %d epochs x %d steps %.1f s; loss %.4f",
            cfg.n_components, len(X), len(head), graph_s, len(self.loss_history_), n_steps,
            time.perf_counter() - started - graph_s,
            self.loss_history_[-1] if self.loss_history_ else float("nan"),
        )
        return self

    def _train(self, inputs: torch.Tensor, head: np.ndarray, tail: np.ndarray, weight: np.ndarray) -> int:
        """Adam on the UMAP loss; edges are drawn for a whole epoch at once (numpy), then fed in batches."""
        cfg = self.config
        optimizer = Adam(list(self.encoder.parameters()), lr=cfg.learning_rate)
        rng = np.random.default_rng(cfg.seed)
        # one epoch draws sum(w)/max(w) edges: on average each edge as often as in one classic UMAP epoch
        per_epoch = max(1, round(weight.sum() / weight.max()))
        batch = min(cfg.batch_size, per_epoch)
        n_steps = max(1, round(per_epoch / batch))
        prob = weight / weight.sum()
        self.encoder.train()
        self.loss_history_ = []
        # a small set gets more passes, so that the network still takes min_steps optimizer steps
        n_epochs = max(cfg.epochs, -(-cfg.min_steps // n_steps))
        for epoch in range(n_epochs):
            edges = rng.choice(len(head), size=(n_steps, batch), p=prob)
            n_neg = batch * cfg.negative_sample_rate
            negatives = torch.from_numpy(rng.integers(0, batch, size=(n_steps, n_neg)))
            heads, tails = torch.from_numpy(head[edges]), torch.from_numpy(tail[edges])
            total = torch.zeros(())
            for step in range(n_steps):
                emb = self.encoder(inputs[torch.cat([heads[step], tails[step]])])
                loss = umap_loss(emb[:batch], emb[batch:], negatives[step], self.a, self.b)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_value_(self.encoder.parameters(), _GRAD_CLIP)
                optimizer.step()
                total += loss.detach()
            self.loss_history_.append(float(total) / n_steps)
            log.debug("epoch %d/%d: loss %.4f", epoch + 1, n_epochs, self.loss_history_[-1])
        self.encoder.eval()
        return n_steps

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Embed ``X`` (seen in fit or not) with the trained encoder."""
        if self.encoder is None:
            raise RuntimeError("ParametricUMAP is not fitted: call fit() or load() first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.mean_):
            raise ValueError(f"expected an array of shape (n, {len(self.mean_)}), got {X.shape}")
        inputs = torch.from_numpy(self._standardise(X))
        with torch.inference_mode():
            out = [self.encoder(chunk) for chunk in inputs.split(_TRANSFORM_CHUNK)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.n_components), np.float32)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """Fit on ``X`` and return its embedding."""
        return self.fit(X).transform(X)

    def save(self, path: str | Path) -> None:
        """Write config, standardisation and weights as a plain dict (loadable with weights_only=True)."""
        if self.encoder is None:
            raise RuntimeError("ParametricUMAP is not fitted: nothing to save")
        state: dict[str, Any] = {
            "config": asdict(self.config),
            "mean": torch.from_numpy(self.mean_),
            "std": torch.from_numpy(self.std_),
            "n_features": len(self.mean_),
            "encoder": self.encoder.state_dict(),
            "loss_history": list(self.loss_history_),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> ParametricUMAP:
        """Rebuild a fitted model from :meth:`save`'s file."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**state["config"])
        model.mean_ = state["mean"].numpy()
        model.std_ = state["std"].numpy()
        model.encoder = _encoder(state["n_features"], model.config.hidden, model.config.n_components)
        model.encoder.load_state_dict(state["encoder"])
        model.encoder.eval()
        model.loss_history_ = list(state["loss_history"])
        return model

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.std_).astype(np.float32)


def _checked(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise ValueError(f"ParametricUMAP needs a 2-D array of at least 3 items, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("ParametricUMAP input contains NaN or infinite values")
    return X


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """umap-learn's ``find_ab_params``: the curve 1 / (1 + a d^(2b)) fitted to the offset exponential decay
    with ``spread`` and ``min_dist`` that the low-dimensional similarities should follow."""
    def curve(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return 1.0 / (1.0 + a * x ** (2 * b))

    xv = np.linspace(0, spread * 3, 300)
    yv = np.zeros(xv.shape)
    yv[xv < min_dist] = 1.0
    yv[xv >= min_dist] = np.exp(-(xv[xv >= min_dist] - min_dist) / spread)
    params, _ = curve_fit(curve, xv, yv)
    return params[0], params[1]


def _exp32(x: np.ndarray) -> np.ndarray:
    """exp of float32 values, rounded from float64: the same on every CPU (numpy's float32 exp depends on the
    SIMD path taken), and within an ulp of umap-learn's numba exp (which matches neither bit for bit)."""
    with np.errstate(over="ignore"):  # where the caller takes 1 instead (distances within rho)
        return np.exp(x.astype(np.float64)).astype(np.float32)


def smooth_knn_dist(knn_dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """umap-learn's ``smooth_knn_dist`` (local connectivity 1, bandwidth 1) for every row at once: per item,
    rho (its nearest non-zero distance) and sigma (found by bisection, so that its neighbours' memberships
    sum to log2 k). The same float32 steps in the same order, but for the exponential (see :func:`_exp32`),
    so sigma agrees with umap-learn's within about 1e-5 (a row's bisection may stop a step apart)."""
    dist = np.ascontiguousarray(knn_dist, dtype=np.float32)
    n, k = dist.shape
    target = np.log2(float(k))
    positive = dist > 0
    first = positive.argmax(axis=1)
    rho = np.where(positive.any(axis=1), dist[np.arange(n), first], np.float32(0)).astype(np.float32)
    lo = np.zeros(n, np.float32)
    hi = np.full(n, _FLOAT32_MAX, np.float32)
    mid = np.ones(n, np.float32)
    active = np.ones(n, bool)
    for _ in range(_SMOOTH_K_ITERATIONS):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        d_rows, rho_rows, mid_rows = dist[rows], rho[rows], mid[rows]
        psum = np.zeros(len(rows), np.float32)
        for j in range(1, k):  # column by column: umap-learn's order of the float32 sum
            d = d_rows[:, j] - rho_rows
            psum += np.where(d > 0, _exp32(-(d / mid_rows)), np.float32(1.0))
        done = np.abs(psum.astype(np.float64) - target) < _SMOOTH_K_TOLERANCE
        above = (psum > target) & ~done
        below = ~above & ~done
        hi[rows[above]] = mid_rows[above]
        lo[rows[below]] = mid_rows[below]
        doubling = below & (hi[rows] >= _FLOAT32_MAX)
        halving = (above | below) & ~doubling
        mid[rows[doubling]] = mid_rows[doubling] * np.float32(2)
        mid[rows[halving]] = ((lo[rows[halving]] + hi[rows[halving]]) / np.float32(2)).astype(np.float32)
        active[rows[done]] = False
    floor = np.where(rho > 0, dist.mean(axis=1, dtype=np.float32), dist.mean(dtype=np.float32)) * _MIN_K_DIST_SCALE
    sigma = np.where(mid < floor, floor, mid).astype(np.float32)
    return sigma, rho


def fuzzy_graph(X: np.ndarray, n_neighbors: int, metric: str, seed: int) -> Graph:
    """Edges (head, tail, weight) of umap-learn's fuzzy simplicial set of ``X`` (see the module's note). It does
    not depend on min_dist or the output dimension, so the 2-D and the n-D maps of the same items share it."""
    X = _checked(X)
    k = min(n_neighbors, len(X) - 1)
    if k < n_neighbors:
        log.warning("only %d items: n_neighbors lowered from %d to %d", len(X), n_neighbors, k)
    if len(X) < _EXACT_KNN_BELOW and metric in _EXACT_METRICS:
        knn_dist, knn_idx = NearestNeighbors(n_neighbors=k, metric=metric).fit(X).kneighbors(X)
    else:
        from umap.umap_ import nearest_neighbors

        # n_jobs=1 makes NN-descent deterministic for a given random_state (as umap.UMAP does)
        knn_idx, knn_dist, _ = nearest_neighbors(X, k, metric, {}, False, np.random.RandomState(seed), n_jobs=1)
    knn_dist = knn_dist.astype(np.float32)
    sigma, rho = smooth_knn_dist(knn_dist)
    # compute_membership_strengths: exp(-(d - rho) / sigma), 1 within rho, 0 to the item itself
    over = knn_dist - rho[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # sigma 0: the value is 1 below
        vals = _exp32(-(over / sigma[:, None]))
    vals = np.where((over <= 0) | (sigma[:, None] == 0), np.float32(1.0), vals).astype(np.float32)
    vals[(knn_idx == np.arange(len(X))[:, None]) | (knn_idx < 0)] = 0.0  # itself; -1: a neighbour not found
    n = len(X)
    tails = np.where(knn_idx < 0, 0, knn_idx).ravel()
    result = scipy.sparse.coo_matrix((vals.ravel(), (np.repeat(np.arange(n), k), tails)), shape=(n, n))
    result.eliminate_zeros()
    transpose = result.transpose()
    product = result.multiply(transpose)
    result = result + transpose - product  # the fuzzy union (umap-learn's set_op_mix_ratio 1)
    result.eliminate_zeros()
    graph = scipy.sparse.coo_matrix(result)
    graph.sum_duplicates()
    keep = graph.data > 0
    return graph.row[keep].astype(np.int64), graph.col[keep].astype(np.int64), graph.data[keep].astype(np.float64)


def latent_matrix(latents: pd.DataFrame) -> np.ndarray:
    z_cols = [c for c in latents.columns if c.startswith("z_")]
    if not z_cols:
        raise ValueError(f"latents table has no z_* columns (columns: {list(latents.columns)})")
    return latents[z_cols].to_numpy(dtype=np.float32)


def _umap(params: EmbedParams, n_components: int, min_dist: float) -> ParametricUMAP:
    return ParametricUMAP(
        n_components=n_components, min_dist=min_dist, n_neighbors=params.n_neighbors, metric=params.metric,
        epochs=params.epochs, batch_size=params.batch_size, negative_sample_rate=params.negative_sample_rate,
        learning_rate=params.learning_rate, hidden=params.hidden, seed=params.seed, min_steps=params.min_steps,
    )


def cluster_space(latents: pd.DataFrame, params: EmbedParams, graph: Graph | None = None
                  ) -> tuple[pd.DataFrame, ParametricUMAP]:
    """Only the ``cluster_dims``-D map (min_dist ``cluster_min_dist``): item_id and u_* columns, and the model.

    What HDBSCAN clusters; refit alone e.g. with other seeds to measure how stable the clusters are.
    """
    X = latent_matrix(latents)
    model = _umap(params, params.cluster_dims, params.cluster_min_dist).fit(X, graph)
    u = model.transform(X)
    table = pd.DataFrame({"item_id": latents["item_id"].to_numpy()})
    for i in range(u.shape[1]):
        table[f"u_{i}"] = u[:, i]
    return table, model


def cluster_map_name(cluster_dims: int) -> str:
    """File name of the n-D map HDBSCAN clusters in (never the 2-D map's, even with cluster_dims 2)."""
    return f"umap_cluster_{cluster_dims}d.pt"


def embed_latents(
    latents: pd.DataFrame, params: EmbedParams, workers: int = 1
) -> tuple[pd.DataFrame, ParametricUMAP, ParametricUMAP]:
    """Fit a 2-D map (for plots) and a ``cluster_dims``-D map (for HDBSCAN) on the ``z_*`` columns.

    Clustering runs in more dimensions with min_dist ~0 because a 2-D map squeezes clusters together and
    a positive min_dist spreads them out; the 2-D map is for the eye only. Both are fitted on one fuzzy
    graph; with ``workers`` >= 2 side by side, in two threads of one torch thread each (the same arithmetic
    as one after the other, so the same maps).
    """
    X = latent_matrix(latents)
    graph = fuzzy_graph(X, params.n_neighbors, params.metric, params.seed)
    fit2d = _umap(params, 2, params.min_dist).fit
    if workers >= 2:  # both threads on one torch thread from start to end (a fit restores what it found)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                future = pool.submit(fit2d, X, graph)
                space, map_nd = cluster_space(latents, params, graph)
                map2d = future.result()
        finally:
            torch.set_num_threads(threads)
    else:
        map2d = fit2d(X, graph)
        space, map_nd = cluster_space(latents, params, graph)
    xy = map2d.transform(X)
    table = pd.DataFrame({"item_id": latents["item_id"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    return pd.concat([table, space.drop(columns="item_id")], axis=1), map2d, map_nd
