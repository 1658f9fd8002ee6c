"""Label propagation ("training assistance"): a few labels name the rest, and say which item to label next.

A classifier trained on the labelled items predicts a label, with its probability, for every item. The
candidates are each classifier on each feature set, compared by cross-validation on the labelled items
only (a held-out fold's labels are never seen): the highest balanced accuracy predicts, ties going to the
higher mean probability of the true labels. Classifiers:

- ``label_spreading``: scikit-learn's LabelSpreading on the kNN graph of all items (labelled or not), so
  labels flow along the dense regions the features show; strong when few items are labelled. An item in a
  part of the graph no label reaches takes its nearest labelled item's label with probability 1 / the
  number of labels (a guess): it tops the label-next list;
- ``knn``: k nearest neighbours (distance-weighted);
- ``logistic``: logistic regression.

Feature sets, as they are (standardising would inflate the VAE's inactive latent dimensions to the size of
the informative ones): the VAE's ``latents`` and, when the embed stage ran, its n-D ``embedding``
(ParametricUMAP of the latents, made without labels): its neighbourhood graph pulls the call types apart,
and 1 % of the labels then name the rest of koumura-bird0 with balanced accuracy 0.99 (``bench/propagation.py``).

What to label next (:mod:`quagga.evaluate.labelling`): one item of every cluster no labelled item is in, then
the least certain predictions (uncertainty sampling); the bench compares labelling those, in rounds, with
labelling as many at random.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.semi_supervised import LabelSpreading

from quagga.pool import submit_tasks

log = logging.getLogger(__name__)

CLASSIFIERS = ("knn", "label_spreading", "logistic")  # exact ties go to the earlier one (and feature set)
MAX_FOLDS = 5
SPREAD_NEIGHBOURS = 15  # kNN graph of label spreading
SPREAD_ALPHA = 0.8  # share of a node's label taken from its neighbours each step (koumura-bird0: 0.5-0.99 alike)


@dataclass(frozen=True)
class Propagation:
    """Predicted label and its probability per item, and how the classifier was chosen."""

    predicted: np.ndarray  # str, one per item
    probability: np.ndarray  # float, the predicted label's probability
    classifier: str
    features: str
    # per candidate ("<classifier> on <features>"); empty when too few labels to cross-validate
    cv_balanced_accuracy: dict[str, float] = field(default_factory=dict)


def _fit_predict(name: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int) -> tuple[np.ndarray, list]:
    """Class probabilities ``[n_items, n_classes]`` of every item from a ``name`` classifier trained on the
    rows ``train`` of ``y`` (labels as text), and the classes in column order."""
    classes, counts = np.unique(y[train], return_counts=True)
    if len(classes) == 1:  # a cross-validation fold can hold a single label: it is every item's prediction
        return np.ones((len(x), 1)), list(classes)
    if name == "label_spreading":
        target = np.full(len(x), -1)
        target[train] = np.searchsorted(classes, y[train])
        model = LabelSpreading(kernel="knn", n_neighbors=min(SPREAD_NEIGHBOURS, len(x) - 1), alpha=SPREAD_ALPHA,
                               max_iter=100)
        with warnings.catch_warnings():  # max_iter reached: the distribution is still usable
            warnings.simplefilter("ignore")
            model.fit(x, target)
        dist = np.nan_to_num(model.label_distributions_)
        mass = dist.sum(axis=1)
        unreached = mass <= 0  # in a part of the kNN graph no labelled item is in
        dist[~unreached] /= mass[~unreached, None]
        if unreached.any():  # the nearest labelled item's label, with no more confidence than a guess
            nearest = KNeighborsClassifier(1).fit(x[train], target[train]).predict(x[unreached])
            dist[unreached] = 0.0
            dist[np.flatnonzero(unreached), nearest] = 1.0 / len(classes)
        return dist, list(classes)
    if name == "knn":
        model = KNeighborsClassifier(min(5, int(counts.min())), weights="distance")  # the rarest label not outvoted
    else:
        model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(x[train], y[train])
    return model.predict_proba(x), list(model.classes_)


def _cv_score(name: str, x: np.ndarray, y: np.ndarray, labelled: np.ndarray, seed: int) -> tuple[float, float]:
    """Balanced accuracy of ``name`` on the labelled items, each predicted by a model that did not see it, and
    the mean probability it gave their true labels (what tells candidates apart when both are perfect)."""
    n_folds = max(2, min(MAX_FOLDS, int(np.unique(y[labelled], return_counts=True)[1].min())))
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    predicted = np.empty(len(labelled), dtype=object)
    true_probability = np.zeros(len(labelled))
    with warnings.catch_warnings():  # "the least populated class has only 1 member": expected with few labels
        warnings.simplefilter("ignore", UserWarning)
        splits = list(folds.split(labelled, y[labelled]))
    for fit_rows, test_rows in splits:
        proba, classes = _fit_predict(name, x, y, labelled[fit_rows], seed)
        held = proba[labelled[test_rows]]
        predicted[test_rows] = np.asarray(classes, dtype=object)[held.argmax(axis=1)]
        column = {label: i for i, label in enumerate(classes)}
        true_probability[test_rows] = [row[column[label]] if label in column else 0.0
                                       for row, label in zip(held, y[labelled[test_rows]], strict=True)]
    accuracy = balanced_accuracy_score(y[labelled].astype(str), predicted.astype(str))
    return float(accuracy), float(true_probability.mean())


def propagate(features: Mapping[str, np.ndarray], labels: Sequence[object], seed: int = 0, workers: int = 1
              ) -> Propagation:
    """Predict every item's label from the labelled ones (``labels`` None/NA where unknown).

    ``features``: feature sets by name, rows aligned with ``labels``. Needs at least two labels with an item
    each. The candidate with the best cross-validated balanced accuracy on the labelled items predicts
    (ties: the higher mean probability of the true labels); with fewer than two items per label on average
    there is nothing to cross-validate, and label spreading on the first feature set is used as it is.
    The candidates are cross-validated by ``workers`` processes (each the same arithmetic as alone).
    """
    return start_propagation(features, labels, seed, workers)()


def start_propagation(features: Mapping[str, np.ndarray], labels: Sequence[object], seed: int = 0,
                      workers: int = 1) -> Callable[[], Propagation]:
    """:func:`propagate` started: the candidates' cross-validation runs in ``workers`` processes while the
    caller goes on (``workers=1``: here, when waited for); returns the wait for the result."""
    y = np.array(["" if pd.isna(v) else str(v) for v in labels], dtype=object)
    labelled = np.flatnonzero(y != "")
    if len(np.unique(y[labelled])) < 2:
        raise ValueError("label propagation needs at least two distinct labels")
    spaces = {name: np.asarray(x, dtype=np.float64) for name, x in features.items()}
    candidates = [(clf, name) for name in spaces for clf in CLASSIFIERS]
    pending = None
    if len(labelled) >= 2 * len(np.unique(y[labelled])):
        pending = submit_tasks([(_cv_score, (clf, spaces[name], y, labelled, seed)) for clf, name in candidates],
                               workers)

    def finish() -> Propagation:
        scores = {} if pending is None else dict(zip(candidates, pending.results(), strict=True))
        best = max(candidates, key=scores.__getitem__) if scores else ("label_spreading", next(iter(spaces)))
        proba, classes = _fit_predict(best[0], spaces[best[1]], y, labelled, seed)
        top = proba.argmax(axis=1)
        accuracy = {f"{clf} on {name}": round(score[0], 4) for (clf, name), score in scores.items()}
        log.info("label propagation from %d labelled items: %s on %s (cross-validated balanced accuracy %s)",
                 len(labelled), *best, accuracy.get(f"{best[0]} on {best[1]}", "not measured"))
        return Propagation(np.asarray(classes, dtype=object)[top].astype(str), proba[np.arange(len(top)), top],
                           *best, accuracy)

    return finish
