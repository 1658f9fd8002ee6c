"""How well unsupervised clusters match human labels.

Scores are computed twice: with HDBSCAN's noise as one more cluster (the clustering as delivered) and on the
clustered items only (how clean the clusters are, whatever was left out). Items without a label cannot be
scored and are only counted. Every value is a plain int or float (None when undefined), ready for JSON.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics

from quagga.pool import run_tasks

NOISE = -1


def _labelled(labels: pd.Series, clusters: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Labels and clusters of the items that have a label."""
    if len(labels) != len(clusters):
        raise ValueError(f"labels ({len(labels)}) and clusters ({len(clusters)}) differ in length")
    lab = pd.Series(labels).reset_index(drop=True)
    clu = pd.Series(clusters).reset_index(drop=True).astype(np.int64)
    keep = lab.notna().to_numpy()
    return lab[keep].to_numpy(), clu[keep].to_numpy()


def _scores(labels: np.ndarray, clusters: np.ndarray, prefix: str = "") -> dict[str, float | None]:
    names = ("homogeneity", "completeness", "v_measure", "ari", "ami")
    if len(labels) == 0:
        return {prefix + name: None for name in names}
    codes = pd.factorize(labels)[0]  # integer codes: labels of mixed types still compare
    h, c, v = metrics.homogeneity_completeness_v_measure(codes, clusters)
    ari = metrics.adjusted_rand_score(codes, clusters)
    ami = metrics.adjusted_mutual_info_score(codes, clusters)
    values = (h, c, v, ari, ami)
    return {prefix + name: float(value) for name, value in zip(names, values, strict=True)}


def label_agreement(labels: pd.Series, clusters: pd.Series) -> dict[str, float | int | None]:
    """Agreement scores of clusters (-1 = noise) with labels, matched by position.

    Scores use the labelled items only; the ``nonnoise_`` scores also drop noise items. ``noise_fraction``
    and ``n_clusters`` (noise excluded) describe the clustering itself and so count every item.
    """
    all_clusters = pd.Series(clusters).astype(np.int64).to_numpy()
    lab, clu = _labelled(labels, clusters)
    clustered = clu != NOISE
    result: dict[str, float | int | None] = {}
    result.update(_scores(lab, clu))
    result.update(_scores(lab[clustered], clu[clustered], prefix="nonnoise_"))
    result.update({
        "noise_fraction": float(np.mean(all_clusters == NOISE)) if len(all_clusters) else None,
        "n_clusters": int(len(np.unique(all_clusters[all_clusters != NOISE]))),
        "n_labels": int(pd.Series(lab).nunique()),
        "n_items": int(len(all_clusters)),
        "n_unlabelled": int(len(all_clusters) - len(lab)),
    })
    return result


def contingency_table(labels: pd.Series, clusters: pd.Series) -> pd.DataFrame:
    """Counts of labelled items per (label, cluster): rows labels, columns clusters (noise -1 included)."""
    lab, clu = _labelled(labels, clusters)
    table = pd.crosstab(pd.Series(lab, name="label"), pd.Series(clu, name="cluster"))
    return table.sort_index().sort_index(axis=1).astype(np.int64)


def best_cluster_per_label(labels: pd.Series, clusters: pd.Series) -> pd.DataFrame:
    """For each label, the non-noise cluster holding most of its items, with its purity and recall.

    Ties go to the lowest cluster id. purity = share of the cluster's labelled items that carry the label;
    recall = share of the label's items that fall in the cluster. A label found only in noise gets
    cluster -1 (with the purity and recall of the noise).
    """
    table = contingency_table(labels, clusters)
    clustered = table.drop(columns=NOISE, errors="ignore")
    rows = []
    for label, counts in table.iterrows():
        candidates = clustered.loc[label]
        best = int(candidates.idxmax()) if len(candidates) and candidates.max() > 0 else NOISE
        count = int(table.at[label, best])
        rows.append({
            "label": label,
            "cluster": best,
            "n": int(counts.sum()),
            "purity": count / int(table[best].sum()),
            "recall": count / int(counts.sum()),
        })
    return pd.DataFrame(rows, columns=["label", "cluster", "n", "purity", "recall"])


def _resample_scores(labels: np.ndarray, clusters: np.ndarray, seeds: list[np.random.SeedSequence]
                     ) -> list[dict[str, float | None]]:
    """The scores of one resample (items drawn with replacement) per seed."""
    n = len(labels)
    return [_scores(labels[rows], clusters[rows])
            for rows in (np.random.default_rng(s).integers(0, n, n) for s in seeds)]


def bootstrap_intervals(
    labels: pd.Series, clusters: pd.Series, n_boot: int = 200, level: float = 0.95, seed: int = 0,
    workers: int = 1,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (items resampled) of the scores with noise as its own cluster.

    With a few hundred calls, V-measure 0.85 against 0.80 can be chance; the interval says whether it is.
    Empty when fewer than two items are labelled. Each resample has its own seed (spawned from ``seed``), so
    ``workers`` processes score them with the same arithmetic: the same intervals for any number of workers.
    """
    lab, clu = _labelled(labels, clusters)
    if len(lab) < 2 or n_boot < 1:
        return {}
    seeds = np.random.SeedSequence(seed).spawn(n_boot)
    parts = [seeds[i::workers] for i in range(min(workers, n_boot))]
    draws = [d for part in run_tasks([(_resample_scores, (lab, clu, p)) for p in parts], workers) for d in part]
    tails = [(1 - level) / 2, 1 - (1 - level) / 2]
    return {
        name: [float(q) for q in np.quantile([float(d[name]) for d in draws], tails)]  # type: ignore[arg-type]
        for name in draws[0]
    }


def likely_mislabelled(
    items: pd.DataFrame, min_probability: float = 0.9, min_purity: float = 0.8
) -> pd.DataFrame:
    """Items sitting confidently in a cluster that is dominated by another label.

    ``items`` has ``item_id``, ``label``, ``cluster`` and ``probability`` (HDBSCAN membership strength).
    A candidate has membership >= ``min_probability`` in a non-noise cluster whose labelled items carry
    one label with share >= ``min_purity``, and that label is not the item's own. These are the calls
    worth a second listen: a labelling slip, or a real sub-type the label set lacks. Strongest first.
    """
    columns = ["item_id", "label", "cluster", "cluster_label", "cluster_purity", "probability"]
    labelled = items[items["label"].notna() & (items["cluster"] != NOISE)]
    if labelled.empty:
        return pd.DataFrame(columns=columns)
    shares = pd.crosstab(labelled["cluster"], labelled["label"].astype(str), normalize="index")
    dominant = pd.DataFrame({"cluster_label": shares.idxmax(axis=1), "cluster_purity": shares.max(axis=1)})
    table = labelled.join(dominant, on="cluster")
    flagged = table[
        (table["probability"] >= min_probability)
        & (table["cluster_purity"] >= min_purity)
        & (table["label"].astype(str) != table["cluster_label"])
    ]
    flagged = flagged.sort_values(["probability", "cluster_purity", "item_id"], ascending=[False, False, True])
    return flagged[columns].reset_index(drop=True)
