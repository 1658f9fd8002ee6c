"""The seeded train/validation split of a tile store, for training and for what later stages show of it.

Plain numpy, apart from the Lightning data module, so that encoding and the report need not import Lightning.
"""

from __future__ import annotations

import numpy as np


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, disjoint train/validation split of ``range(n)`` (each part sorted, for memmap locality).

    A positive fraction always keeps at least one item in each part when ``n >= 2``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(max(1, round(n * val_fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
