"""HDBSCAN on the n-D embedding: clusters, membership strength, GLOSH outlier scores, soft assignment.

HDBSCAN leaves points that belong to no dense region as noise (-1) instead of forcing them into a cluster;
that is the honest answer for odd calls or debris. When a hard assignment is still wanted, noise points get
their most likely cluster in a separate column, so the two answers are never confused.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import hdbscan
import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from quagga.params import ClusterParams

log = logging.getLogger(__name__)
# DBCV (in [-1, 1]) this close to the chosen candidate counts as "about as valid"
GRANULARITY_DBCV_TOLERANCE = 0.05
# a cluster holding most of the items is split again where they hold sub-clusters at least this valid (DBCV),
# at most this deep. Measured, the best sub-clustering of every cluster: pbc-blood11's ten non-platelet
# classes (92 % of the cells) 0.404, 0.429 and 0.389 (three retrained VAEs; V 0.18 -> 0.50 for each);
# the clusters of koumura-bird0 (at most 14 % of the syllables each), bccd, planktonclas-demo and the demo
# sets up to 0.54 (koumura-bird0 0.38 with the items in workflow order), which is why only a majority
# cluster is offered: where excess of mass already separated the groups, a split of one of them is a
# finer variant (a syllable type by the call before it), not a missed class.
REFINE_MIN_DBCV = 0.35
REFINE_DEPTH = 2


def embedding_columns(embedding: pd.DataFrame) -> list[str]:
    """The ``u_*`` columns in numeric order (u_2 before u_10), which is the order the model was fit on."""
    cols = sorted((c for c in embedding.columns if c.startswith("u_")), key=lambda c: int(c[2:]))
    if not cols:
        raise ValueError(f"embedding table has no u_* columns (columns: {list(embedding.columns)})")
    return cols


def resolve_min_cluster_size(value: float, n_items: int) -> int:
    """A fraction (< 1) of the items or a count (>= 1), never below 2 (HDBSCAN's smallest cluster)."""
    if value <= 0:
        raise ValueError(f"min_cluster_size must be positive, got {value}")
    size = math.ceil(value * n_items) if value < 1 else round(value)
    return max(2, size)


def _candidates(params: ClusterParams, n_items: int) -> list[dict[str, Any]]:
    """Every combination of the listed settings (a single value is a list of one), sizes resolved."""
    def as_list(value: Any) -> list[Any]:
        return list(value) if isinstance(value, list | tuple) else [value]

    sizes = sorted({resolve_min_cluster_size(v, n_items) for v in as_list(params.min_cluster_size)})
    grid = itertools.product(sizes, as_list(params.min_samples), as_list(params.cluster_selection_method))
    return [{"min_cluster_size": m, "min_samples": s, "cluster_selection_method": c} for m, s, c in grid]


def _fit(X: np.ndarray, setting: dict[str, Any], validity: bool = False) -> hdbscan.HDBSCAN:
    """HDBSCAN with ``setting``; ``validity`` builds the minimum spanning tree DBCV needs (no prediction data)."""
    # core_dist_n_jobs=1: above 16,384 items hdbscan's default (4) starts joblib worker processes, more than
    # the one core the cluster rule holds (a SLURM job would run beyond its allocation); the same distances
    model = hdbscan.HDBSCAN(**setting, prediction_data=not validity, gen_min_span_tree=validity, core_dist_n_jobs=1)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # hdbscan warns when it finds no clusters (that case is logged) and on DBCV's edge cases
        warnings.simplefilter("ignore")
        model.fit(X)
        if validity:
            dbcv = float(model.relative_validity_) if model.labels_.max() >= 1 else -1.0
            # -1 (the worst) where DBCV is undefined: no or one cluster
            model.dbcv_ = dbcv if np.isfinite(dbcv) else -1.0
    return model


def refit(embedding: pd.DataFrame, selection: dict[str, Any]) -> tuple[hdbscan.HDBSCAN, dict[int, Refinement],
                                                                    np.ndarray]:
    """The models of a finished clustering, fitted again from its embedding and ``selection`` record
    (HDBSCAN is deterministic), with the prediction data that places new items: no model file to store or
    unpickle. Returns the top model, the refined clusters' models and the clusters they give the items."""
    X = embedding[embedding_columns(embedding)].to_numpy(dtype=np.float64)
    model = _fit(X, selection["selected"])
    labels = assign_noise_points(model) if float(selection.get("noise_assigned") or 0.0) > 0 else model.labels_
    refined = refit_refinements(X, labels, selection.get("refined") or {})
    return model, refined, place(X, labels, int(model.labels_.max()) + 1, refined)


def select_clustering(
    X: np.ndarray, candidates: list[dict[str, Any]], max_noise_fraction: float
) -> tuple[hdbscan.HDBSCAN, dict[str, Any], list[dict[str, Any]]]:
    """Fit HDBSCAN for every candidate setting and keep one without looking at any label.

    Each candidate is scored by DBCV (density-based cluster validity, Moulavi et al. 2014, as hdbscan's
    ``relative_validity_``); the one kept is the clustering the valid candidates support most: the largest
    sum, over the candidates, of their DBCV (negative counts as 0) times their agreement with it (adjusted
    Rand index, noise as its own group; its own DBCV counts once). DBCV's maximum alone flips between a
    coarse and a fine candidate from one retrained model to the next (on koumura-bird0 two retrained VAEs'
    clusterings agreed at ARI 0.88 that way, at 0.94 or more this way); a grouping that many candidates reproduce,
    or that one candidate finds far more valid than the rest, is kept. Only candidates that leave at most
    ``max_noise_fraction`` of the items as noise compete and vote; when every candidate leaves more, all
    do, and :func:`cluster_embedding` gives the noise points of the one kept to their most likely cluster.
    Ties go to the higher DBCV, then fewer clusters, then the larger min_cluster_size. Returns the kept
    setting's model (refit with prediction data), the setting and one row per candidate (setting, dbcv,
    n_clusters, noise_fraction, support).
    """
    if len(candidates) == 1:
        return _fit(X, candidates[0]), candidates[0], []
    rows, labels = _scored(X, candidates)
    # candidates within the noise cap only: leaf selection's many small clusters score high on DBCV but
    # leave a quarter of koumura-bird0's syllables as noise (V 0.63 once assigned, against 0.86 by the cap)
    allowed = [i for i, r in enumerate(rows) if r["noise_fraction"] <= max_noise_fraction] or list(range(len(rows)))
    best = most_supported(rows, labels, allowed)
    return _fit(X, candidates[best]), candidates[best], rows


def _scored(X: np.ndarray, candidates: list[dict[str, Any]], level: str = "") -> tuple[list[dict[str, Any]],
                                                                                     list[np.ndarray]]:
    """Every candidate fitted: one row each (setting, dbcv, n_clusters, noise_fraction) and its labels."""
    rows, labels = [], []
    for setting in candidates:  # one model at a time: memory stays that of a single fit (and its labels)
        trial = _fit(X, setting, validity=True)
        labels.append(trial.labels_)
        rows.append({**setting, "dbcv": round(trial.dbcv_, 4), "n_clusters": int(trial.labels_.max()) + 1,
                     "noise_fraction": round(float(np.mean(trial.labels_ == -1)), 4)})
        log.log(logging.DEBUG if level else logging.INFO, "candidate %s%s", level, rows[-1])
    return rows, labels


def most_supported(rows: list[dict[str, Any]], labels: list[np.ndarray], allowed: list[int]) -> int:
    """Index of the ``allowed`` candidate with the largest support (see :func:`select_clustering`); adds
    ``support`` to every row (None for those not allowed)."""
    for i, row in enumerate(rows):
        row["support"] = round(sum(max(rows[j]["dbcv"], 0.0) * (1.0 if i == j else _agreement(labels[i], labels[j]))
                                   for j in allowed), 4) if i in allowed else None
    return max(allowed, key=lambda i: (rows[i]["support"], rows[i]["dbcv"], -rows[i]["n_clusters"],
                                       rows[i]["min_cluster_size"]))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two HDBSCAN labelings, noise (-1) as one more group; 1 for identical ones."""
    return 1.0 if np.array_equal(a, b) else float(adjusted_rand_score(a, b))


def other_granularity(rows: list[dict[str, Any]], selected: dict[str, Any],
                      tolerance: float = GRANULARITY_DBCV_TOLERANCE) -> dict[str, Any] | None:
    """A candidate about as valid as the chosen one (DBCV within ``tolerance``) that groups the items at
    another granularity (at least 1.5 times more or fewer clusters), or None.

    When the data support both a coarse and a fine grouping, which one wins can change with a seed; the
    report says so instead of presenting one as the answer.
    """
    rows = [r for r in rows if r["n_clusters"] >= 2]
    best = next((r for r in rows if all(r[k] == selected.get(k) for k in ("min_cluster_size", "min_samples",
                                                                         "cluster_selection_method"))), None)
    if best is None:
        return None
    others = [r for r in rows if r["dbcv"] >= best["dbcv"] - tolerance
              and max(r["n_clusters"], best["n_clusters"]) >= 1.5 * min(r["n_clusters"], best["n_clusters"])]
    return max(others, key=lambda r: r["dbcv"], default=None)


@dataclass
class Refinement:
    """A cluster split again into sub-clusters, by a selection among the same candidates on its items alone.

    Many small classes beside one distinct group (pbc-blood11: platelets against ten white-cell types)
    give excess-of-mass selection two clusters, the distinct group and the rest, at the highest validity;
    the rest holds the other classes as sub-clusters that only a selection on its own items finds.
    """

    model: hdbscan.HDBSCAN  # fitted on the cluster's items, with prediction data
    noise_assigned: bool  # its noise points went to their most likely sub-cluster (every candidate left more)
    labels: np.ndarray  # the sub-cluster of each of the cluster's items in the fit (-1 = noise)
    children: dict[int, Refinement] = field(default_factory=dict)
    dbcv: float = 0.0  # of the split, on the cluster's items

    @property
    def n_clusters(self) -> int:
        return int(self.model.labels_.max()) + 1

    def predict(self, X: np.ndarray, assign: bool = False) -> np.ndarray:
        """Sub-clusters of new items of this cluster (noise given its most likely one as in the fit, or always
        with ``assign``)."""
        labels, _ = hdbscan.approximate_predict(self.model, X)
        labels = np.asarray(labels, dtype=np.int64)
        noise = labels < 0
        if (assign or self.noise_assigned) and noise.any():
            labels[noise] = most_likely_cluster(self.model, X[noise])
        return labels

    def record(self) -> dict[str, Any]:
        """What refits it (the setting; the items are its parent's cluster) and its children, for the table."""
        return {"selected": {k: self.model.get_params()[k] for k in SETTING_KEYS},
                "n_items": len(self.labels), "n_clusters": self.n_clusters, "dbcv": self.dbcv,
                "noise_assigned": self.noise_assigned,
                "refined": {str(c): child.record() for c, child in self.children.items()}}


SETTING_KEYS = ("min_cluster_size", "min_samples", "cluster_selection_method")


def refine_clusters(X: np.ndarray, labels: np.ndarray, candidates: list[dict[str, Any]], max_noise_fraction: float,
                    depth: int = 1) -> dict[int, Refinement]:
    """The cluster of ``labels`` (over ``X``) holding at least half of the items, split again where they hold
    clearly valid sub-clusters.

    Many small classes beside one distinct group come out of excess of mass as two clusters, the distinct
    group and one holding most of the items (pbc-blood11: the platelets and 92 % of the cells). That
    cluster's items are fitted with the ``candidates`` that can split them (minimum sizes resolved
    against the whole set, so a sub-cluster is as large as a cluster must be). Only the candidates finding
    at least two sub-clusters at DBCV >= :data:`REFINE_MIN_DBCV` compete, those within the noise cap first
    (when none is, all of them, with the noise of the one kept given to its most likely sub-cluster); the
    most supported one (:func:`most_supported`) splits the cluster, and the sub-cluster holding most of its
    items is offered in turn, :data:`REFINE_DEPTH` levels at most. Validity comes first because inside a
    cluster a trivial candidate (two sub-clusters at DBCV 0.04, within the cap) would otherwise outvote a
    clear split that leaves a third of the items as noise (pbc-blood11, one of three retrained VAEs).
    """
    refined: dict[int, Refinement] = {}
    if depth > REFINE_DEPTH:
        return refined
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        if 2 * len(idx) < len(labels):  # a minority cluster: its groups were already weighed
            continue
        fits = [s for s in candidates if 2 * s["min_cluster_size"] <= len(idx) and (s["min_samples"] or 0) <= len(idx)]
        if len(fits) < 2:
            continue
        rows, sub_labels = _scored(X[idx], fits, level=f"of cluster {c} (depth {depth}) ")
        valid = [i for i, r in enumerate(rows) if r["n_clusters"] >= 2 and r["dbcv"] >= REFINE_MIN_DBCV]
        if not valid:
            continue
        best = most_supported(rows, sub_labels, [i for i in valid if rows[i]["noise_fraction"] <= max_noise_fraction]
                              or valid)
        model, row = _fit(X[idx], fits[best]), rows[best]
        assign = row["noise_fraction"] > max_noise_fraction
        sub = assign_noise_points(model) if assign else model.labels_.astype(np.int64)
        log.info("cluster %d (%d items, depth %d) holds %d sub-clusters at DBCV %.3f (%s): split", c, len(idx),
                 depth, row["n_clusters"], row["dbcv"], fits[best])
        refined[c] = Refinement(model, assign, sub, refine_clusters(X[idx], sub, candidates, max_noise_fraction,
                                                                    depth + 1), dbcv=row["dbcv"])
    return refined


def place(X: np.ndarray, labels: np.ndarray, n_clusters: int, refined: dict[int, Refinement],
          fitted: bool = True, assign: bool = False) -> np.ndarray:
    """Final cluster ids: clusters numbered in order, each refined one replaced by its sub-clusters (in
    turn numbered so). ``fitted``: ``labels`` are those of the fit, whose sub-clusters are known; otherwise
    they are new items' clusters, placed in sub-clusters by prediction (``assign``: noise never left)."""
    out = np.full(len(labels), -1, dtype=np.int64)
    next_id = 0
    for c in range(n_clusters):
        idx = np.flatnonzero(labels == c)
        node = refined.get(c)
        if node is None:
            out[idx] = next_id
            next_id += 1
            continue
        sub = node.labels if fitted else node.predict(X[idx], assign) if len(idx) else np.empty(0, np.int64)
        final = place(X[idx], sub, node.n_clusters, node.children, fitted, assign)
        out[idx] = np.where(final >= 0, final + next_id, -1)
        next_id += _count(node)
    return out


def _count(node: Refinement) -> int:
    """Final clusters a refined cluster becomes."""
    return sum(_count(node.children[c]) if c in node.children else 1 for c in range(node.n_clusters))


def refit_refinements(X: np.ndarray, labels: np.ndarray, records: dict[str, Any]) -> dict[int, Refinement]:
    """The :class:`Refinement` tree of a finished clustering from its record (HDBSCAN is deterministic)."""
    refined = {}
    for key, record in (records or {}).items():
        idx = np.flatnonzero(labels == int(key))
        model = _fit(X[idx], record["selected"])
        sub = assign_noise_points(model) if record["noise_assigned"] else model.labels_.astype(np.int64)
        refined[int(key)] = Refinement(model, bool(record["noise_assigned"]), sub,
                                       refit_refinements(X[idx], sub, record["refined"]), dbcv=record["dbcv"])
    return refined


def cluster_embedding(
    embedding: pd.DataFrame, params: ClusterParams
) -> tuple[pd.DataFrame, hdbscan.HDBSCAN | None]:
    """Cluster the ``u_*`` columns with HDBSCAN; returns the per-item table and the fitted model.

    Columns: item_id, cluster (-1 = noise), probability (membership strength), outlier_score (GLOSH) and,
    with ``assign_noise``, assigned_cluster. With too few items for one cluster, every item is noise
    (outlier_score NaN: there is no density to compare with) and the model is None. When ``params`` lists
    candidate settings, :func:`select_clustering` picks one and :func:`refine_clusters` may split the cluster
    holding most of the items; the table's ``attrs["selection"]`` holds the chosen setting, every
    candidate's DBCV, support, cluster count and noise, and the splits (``refined``), written with the table.
    """
    cols = embedding_columns(embedding)
    X = embedding[cols].to_numpy(dtype=np.float64)
    n = len(X)
    # candidates with more min_cluster_size / min_samples than items cannot form a cluster
    candidates = [c for c in _candidates(params, n) if max(c["min_cluster_size"], c["min_samples"] or 0, 2) <= n]
    table = pd.DataFrame({"item_id": embedding["item_id"].to_numpy()})
    if not candidates:
        log.warning("only %d items, fewer than min_cluster_size=%s / min_samples=%s: every item is noise",
                    n, params.min_cluster_size, params.min_samples)
        table["cluster"] = np.full(n, -1, dtype=np.int64)
        table["probability"] = np.zeros(n)
        table["outlier_score"] = np.full(n, np.nan)
        if params.assign_noise:
            table["assigned_cluster"] = table["cluster"]
        return table, None
    model, chosen, rows = select_clustering(X, candidates, params.max_noise_fraction)
    labels = model.labels_.astype(np.int64)
    raw_noise = float(np.mean(labels == -1))
    assign = len(rows) > 1 and raw_noise > params.max_noise_fraction  # a setting given alone is kept as it is
    assigned = assign_noise_points(model) if assign or params.assign_noise else None  # soft membership: once
    if assign:
        log.info("the chosen setting leaves %.1f %% noise (> max_noise_fraction %.1f %%): each noise point goes "
                 "to its most likely cluster (its outlier score still says how far it lies)",
                 100 * raw_noise, 100 * params.max_noise_fraction)
        labels = assigned
    n_top = int(model.labels_.max()) + 1
    # a setting given alone is kept as it is; candidates are also tried on each cluster's own items
    refined = refine_clusters(X, labels, candidates, params.max_noise_fraction) if len(rows) > 1 else {}
    if refined:
        labels = place(X, labels, n_top, refined)
        if assigned is not None:  # items left as noise, placed as new items would be, noise never left
            left = labels < 0
            top_assigned, assigned = assigned, labels.copy()
            assigned[left] = place(X[left], top_assigned[left], n_top, refined, fitted=False, assign=True)
    table["cluster"] = labels
    table["probability"] = model.probabilities_.astype(np.float64)
    table["outlier_score"] = model.outlier_scores_.astype(np.float64)
    if params.assign_noise:
        table["assigned_cluster"] = assigned
    other = other_granularity([r for r in rows if r["noise_fraction"] <= params.max_noise_fraction], chosen)
    table.attrs["selection"] = {"selected": chosen, "candidates": rows, "other_granularity": other,
                                "noise_assigned": round(raw_noise, 4) if assign else 0.0,
                                "refined": {str(c): node.record() for c, node in refined.items()}}
    if other is not None:
        log.warning("the data support another granularity about as well: %d clusters (%s, DBCV %.3f); "
                    "the chosen setting gives %d", other["n_clusters"],
                    {k: other[k] for k in ("min_cluster_size", "min_samples", "cluster_selection_method")},
                    other["dbcv"], int(labels.max()) + 1)
    n_clusters = int(labels.max()) + 1
    log.info(
        "HDBSCAN on %d items x %d dims (%s, of %d candidates): %d clusters, %.1f %% noise",
        n, len(cols), chosen, max(1, len(rows)), n_clusters, 100 * float(np.mean(labels == -1)),
    )
    if n_clusters == 0:
        log.warning("HDBSCAN found no clusters: every item is noise; try a smaller min_cluster_size")
    return table, model


def assign_noise_points(model: hdbscan.HDBSCAN) -> np.ndarray:
    """Cluster members keep their cluster; noise points get the argmax of their soft membership vector."""
    labels = model.labels_.astype(np.int64)
    if labels.max() < 0:
        return labels.copy()
    membership = np.nan_to_num(hdbscan.all_points_membership_vectors(model)).reshape(len(labels), -1)
    return np.where(labels >= 0, labels, membership.argmax(axis=1)).astype(np.int64)


def soft_membership(model: hdbscan.HDBSCAN, X: np.ndarray) -> np.ndarray:
    """``hdbscan.membership_vector`` of new items, given in C order: on a column-major array (as a DataFrame's
    ``to_numpy`` gives) hdbscan 0.8 returns other, wrong vectors (its compiled distances read the raw buffer
    as C order; scikit-learn-contrib/hdbscan#161, open): of a training set's own points, the argmax agreed
    with ``all_points_membership_vectors`` for 80 % against 99.7 %; a test checks it."""
    return hdbscan.membership_vector(model, np.ascontiguousarray(X, dtype=np.float64))


def most_likely_cluster(model: hdbscan.HDBSCAN, X: np.ndarray) -> np.ndarray:
    """The cluster of ``model`` each new item most likely belongs to (the argmax of its soft membership)."""
    return np.nan_to_num(soft_membership(model, X)).reshape(len(X), -1).argmax(axis=1)


def predict_new(model: hdbscan.HDBSCAN, embedding: pd.DataFrame) -> pd.DataFrame:
    """Place items not used in the fit into the existing clusters (no refit, so cluster ids stay stable).

    Returns item_id, cluster (-1 = noise), probability and outlier_score, as ``cluster_embedding`` does.
    """
    cols = embedding_columns(embedding)
    n_dims = model.prediction_data_.raw_data.shape[1]
    if len(cols) != n_dims:
        raise ValueError(f"model was fit on {n_dims} embedding dims, table has {len(cols)} u_* columns")
    X = embedding[cols].to_numpy(dtype=np.float64)
    labels, strengths, scores = np.full(len(X), -1), np.zeros(len(X)), np.zeros(len(X))
    if len(X):
        labels, strengths = hdbscan.approximate_predict(model, X)
        scores = hdbscan.approximate_predict_scores(model, X)
    return pd.DataFrame({
        "item_id": embedding["item_id"].to_numpy(),
        "cluster": np.asarray(labels, dtype=np.int64),
        "probability": np.asarray(strengths, dtype=np.float64),
        "outlier_score": np.asarray(scores, dtype=np.float64),
    })
