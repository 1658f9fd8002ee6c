"""What the tiling benchmarks share: the dataset section of a config, fresh-process runs, medians."""

from __future__ import annotations

import multiprocessing as mp
import resource
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def peak_mib(children: bool = False) -> float:
    """This process's peak resident memory (``children``: the largest of its finished child processes')."""
    return resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss / 1024


def tiles_section(config_path: Path, dataset: str | None, modality: str, resolve: bool = True) -> tuple[str, dict]:
    """Name and validated tiles section of ``dataset`` (default: the config's first of ``modality``), its
    ``auto`` settings found from the data as the workflow's settings stage finds them (``resolve``)."""
    from quagga.config import load_config, stage_section
    from quagga.params import AudioParams, ImageParams, from_dict, to_dict
    from quagga.settings import resolve_settings

    config = load_config(config_path)
    names = config["run_datasets"] or sorted(config["datasets"])
    name = dataset or next(n for n in names if config["datasets"][n]["modality"] == modality)
    section = stage_section(config, name, "tiles")
    if not resolve:
        return name, section
    params = from_dict(AudioParams if modality == "audio" else ImageParams, section)
    return name, to_dict(resolve_settings(modality, params, ROOT)[0])


def run_fresh(target: Callable[..., None], *args: object) -> dict:
    """``target(*args, queue)`` in a fresh (spawned) process, so its peak memory is its own; its result."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def median(results: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median (2-core timings wander by tens of percent)."""
    return sorted(results, key=lambda r: r[key])[len(results) // 2]


def knn_scores(features: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """kNN (k=5) accuracy and balanced accuracy, stratified 5-fold cross-validation (scikit-learn)."""
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    scores = cross_validate(
        KNeighborsClassifier(5), features, labels, cv=folds, scoring=["accuracy", "balanced_accuracy"]
    )
    return {
        "accuracy": round(float(scores["test_accuracy"].mean()), 4),
        "accuracy_sd": round(float(scores["test_accuracy"].std()), 4),
        "balanced_accuracy": round(float(scores["test_balanced_accuracy"].mean()), 4),
    }
