"""Morphology features of the particle in a box, in source pixels, for the index table.

The particle is the largest region of an Otsu mask of the crop with its context margin (the margin gives
Otsu some background even when a box is tight); holes are filled, so a pollen grain with a light
interior counts as one solid grain. Polarity comes from the local background: pixels on the far side of
the threshold from the background are the particle, so dark-on-bright (transmitted light) and
bright-on-dark (fluorescence) images both work without a setting. Features are in source pixels, so
sizes compare across tiles whatever the tile scale."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

# index column -> skimage regionprops property
FEATURES = {
    "feat_area": "area",
    "feat_equivalent_diameter": "equivalent_diameter_area",
    "feat_perimeter": "perimeter",
    "feat_eccentricity": "eccentricity",
    "feat_solidity": "solidity",
    "feat_major_axis": "axis_major_length",
    "feat_minor_axis": "axis_minor_length",
    "feat_mean_intensity": "intensity_mean",
}


def particle_mask(crop: np.ndarray, background: float) -> np.ndarray:
    """Boolean mask of the largest particle in ``crop`` (all False when the crop has no contrast)."""
    if crop.max() <= crop.min():
        return np.zeros(crop.shape, dtype=bool)
    threshold = threshold_otsu(crop)
    mask = crop < threshold if background >= threshold else crop > threshold
    regions, n = label(ndimage.binary_fill_holes(mask), return_num=True)
    if n == 0:
        return mask
    largest = np.argmax(np.bincount(regions.ravel())[1:]) + 1
    return regions == largest


def particle_features(crop: np.ndarray, background: float) -> dict[str, float]:
    """The ``feat_*`` columns of one particle; NaN when no particle stands out from the background."""
    mask = particle_mask(crop, background)
    if not mask.any():
        return dict.fromkeys(FEATURES, float("nan"))
    region = regionprops(mask.astype(np.uint8), intensity_image=crop)[0]
    return {column: float(region[prop]) for column, prop in FEATURES.items()}
