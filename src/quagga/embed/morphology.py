"""Morphology features next to the latents, for embedding both (``embed.morphology: true``).

With few images a VAE learns little, while measured shape and size (the ``feat_*`` columns of the tile
index) already separate taxa; on larger sets the two are complementary. Each feature is z-scored (a
feature that could not be measured gets the mean), and the feature block is scaled so that its total
variance equals the latents': neither block outweighs the other because it has more columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from quagga.params import ParamsError
from quagga.settings import Choices

FEATURE_PREFIX = "feat_"
COLUMN_PREFIX = "z_feat_"  # z_*: the embedding reads these with the latents


def with_morphology(latents: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """``latents`` with a ``z_feat_*`` column per morphology feature of its items (matched by item_id)."""
    features = [c for c in index.columns if c.startswith(FEATURE_PREFIX)]
    if not features:
        raise ParamsError("embed.morphology is set, but the tile index has no feat_* columns "
                         "(morphology features are measured for image tiles only)")
    values = index.set_index("item_id").reindex(latents["item_id"])[features].to_numpy(dtype=np.float64)
    mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    z = np.nan_to_num((values - mean) / np.where(std > 0, std, 1.0), nan=0.0)
    latent = latents[[c for c in latents.columns if c.startswith("z_")]].to_numpy(dtype=np.float64)
    block_var = z.var(axis=0).sum()
    z *= np.sqrt(latent.var(axis=0).sum() / block_var) if block_var > 0 else 0.0
    extra = pd.DataFrame(z.astype(np.float32), columns=[COLUMN_PREFIX + f[len(FEATURE_PREFIX):] for f in features],
                         index=latents.index)
    return pd.concat([latents, extra], axis=1)


def morphology_setting(requested: bool | str, index: pd.DataFrame | None) -> tuple[bool, dict[str, Any]]:
    """``embed.morphology`` as used, and how it was chosen: ``auto`` embeds the features wherever the tile
    index has them (image particles), so size and shape count even when the images are too few for the VAE."""
    choices = Choices()
    features = [] if index is None else [c for c in index.columns if c.startswith(FEATURE_PREFIX)]
    found = (True, f"the tile index has {len(features)} morphology features") if features else \
        (False, "the tile index has no morphology features (they are measured for image particles)")
    return bool(choices.pick("morphology", requested, found, False, "")), choices.records["morphology"]
