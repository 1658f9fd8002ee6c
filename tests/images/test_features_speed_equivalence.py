"""The fast particle features equal the straightforward library calls they replace.

``_reference_features`` is the implementation before the speed-up (scikit-image regionprops, convex
hull image, graycomatrix/graycoprops and sobel on the whole crop, Feret over every outline pixel).
Features worked out in the same floating-point steps must equal it bit for bit; those summed in another
order (Feret on hull corners, moments from integer sums, skew and kurtosis as products, the texture
sums) within TOLERANCE, far below anything a feature can resolve. No timings here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import draw
from skimage.feature import graycomatrix, graycoprops
from skimage.filters import sobel, threshold_otsu
from skimage.measure import label, regionprops
from skimage.morphology import convex_hull_image

from quagga.images import features as F
from quagga.images.normalize import local_background

TOLERANCE = {"rtol": 1e-9, "atol": 1e-12}  # measured: 3e-13 relative at worst on BCCD and PBC crops
TOLERANT = {
    "feat_feret_max", "feat_feret_min", "feat_feret_ratio", "feat_major_axis", "feat_minor_axis",
    "feat_eccentricity", "feat_orientation", "feat_aspect_ratio", "feat_hu1", "feat_hu2",
    "feat_skew_intensity", "feat_kurtosis_intensity", "feat_glcm_contrast", "feat_glcm_homogeneity",
    "feat_glcm_energy", "feat_glcm_correlation",
}
FIELD, DARK = 0.8, 0.25


def _reference_mask(crop: np.ndarray, background: float) -> np.ndarray:
    if crop.max() <= crop.min():
        return np.zeros(crop.shape, dtype=bool)
    threshold = threshold_otsu(crop)
    mask = crop < threshold if background >= threshold else crop > threshold
    regions, n = label(ndimage.binary_fill_holes(mask), return_num=True)
    if n == 0:
        return mask
    return regions == np.argmax(np.bincount(regions.ravel())[1:]) + 1


def _reference_feret(coords: np.ndarray) -> tuple[float, float]:
    projections = coords.astype(np.float64) @ np.stack([np.cos(F._FERET_ANGLES), np.sin(F._FERET_ANGLES)])
    extent = projections.max(axis=0) - projections.min(axis=0) + 1.0
    return float(extent.min()), float(extent.max())


def _reference_levels(values: np.ndarray, crop: np.ndarray) -> np.ndarray:
    low, high = float(crop.min()), float(crop.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.minimum((scaled * F.GLCM_LEVELS).astype(np.uint8), F.GLCM_LEVELS - 1)


def _reference_texture(levels: np.ndarray) -> dict[str, float]:
    glcm = graycomatrix(levels, distances=[1], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                        levels=F.GLCM_LEVELS, symmetric=True, normed=True)
    out = {}
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        value = graycoprops(glcm, prop)
        out[f"feat_glcm_{prop}"] = float(np.nanmean(value)) if np.isfinite(value).any() else float("nan")
    return out


def _reference_features(crop: np.ndarray, background: float) -> dict[str, float]:
    mask = _reference_mask(crop, background)
    if not mask.any():
        return dict.fromkeys(F.FEATURES, float("nan"))
    region = regionprops(mask.astype(np.uint8), intensity_image=crop)[0]
    out = {column: float(region[prop]) for column, prop in F.REGIONPROPS.items()}
    values = crop[mask].astype(np.float64)
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    outline = mask & ~ndimage.binary_erosion(mask)
    feret_min, feret_max = _reference_feret(np.argwhere(outline))
    std = values.std()
    z = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    ratio = F._ratio
    out.update({
        "feat_aspect_ratio": ratio(out["feat_minor_axis"], out["feat_major_axis"]),
        "feat_circularity": ratio(4 * math.pi * out["feat_area"], out["feat_perimeter"] ** 2),
        "feat_feret_max": feret_max,
        "feat_feret_min": feret_min,
        "feat_feret_ratio": ratio(feret_min, feret_max),
        "feat_std_intensity": float(std),
        "feat_p10_intensity": float(p10),
        "feat_p50_intensity": float(p50),
        "feat_p90_intensity": float(p90),
        "feat_skew_intensity": float(np.mean(z**3)),
        "feat_kurtosis_intensity": float(np.mean(z**4) - 3.0) if std > 0 else 0.0,
        "feat_contrast": float(values.mean() - background),
        "feat_edge_gradient": float(sobel(crop)[outline].mean()),
        "feat_entropy": F._entropy(_reference_levels(values, crop)),
        **_reference_texture(_reference_levels(crop[region.slice], crop)),
        "feat_hu1": float(region.moments_hu[0]),
        "feat_hu2": float(region.moments_hu[1]),
    })
    return out


def _field(shape: tuple[int, int], seed: int = 0, noise: float = 0.01) -> np.ndarray:
    return FIELD + np.random.default_rng(seed).normal(0, noise, shape)


def _ellipse_crop(shape: tuple[int, int], ry: float, rx: float, angle: float, seed: int = 0) -> np.ndarray:
    image = _field(shape, seed)
    rr, cc = draw.ellipse(shape[0] / 2, shape[1] / 2, ry, rx, shape, rotation=angle)
    image[rr, cc] = DARK
    return image


def _rectangle_crop(shape: tuple[int, int], height: float, width: float, angle: float) -> np.ndarray:
    image = _field(shape, 1)
    corners = np.array([[-height, -width], [-height, width], [height, width], [height, -width]]) / 2
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rows, cols = (corners @ turn.T + np.array(shape) / 2).T
    rr, cc = draw.polygon(rows, cols, shape)
    image[rr, cc] = DARK
    return image


def _crops() -> dict[str, np.ndarray]:
    """Fixed synthetic crops: the shapes of the task (ellipses, rectangles at several angles, one pixel),
    their degenerate and edge cases, textures, both float precisions."""
    crops = {}
    for angle in (0.0, 0.3, math.pi / 4, 1.1, math.pi / 2):
        crops[f"ellipse {angle:.2f}"] = _ellipse_crop((70, 80), 22, 9, angle)
    crops["disc"] = _ellipse_crop((61, 61), 20, 20, 0.0)
    crops["big ellipse float32"] = _ellipse_crop((160, 150), 60, 35, 0.7).astype(np.float32)
    for degrees in (0, 15, 30, 45, 60, 90, 120, 165):
        crops[f"rectangle {degrees}"] = _rectangle_crop((80, 80), 40, 14, math.radians(degrees))
    crops["square"] = _rectangle_crop((60, 60), 30, 30, 0.0)
    pixel = _field((15, 17), noise=0.0)
    pixel[7, 9] = DARK
    crops["one pixel"] = pixel
    line = _field((30, 30), noise=0.0)
    line[np.arange(5, 25), np.arange(5, 25)] = DARK  # pixels on one line: degenerate moments
    crops["diagonal line"] = line
    row = _field((20, 40), noise=0.0)
    row[10, 5:35] = DARK
    crops["horizontal line"] = row
    ring = _ellipse_crop((70, 70), 25, 25, 0.0, seed=2)
    rr, cc = draw.disk((35, 35), 15)
    ring[rr, cc] = FIELD  # a hole to fill
    crops["ring"] = ring
    edge = _ellipse_crop((60, 60), 20, 30, 0.2, seed=3)[:, :45]  # cut by the crop's edge
    crops["cut by the edge"] = edge
    textured = _ellipse_crop((70, 70), 25, 18, 0.5, seed=4)
    rr, cc = draw.ellipse(35, 35, 24, 17, (70, 70), rotation=0.5)
    textured[rr, cc] = np.random.default_rng(5).uniform(0.05, 0.45, len(rr))
    crops["textured"] = textured
    crops["bright on dark float32"] = (1.0 - _ellipse_crop((50, 90), 15, 35, 0.1, seed=6)).astype(np.float32)
    crops["noise"] = np.random.default_rng(7).random((40, 50))
    crops["one row"] = np.concatenate([np.full(10, FIELD), np.full(8, DARK), np.full(12, FIELD)])[None, :]
    crops["uint8"] = (255 * _ellipse_crop((50, 60), 18, 12, 0.9, seed=8)).astype(np.uint8)
    return crops


CROPS = _crops()


@pytest.mark.parametrize("name", list(CROPS))
def test_features_equal_the_library_calls(name: str) -> None:
    crop = CROPS[name]
    background = local_background(crop)
    expected, got = _reference_features(crop, background), F.particle_features(crop, background)
    assert list(got) == list(expected) == F.FEATURES
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        elif key in TOLERANT:
            assert got[key] == pytest.approx(value, rel=TOLERANCE["rtol"], abs=TOLERANCE["atol"]), key
        else:
            assert got[key] == value, key  # the same floating-point steps: bit for bit


@pytest.mark.parametrize("name", list(CROPS))
def test_particle_mask_is_the_filled_largest_region(name: str) -> None:
    crop = CROPS[name]
    background = local_background(crop)
    np.testing.assert_array_equal(F.particle_mask(crop, background), _reference_mask(crop, background))


def test_a_crop_without_contrast_has_no_particle() -> None:
    crop = np.full((12, 9), 0.4)
    assert not F.particle_mask(crop, 0.4).any()
    assert all(math.isnan(v) for v in F.particle_features(crop, 0.4).values())


def _box_masks() -> list[np.ndarray]:
    """Box masks of single particles: the crops' particles and random blobs (their largest region)."""
    masks = []
    for crop in CROPS.values():
        mask = _reference_mask(crop, local_background(crop))
        if mask.any():
            masks.append(mask[ndimage.find_objects(mask.astype(np.uint8))[0]])
    rng = np.random.default_rng(8)
    for _ in range(150):
        blob = rng.random(rng.integers(1, 40, 2)) < rng.uniform(0.1, 0.9)
        if blob.any():
            regions = label(blob)
            largest = np.argmax(np.bincount(regions.ravel())[1:]) + 1
            masks.append((regions == largest)[ndimage.find_objects(regions, max_label=largest)[largest - 1]])
    return masks


def test_feret_from_hull_corners_equals_projecting_every_pixel() -> None:
    for mask in _box_masks():
        corners = np.hstack(F._hull_sides(mask))
        expected = _reference_feret(np.argwhere(mask) + (7, 3))
        assert F._feret(corners, (7, 3)) == pytest.approx(expected, rel=TOLERANCE["rtol"], abs=0)


def test_convex_area_equals_the_convex_hull_image() -> None:
    for mask in _box_masks():
        left, right = F._hull_sides(mask)
        assert F._convex_area(left, right, mask.shape[0]) == convex_hull_image(mask).sum()


def test_perimeters_and_moments_equal_regionprops() -> None:
    for mask in _box_masks():
        region = regionprops(mask.astype(np.uint8))[0]
        _, perimeter, crofton = F._outline(mask)
        assert (perimeter, crofton) == (region.perimeter, region.perimeter_crofton)  # bit for bit
        expected = (region.axis_major_length, region.axis_minor_length, region.eccentricity, region.orientation,
                    *region.moments_hu[:2])
        assert F._moment_features(mask) == pytest.approx(expected, rel=TOLERANCE["rtol"], abs=TOLERANCE["atol"])


def test_sobel_at_pixels_sums_in_sobel_order() -> None:
    """Values over many decades, where another order of the weighted sums shows (reversed: it does)."""
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        big = 1e8 * rng.integers(0, 3, (30, 40)) + rng.random((30, 40)) * 10.0 ** rng.uniform(-12, 0, (30, 40))
        crop = np.where(rng.random((30, 40)) < 0.5, big, rng.random((30, 40))).astype(dtype)
        rows, cols = np.nonzero(np.ones(crop.shape, dtype=bool))
        np.testing.assert_array_equal(F._sobel_at(crop, rows, cols), sobel(crop)[rows, cols])


def test_percentiles_equal_numpy() -> None:
    rng = np.random.default_rng(10)
    for size in (1, 2, 3, 10, 11, 257, 4000):
        pixels = rng.random(size).astype(np.float32)
        expected = np.percentile(pixels.astype(np.float64), [10, 50, 90])
        np.testing.assert_array_equal(F._percentiles(pixels), expected)


def test_texture_equals_graycoprops() -> None:
    rng = np.random.default_rng(11)
    for shape in ((1, 1), (1, 9), (9, 1), (2, 2), (17, 23), (40, 31)):
        for levels in (rng.integers(0, F.GLCM_LEVELS, shape), rng.integers(0, 3, shape), np.full(shape, 5)):
            levels = levels.astype(np.uint8)
            expected = _reference_texture(levels)
            assert F._texture(levels) == pytest.approx(expected, rel=TOLERANCE["rtol"], abs=TOLERANCE["atol"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_otsu_histogram_is_the_librarys(dtype: type) -> None:
    """Counts and bin centres equal scikit-image's histogram of the crop (np.histogram's 256 bins), pixels
    on bin edges, the extremes and a constant region included."""
    from skimage.exposure import histogram

    rng = np.random.default_rng(1)
    low, high = dtype(0.1), dtype(0.9)
    edges = np.linspace(low, high, 257, dtype=dtype)
    crops = [rng.random((40, 50)).astype(dtype), np.concatenate([edges, edges[::7], rng.random(300).astype(dtype)
                                                                  * (high - low) + low]).reshape(-1, 6),
             np.where(rng.random((30, 30)) < 0.5, low, high).astype(dtype), *(c.astype(dtype) for c in CROPS.values()
                                                                           if c.dtype.kind == "f")]
    for crop in crops:
        counts, centres = F._otsu_histogram(crop)
        expected_counts, expected_centres = histogram(crop.reshape(-1), 256, source_range="image")
        np.testing.assert_array_equal(counts, expected_counts)
        np.testing.assert_array_equal(centres, expected_centres)
        assert F._largest_particle(crop, float(np.median(crop))) is None or threshold_otsu(crop) == \
            threshold_otsu(hist=(counts, centres))
