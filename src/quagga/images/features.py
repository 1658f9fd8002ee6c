"""Morphology features of the particle in a box, in source pixels, for the index table.

The particle is the largest region of an Otsu mask of the crop with its context margin (the margin gives
Otsu some background even when a box is tight); holes are filled, so a pollen grain with a light
interior counts as one solid grain. Polarity comes from the local background: pixels on the far side of
the threshold from the background are the particle, so dark-on-bright (transmitted light) and
bright-on-dark (fluorescence) images both work without a setting. Features are in source pixels, so
sizes compare across tiles whatever the tile scale.

The set follows what flow-imaging instruments (FlowCam, IFCB, VisualSpreadsheet) export: size, shape,
Feret diameters, intensity statistics, edge sharpness and texture. Shape and size come from scikit-image
``regionprops``; texture from its grey-level co-occurrence matrix (``graycomatrix``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops
from skimage.filters import sobel, threshold_otsu
from skimage.measure import label, regionprops

# index column -> skimage regionprops property
REGIONPROPS = {
    "feat_area": "area",
    "feat_convex_area": "area_convex",
    "feat_bbox_area": "area_bbox",
    "feat_equivalent_diameter": "equivalent_diameter_area",
    "feat_perimeter": "perimeter",
    "feat_perimeter_crofton": "perimeter_crofton",
    "feat_eccentricity": "eccentricity",
    "feat_solidity": "solidity",
    "feat_extent": "extent",
    "feat_major_axis": "axis_major_length",
    "feat_minor_axis": "axis_minor_length",
    "feat_orientation": "orientation",
    "feat_mean_intensity": "intensity_mean",
    "feat_min_intensity": "intensity_min",
    "feat_max_intensity": "intensity_max",
}
DERIVED = [
    "feat_aspect_ratio",  # minor / major axis: 1 for a disc, near 0 for a fibre
    "feat_circularity",  # 4 pi area / perimeter^2: 1 for a disc, pi/4 for a square
    "feat_feret_max",  # caliper length: the widest projection of the particle
    "feat_feret_min",  # caliper width: the narrowest projection
    "feat_feret_ratio",  # feret_min / feret_max
    "feat_std_intensity",
    "feat_p10_intensity",
    "feat_p50_intensity",
    "feat_p90_intensity",
    "feat_skew_intensity",
    "feat_kurtosis_intensity",
    "feat_contrast",  # mean intensity minus the local background: opacity, signed by polarity
    "feat_edge_gradient",  # mean Sobel magnitude on the outline: sharp (in focus) or blurred edge
    "feat_entropy",  # Shannon entropy of the particle's intensities (bits)
    "feat_glcm_contrast",
    "feat_glcm_homogeneity",
    "feat_glcm_energy",
    "feat_glcm_correlation",
    "feat_hu1",  # first two Hu moment invariants: elongation and spread, rotation invariant
    "feat_hu2",
]
FEATURES = [*REGIONPROPS, *DERIVED]
COLOUR_NAMES = ("red", "green", "blue")
# colour images (channel rgb): the particle's and its field's level in each channel
COLOUR_FEATURES = [f"feat_{stat}_{name}" for name in COLOUR_NAMES for stat in ("mean", "std", "contrast")]
GLCM_LEVELS = 32
_FERET_ANGLES = np.deg2rad(np.arange(0.0, 180.0, 1.0))


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
    out = {column: float(region[prop]) for column, prop in REGIONPROPS.items()}
    values = crop[mask].astype(np.float64)
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    outline = mask & ~ndimage.binary_erosion(mask)
    feret_min, feret_max = _feret(np.argwhere(outline))  # the outline has the region's convex hull
    std = values.std()
    z = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    out.update({
        "feat_aspect_ratio": _ratio(out["feat_minor_axis"], out["feat_major_axis"]),
        "feat_circularity": _ratio(4 * math.pi * out["feat_area"], out["feat_perimeter"] ** 2),
        "feat_feret_max": feret_max,
        "feat_feret_min": feret_min,
        "feat_feret_ratio": _ratio(feret_min, feret_max),
        "feat_std_intensity": float(std),
        "feat_p10_intensity": float(p10),
        "feat_p50_intensity": float(p50),
        "feat_p90_intensity": float(p90),
        "feat_skew_intensity": float(np.mean(z**3)),
        "feat_kurtosis_intensity": float(np.mean(z**4) - 3.0) if std > 0 else 0.0,  # excess: 0 for a Gaussian
        "feat_contrast": float(values.mean() - background),
        "feat_edge_gradient": float(sobel(crop)[outline].mean()),
        "feat_entropy": _entropy(_quantize(values, crop)),
        **_texture(crop, region.slice),
        "feat_hu1": float(region.moments_hu[0]),
        "feat_hu2": float(region.moments_hu[1]),
    })
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _feret(coords: np.ndarray) -> tuple[float, float]:
    """Smallest and largest caliper width of a pixel set, over 1-degree steps (pixels count whole: + 1)."""
    projections = coords.astype(np.float64) @ np.stack([np.cos(_FERET_ANGLES), np.sin(_FERET_ANGLES)])
    extent = projections.max(axis=0) - projections.min(axis=0) + 1.0
    return float(extent.min()), float(extent.max())


def _quantize(values: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Intensities as ``GLCM_LEVELS`` grey levels spanning the crop's range."""
    low, high = float(crop.min()), float(crop.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.minimum((scaled * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)


def _entropy(levels: np.ndarray) -> float:
    """Shannon entropy (bits) of grey levels."""
    p = np.bincount(levels.ravel(), minlength=GLCM_LEVELS) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _texture(crop: np.ndarray, box: tuple[slice, slice]) -> dict[str, float]:
    """Haralick-style texture of the particle's bounding box, averaged over four directions."""
    patch = _quantize(crop[box], crop)
    glcm = graycomatrix(patch, distances=[1], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                        levels=GLCM_LEVELS, symmetric=True, normed=True)
    out = {}
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        value = graycoprops(glcm, prop)
        out[f"feat_glcm_{prop}"] = float(np.nanmean(value)) if np.isfinite(value).any() else float("nan")
    return out


def colour_features(crop: np.ndarray, gray: np.ndarray) -> dict[str, float]:
    """Per-channel mean, spread and contrast to the field of the particle in a colour ``crop`` [H, W, 3]
    (its pixels found in the gray ``gray``): a purple-stained nucleus and a pink red cell differ in hue,
    not only in brightness. NaN when no particle stands out."""
    from quagga.images.normalize import local_background  # normalize imports nothing of this module

    mask = particle_mask(gray, float(local_background(gray)))
    if not mask.any():
        return dict.fromkeys(COLOUR_FEATURES, float("nan"))
    field = local_background(crop)
    out = {}
    for c, name in enumerate(COLOUR_NAMES):
        values = crop[..., c][mask].astype(np.float64)
        out.update({f"feat_mean_{name}": float(values.mean()), f"feat_std_{name}": float(values.std()),
                    f"feat_contrast_{name}": float(values.mean() - field[c])})
    return out
