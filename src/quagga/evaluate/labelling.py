"""Which items a person should label next, from the predictions of :mod:`quagga.evaluate.propagation`.

Plain numpy and pandas (no scikit-learn), so the report, which lists them, imports nothing heavy for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def label_next(
    probability: np.ndarray, unlabelled: np.ndarray, n: int, clusters: np.ndarray | None = None,
    membership: np.ndarray | None = None,
) -> np.ndarray:
    """Rows of the ``n`` unlabelled items to label next.

    First, with ``clusters`` (HDBSCAN's, -1 noise) and ``membership`` (its membership strength), the most
    typical item of every cluster no labelled item is in, largest cluster first: a classifier cannot be
    unsure about a label it has never seen, so a group nobody has labelled is found this way, not by its
    uncertainty. Then the least certain items (lowest probability of their predicted label; ties by row).
    """
    rows = np.flatnonzero(unlabelled)
    first: list[int] = []
    if clusters is not None and membership is not None:
        unexplored = pd.Series(clusters[rows], index=rows)
        unexplored = unexplored[(unexplored >= 0) & ~unexplored.isin(clusters[~unlabelled])]
        for _, members in sorted(unexplored.groupby(unexplored), key=lambda group: -len(group[1])):
            first.append(int(members.index[np.argmax(membership[members.index])]))
    rest = rows[~np.isin(rows, first)]
    return np.concatenate([first, rest[np.lexsort((rest, probability[rest]))]]).astype(int)[:n]
