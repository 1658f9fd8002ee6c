"""Morphology features next to the latents, for embedding both (``embed.morphology: true``).

With few images a VAE learns little, while measured shape and size (the ``feat_*`` columns of the tile
index) already separate taxa; on larger sets the two are complementary. Each feature is z-scored (a
feature that could not be measured gets the mean), and the feature block is scaled so that its total
variance equals the latents': neither block outweighs the other because it has more columns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quagga.params import ParamsError
from quagga.settings import Choices

FEATURE_PREFIX = "feat_"
COLUMN_PREFIX = "z_feat_"  # z_*: the embedding reads these with the latents


@dataclass(frozen=True)
class MorphologyScaling:
    """How the feature block was scaled for the map it was fitted with (``models/morphology.json``): a dataset
    projected onto that map must be scaled the same way, not by its own statistics."""

    features: list[str]
    mean: list[float]
    std: list[float]
    scale: float

    @classmethod
    def fit(cls, latents: pd.DataFrame, index: pd.DataFrame) -> MorphologyScaling:
        """Each feature's mean and spread, and the block's scale that makes its variance the latents'."""
        features = [c for c in index.columns if c.startswith(FEATURE_PREFIX)]
        if not features:
            raise ParamsError("embed.morphology is set, but the tile index has no feat_* columns "
                              "(morphology features are measured for image tiles only)")
        values = _feature_values(latents, index, features)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        std = np.where(std > 0, std, 1.0)
        block_var = np.nan_to_num((values - mean) / std, nan=0.0).var(axis=0).sum()
        latent = latents[[c for c in latents.columns if c.startswith("z_")]].to_numpy(dtype=np.float64)
        scale = float(np.sqrt(latent.var(axis=0).sum() / block_var)) if block_var > 0 else 0.0
        return cls(features, mean.tolist(), std.tolist(), scale)

    def apply(self, latents: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
        """``latents`` with a ``z_feat_*`` column per feature of its items (matched by item_id)."""
        missing = [f for f in self.features if f not in index.columns]
        if missing:
            raise ParamsError(f"the tile index lacks the morphology features the map was made with: {missing}")
        z = (_feature_values(latents, index, self.features) - np.asarray(self.mean)) / np.asarray(self.std)
        z = np.nan_to_num(z, nan=0.0) * self.scale
        extra = pd.DataFrame(z.astype(np.float32), index=latents.index,
                             columns=[COLUMN_PREFIX + f[len(FEATURE_PREFIX):] for f in self.features])
        return pd.concat([latents, extra], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _feature_values(latents: pd.DataFrame, index: pd.DataFrame, features: list[str]) -> np.ndarray:
    return index.set_index("item_id").reindex(latents["item_id"])[features].to_numpy(dtype=np.float64)


def with_morphology(latents: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """``latents`` with a ``z_feat_*`` column per morphology feature, scaled by these items' own statistics."""
    return MorphologyScaling.fit(latents, index).apply(latents, index)


def morphology_setting(requested: bool | str, index: pd.DataFrame | None) -> tuple[bool, dict[str, Any]]:
    """``embed.morphology`` as used, and how it was chosen: ``auto`` embeds the features wherever the tile
    index has them (image particles), so size and shape count even when the images are too few for the VAE."""
    choices = Choices()
    features = [] if index is None else [c for c in index.columns if c.startswith(FEATURE_PREFIX)]
    found = (True, f"the tile index has {len(features)} morphology features") if features else \
        (False, "the tile index has no morphology features (they are measured for image particles)")
    return bool(choices.pick("morphology", requested, found, False, "")), choices.records["morphology"]
