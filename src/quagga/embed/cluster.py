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
from typing import Any

import hdbscan
import numpy as np
import pandas as pd

from quagga.params import ClusterParams

log = logging.getLogger(__name__)
# DBCV (in [-1, 1]) this close to the chosen candidate counts as "about as valid"
GRANULARITY_DBCV_TOLERANCE = 0.05


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


def refit(embedding: pd.DataFrame, selected: dict[str, Any]) -> hdbscan.HDBSCAN:
    """The model of a finished clustering, fitted again from its embedding and chosen setting (HDBSCAN is
    deterministic), with the prediction data that places new items: no model file to store or unpickle."""
    return _fit(embedding[embedding_columns(embedding)].to_numpy(dtype=np.float64), selected)


def select_clustering(
    X: np.ndarray, candidates: list[dict[str, Any]], max_noise_fraction: float
) -> tuple[hdbscan.HDBSCAN, dict[str, Any], list[dict[str, Any]]]:
    """Fit HDBSCAN for every candidate setting and keep one without looking at any label.

    The criterion is DBCV (density-based cluster validity, Moulavi et al. 2014, as hdbscan's
    ``relative_validity_``) among the ``candidates`` (HDBSCAN keyword sets) leaving at most
    ``max_noise_fraction`` of the items as noise; ties go to fewer clusters, then the larger
    min_cluster_size. When every candidate leaves more noise, the one with the highest DBCV is kept and
    :func:`cluster_embedding` gives its noise points to their most likely cluster. Returns the chosen
    setting's model (refit with prediction data), the setting and one row per candidate (setting, dbcv,
    n_clusters, noise_fraction).
    """
    if len(candidates) == 1:
        return _fit(X, candidates[0]), candidates[0], []
    rows = []
    for setting in candidates:  # one model at a time: memory stays that of a single fit
        trial = _fit(X, setting, validity=True)
        rows.append({**setting, "dbcv": round(trial.dbcv_, 4), "n_clusters": int(trial.labels_.max()) + 1,
                     "noise_fraction": round(float(np.mean(trial.labels_ == -1)), 4)})
        log.info("candidate %s", rows[-1])
    # candidates within the noise cap first: leaf selection's many small clusters score high on DBCV but
    # leave a quarter of koumura-bird0's syllables as noise (V 0.63 once assigned, against 0.86 by the cap)
    allowed = [r for r in rows if r["noise_fraction"] <= max_noise_fraction] or rows
    best = max(allowed, key=lambda r: (r["dbcv"], -r["n_clusters"], r["min_cluster_size"]))
    chosen = candidates[rows.index(best)]
    return _fit(X, chosen), chosen, rows


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


def cluster_embedding(
    embedding: pd.DataFrame, params: ClusterParams
) -> tuple[pd.DataFrame, hdbscan.HDBSCAN | None]:
    """Cluster the ``u_*`` columns with HDBSCAN; returns the per-item table and the fitted model.

    Columns: item_id, cluster (-1 = noise), probability (membership strength), outlier_score (GLOSH) and,
    with ``assign_noise``, assigned_cluster. With too few items for one cluster, every item is noise
    (outlier_score NaN: there is no density to compare with) and the model is None. When ``params`` lists
    candidate settings, :func:`select_clustering` picks one; the table's ``attrs["selection"]`` holds the
    chosen setting and every candidate's DBCV, cluster count and noise (written with the table).
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
    table["cluster"] = labels
    table["probability"] = model.probabilities_.astype(np.float64)
    table["outlier_score"] = model.outlier_scores_.astype(np.float64)
    if params.assign_noise:
        table["assigned_cluster"] = assigned
    other = other_granularity([r for r in rows if r["noise_fraction"] <= params.max_noise_fraction], chosen)
    table.attrs["selection"] = {"selected": chosen, "candidates": rows, "other_granularity": other,
                                "noise_assigned": round(raw_noise, 4) if assign else 0.0}
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
