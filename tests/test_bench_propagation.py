"""bench/propagation.py's own logic: both arms share their start, reach every budget, and label next helps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import propagation  # noqa: E402 - bench/ is not a package


def test_arms_reach_every_budget_from_one_start() -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(np.array(["a", "b", "c", "d"]), 800, p=[0.55, 0.3, 0.1, 0.05])
    centres = {"a": 0, "b": 6, "c": 12, "d": 18}  # separate call types, one rare
    z = np.array([[centres[t], 0.0] for t in truth]) + rng.normal(0, 1.0, (800, 2))
    clusters = pd.DataFrame({"cluster": pd.factorize(truth)[0], "probability": 1.0})  # clusters as the labels
    rows = pd.DataFrame(propagation.run_arms({"z": z}, truth, clusters, (0.5, 1.0, 5.0), 0.5, seed=0))
    assert rows["n_labelled"].tolist() == [4, 8, 40]
    first = rows.iloc[0]
    assert first["random_balanced_accuracy"] == first["active_balanced_accuracy"]  # the shared start
    last = rows.iloc[-1]
    assert last["active_balanced_accuracy"] > 0.9 and last["random_balanced_accuracy"] > 0.9
    table = propagation.summarise(pd.concat([rows, rows.assign(seed=1)]))
    assert table["budget"].tolist() == [0.5, 1.0, 5.0] and (table["active_balanced_accuracy_std"] == 0).all()
