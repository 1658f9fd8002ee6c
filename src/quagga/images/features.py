"""Morphology features of the particle in a box, in source pixels, for the index table.

The particle is the largest region of an Otsu mask of the crop with its context margin (the margin gives
Otsu some background even when a box is tight); holes are filled, so a pollen grain with a light
interior counts as one solid grain. Polarity comes from the local background: pixels on the far side of
the threshold from the background are the particle, so dark-on-bright (transmitted light) and
bright-on-dark (fluorescence) images both work without a setting. Features are in source pixels, so
sizes compare across tiles whatever the tile scale.

The set follows what flow-imaging instruments (FlowCam, IFCB, VisualSpreadsheet) export: size, shape,
Feret diameters, intensity statistics, edge sharpness and texture: scikit-image's ``regionprops``
quantities, its Sobel filter and its grey-level co-occurrence matrix (``graycomatrix``, ``graycoprops``).
Every tiled particle is measured, so they are worked out here on the particle's bounding box, from exact
integer counts where the library tests every pixel (convex hull, perimeters, moments), and the Sobel
filter only on the outline: about a quarter of the library calls' time. Sizes, areas, perimeters,
intensity statistics and percentiles, entropy and edge gradient equal the library's bit for bit; Feret
diameters, axes, eccentricity, orientation, Hu invariants, skew, kurtosis and texture add up in another
order and agree within 1e-9 relative or 1e-12 absolute near zero (3e-13 relative at worst on BCCD and
PBC crops), which tests/images/test_features_speed_equivalence.py checks against the library calls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from skimage.filters import threshold_otsu
from skimage.measure import regionprops
from skimage.util import img_as_float

# index column -> the skimage regionprops property it equals
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
_QUANTILES = np.true_divide([10, 50, 90], 100)  # np.percentile's q / 100
_FERET_ANGLES = np.deg2rad(np.arange(0.0, 180.0, 1.0))
_FERET_DIRECTIONS = np.stack([np.cos(_FERET_ANGLES), np.sin(_FERET_ANGLES)])
# skimage.measure.perimeter (4-neighbourhood) and perimeter_crofton (4 directions): weights of each
# neighbourhood code, the same numbers in the same order, so the weighted sums are the library's
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2
_PERIMETER_KERNEL = np.array([10, 2, 10, 2, 1, 2, 10, 2, 10])  # its 3x3 neighbourhood code, raveled
_CROFTON_WEIGHTS = np.array([
    0, np.pi / 4 * (1 + 1 / (np.sqrt(2))), np.pi / (4 * np.sqrt(2)), np.pi / (2 * np.sqrt(2)), 0,
    np.pi / 4 * (1 + 1 / (np.sqrt(2))), 0, np.pi / (4 * np.sqrt(2)), np.pi / 4, np.pi / 2,
    np.pi / (4 * np.sqrt(2)), np.pi / (4 * np.sqrt(2)), np.pi / 4, np.pi / 2, 0, 0,
])
# skimage.filters.sobel's two derivatives as ndimage.convolve works them out: the neighbours (raveled
# 3x3 positions) and weights of its flipped kernels in raster order, the order its sums take
_SOBEL_TERMS = (
    np.array([[0, 1, 2, 6, 7, 8], [0, 2, 3, 5, 6, 8]]),
    np.array([[-0.25, -0.5, -0.25, 0.25, 0.5, 0.25], [-0.25, 0.25, -0.5, 0.5, -0.25, 0.25]]),
)
# graycomatrix's angles 0, pi/4, pi/2, 3 pi/4 at distance 1, as (row, column) steps
_GLCM_STEPS = np.array([(0, 1), (1, 1), (1, 0), (1, -1)])
_GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
_GLCM_I = np.repeat(np.arange(GLCM_LEVELS), GLCM_LEVELS)  # level i of the pair i * GLCM_LEVELS + j
_GLCM_J = np.tile(np.arange(GLCM_LEVELS), GLCM_LEVELS)
# per pair: 1, i, i^2, i j, (i - j)^2 (graycoprops' contrast weight), its homogeneity weight
_GLCM_WEIGHTS = np.stack([np.ones_like(_GLCM_I), _GLCM_I, _GLCM_I**2, _GLCM_I * _GLCM_J, (_GLCM_I - _GLCM_J) ** 2,
                          1.0 / (1.0 + (_GLCM_I - _GLCM_J) ** 2)], axis=1)


def particle_mask(crop: np.ndarray, background: float) -> np.ndarray:
    """Boolean mask of the largest particle in ``crop`` (all False when the crop has no contrast)."""
    mask = np.zeros(crop.shape, dtype=bool)
    found = _largest_particle(crop, background)
    if found is not None:
        mask[found[0]] = found[1]
    return mask


def _largest_particle(crop: np.ndarray, background: float) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Bounding box of the largest particle and its mask inside the box; None without a particle.

    The particle is the largest 8-connected region of the Otsu mask with its holes filled (background
    regions, 4-connected, that do not reach the crop's edge: ``ndimage.binary_fill_holes``), the first in
    raster order among equals, as ``ndimage.label`` numbers them; found in one compiled pass."""
    if crop.max() <= crop.min():
        return None
    threshold = threshold_otsu(hist=_otsu_histogram(crop)) if crop.dtype.kind == "f" else threshold_otsu(crop)
    mask = crop < threshold if background >= threshold else crop > threshold
    top, bottom, left, right, particle = _largest_region(mask)
    if bottom == 0:
        return None
    return (slice(top, bottom), slice(left, right)), particle


@njit(cache=True, nogil=True)
def _largest_region(mask: np.ndarray) -> tuple[int, int, int, int, np.ndarray]:  # pragma: no cover - numba
    """(top, bottom, left, right, mask in that box) of :func:`_largest_particle`'s region of ``mask``; a
    zero bottom when the mask is empty. Holes: the background not reached from the edge (4-connected
    flood); regions: union-find over the raster scan, each region's root its first pixel."""
    height, width = mask.shape
    outside = np.zeros((height, width), dtype=np.bool_)
    stack_rows, stack_cols = np.empty(height * width, dtype=np.int64), np.empty(height * width, dtype=np.int64)
    top = 0
    for r in range(height):
        for c in range(width):
            if (r == 0 or r == height - 1 or c == 0 or c == width - 1) and not mask[r, c]:
                outside[r, c] = True
                stack_rows[top], stack_cols[top] = r, c
                top += 1
    while top > 0:
        top -= 1
        r, c = stack_rows[top], stack_cols[top]
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < height and 0 <= cc < width and not mask[rr, cc] and not outside[rr, cc]:
                outside[rr, cc] = True
                stack_rows[top], stack_cols[top] = rr, cc
                top += 1
    parent = np.arange(height * width)
    for r in range(height):
        for c in range(width):
            if outside[r, c]:
                continue
            for rr, cc in ((r - 1, c - 1), (r - 1, c), (r - 1, c + 1), (r, c - 1)):
                if rr >= 0 and 0 <= cc < width and not outside[rr, cc]:
                    a, b = r * width + c, rr * width + cc
                    while parent[a] != a:
                        a = parent[a]
                    while parent[b] != b:
                        b = parent[b]
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    size = np.zeros(height * width, dtype=np.int64)
    best = -1
    for r in range(height):
        for c in range(width):
            if not outside[r, c]:
                p = r * width + c
                root = p
                while parent[root] != root:
                    root = parent[root]
                parent[p] = root
                size[root] += 1
    for p in range(height * width):  # raster order: the first root among equal sizes
        if size[p] > (size[best] if best >= 0 else 0):
            best = p
    if best < 0:
        return 0, 0, 0, 0, np.zeros((0, 0), dtype=np.bool_)
    top, bottom, left, right = height, 0, width, 0
    for r in range(height):
        for c in range(width):
            if not outside[r, c] and parent[r * width + c] == best:
                top, bottom, left, right = min(top, r), max(bottom, r + 1), min(left, c), max(right, c + 1)
    box = np.zeros((bottom - top, right - left), dtype=np.bool_)
    for r in range(top, bottom):
        for c in range(left, right):
            box[r - top, c - left] = not outside[r, c] and parent[r * width + c] == best
    return top, bottom, left, right, box


def _otsu_histogram(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (counts, bin centres) ``threshold_otsu(crop)`` makes of a float crop (``skimage.exposure.histogram``:
    256 ``np.histogram`` bins between the crop's minimum and maximum in the crop's float type; a bin holds its
    left edge, the last also its right). Integer crops get a bin per value there, so they keep the library's
    call. The edges are numpy's own and each pixel's bin is checked against them (compiled), so the counts
    are numpy's."""
    low, high = crop.min(), crop.max()
    edges = np.linspace(low, high, 257, endpoint=True, dtype=np.result_type(low, high, crop))
    counts = _bin_counts(np.ascontiguousarray(crop, dtype=edges.dtype).reshape(-1), edges)
    return counts, (edges[:-1] + edges[1:]) / 2.0


@njit(cache=True, nogil=True)
def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled (numba)
    """``np.histogram(values, edges)`` for equal bins: each value's bin estimated from its offset, then
    moved so that edges[i] <= value < edges[i + 1] (<= for the last bin)."""
    bins = len(edges) - 1
    counts = np.zeros(bins, dtype=np.int64)
    first, per_bin = edges[0], bins / (edges[-1] - edges[0])
    for v in values:
        i = min(max(int((v - first) * per_bin), 0), bins - 1)
        while i > 0 and v < edges[i]:
            i -= 1
        while i < bins - 1 and v >= edges[i + 1]:
            i += 1
        counts[i] += 1
    return counts


def particle_features(crop: np.ndarray, background: float, colour: np.ndarray | None = None) -> dict[str, float]:
    """The ``feat_*`` columns of one particle; NaN when no particle stands out from the background.

    With ``colour`` (the same crop in colour, [H, W, 3]) also its colour features (:data:`COLOUR_FEATURES`),
    of the particle found once in the gray ``crop``.
    """
    found = _largest_particle(crop, background)
    names = FEATURES + COLOUR_FEATURES * (colour is not None)
    if found is None:
        return dict.fromkeys(names, float("nan"))
    box, image = found
    return {**_shape_features(crop, background, box, image),
            **(_colour_features(colour, box, image) if colour is not None else {})}


def _shape_features(crop: np.ndarray, background: float, box: tuple[slice, slice], image: np.ndarray
                    ) -> dict[str, float]:
    """The 35 ``feat_*`` of the particle ``image`` (its mask inside ``box`` of the gray ``crop``)."""
    patch = crop[box]
    pixels = patch[image]  # the crop's dtype, as regionprops' intensity statistics see them
    values = pixels.astype(np.float64)
    area = float(values.size)
    left, right = _hull_sides(image)
    convex_area = float(_convex_area(left, right, image.shape[0]))
    outline, perimeter, perimeter_crofton = _outline(image)
    major, minor, eccentricity, orientation, hu1, hu2 = _moment_features(image)
    low, high = float(crop.min()), float(crop.max())
    p10, p50, p90 = _percentiles(pixels)
    feret_min, feret_max = _feret(np.hstack([left, right]), (box[0].start, box[1].start))
    mean = values.mean()
    centred = values - mean
    std = math.sqrt(np.sum(centred * centred) / values.size)  # values.std()'s steps, sharing the centring
    z = centred / std if std > 0 else np.zeros_like(values)
    z2 = z * z  # z^3 and z^4 as products: pow per pixel cost more than all the other moments together
    return {
        "feat_area": area,
        "feat_convex_area": convex_area,
        "feat_bbox_area": float(image.size),
        "feat_equivalent_diameter": (4 * area / math.pi) ** (1 / 2),
        "feat_perimeter": perimeter,
        "feat_perimeter_crofton": perimeter_crofton,
        "feat_eccentricity": eccentricity,
        "feat_solidity": area / convex_area,
        "feat_extent": area / image.size,
        "feat_major_axis": major,
        "feat_minor_axis": minor,
        "feat_orientation": orientation,
        "feat_mean_intensity": float(np.mean(pixels)),
        "feat_min_intensity": float(pixels.min()),
        "feat_max_intensity": float(pixels.max()),
        "feat_aspect_ratio": _ratio(minor, major),
        "feat_circularity": _ratio(4 * math.pi * area, perimeter**2),
        "feat_feret_max": feret_max,
        "feat_feret_min": feret_min,
        "feat_feret_ratio": _ratio(feret_min, feret_max),
        "feat_std_intensity": float(std),
        "feat_p10_intensity": float(p10),
        "feat_p50_intensity": float(p50),
        "feat_p90_intensity": float(p90),
        "feat_skew_intensity": float(np.mean(z2 * z)),
        "feat_kurtosis_intensity": float(np.mean(z2 * z2) - 3.0) if std > 0 else 0.0,  # excess: 0 for a Gaussian
        "feat_contrast": float(mean - background),
        "feat_edge_gradient": float(_sobel_at(crop, outline[0] + box[0].start, outline[1] + box[1].start).mean()),
        "feat_entropy": _entropy(_quantize(values, low, high)),
        **_texture(_quantize(patch, low, high)),
        "feat_hu1": hu1,
        "feat_hu2": hu2,
    }


def _percentiles(pixels: np.ndarray) -> np.ndarray:
    """``np.percentile(pixels, [10, 50, 90])`` of the float64 pixels, in its steps ('linear': the order
    statistics either side of (n - 1) q, interpolated as its ``_lerp``), the order statistics picked in
    the pixels' own (float32) precision: the same values, half the data to partition."""
    n = pixels.size
    position = (n - 1) * _QUANTILES
    below = np.minimum(np.floor(position).astype(np.intp), n - 1)
    above = np.minimum(below + 1, n - 1)
    ordered = np.partition(pixels, np.concatenate([below, above]))
    low, high = ordered[below].astype(np.float64), ordered[above].astype(np.float64)
    gamma, step = position - below, high - low
    return np.where(gamma >= 0.5, high - step * (1 - gamma), low + step * gamma)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _hull_sides(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) [2, K] in the box of the particle's pixels that may be corners of its convex hull:
    on its left side, then on its right side, each in row order.

    Every row of a connected particle's box has pixels, and only a row's first or last pixel can be a
    corner; an inner row's first pixel only where the first pixels bulge out (twice its column below the
    sum of its neighbours' columns: else it lies between their midpoint and the row's last pixel), the
    last pixel likewise. Any linear function of the pixels is largest and smallest at hull corners."""
    rows = np.arange(image.shape[0])
    first = np.argmax(image, axis=1)
    last = image.shape[1] - 1 - np.argmax(image[:, ::-1], axis=1)
    left, right = np.ones(len(rows), dtype=bool), np.ones(len(rows), dtype=bool)
    left[1:-1] = 2 * first[1:-1] < first[:-2] + first[2:]
    right[1:-1] = 2 * last[1:-1] > last[:-2] + last[2:]
    return np.stack([rows[left], first[left]]), np.stack([rows[right], last[right]])


def _feret(corners: np.ndarray, origin: tuple[int, int]) -> tuple[float, float]:
    """Smallest and largest caliper width of a particle's pixels, over 1-degree steps (pixels count whole:
    + 1), from its hull ``corners`` [2, K] (which hold every projection's extremes) in crop coordinates
    (``origin``: the box's corner in the crop)."""
    projections = (corners.T + np.asarray(origin)).astype(np.float64) @ _FERET_DIRECTIONS
    extent = projections.max(axis=0) - projections.min(axis=0) + 1.0
    return float(extent.min()), float(extent.max())


def _convex_area(left: np.ndarray, right: np.ndarray, height: int) -> int:
    """Pixels of scikit-image's convex hull image of a particle's box mask (``regionprops`` area_convex),
    from the hull's candidate corners on the ``left`` and ``right`` side (``_hull_sides``).

    scikit-image takes the pixel centres in or on the hull of the pixels' edge midpoints: the hull of the
    centres widened by the half-pixel diamond, so a pixel counts when a point of the centres' hull lies
    within half a pixel of it (in |row| + |column|). Row by row that is a column range, counted here in
    exact integer arithmetic instead of testing every pixel of the box against a polygon."""
    lowest = _first_columns(*_convex_minorant(*left), height)
    highest = -_first_columns(*_convex_minorant(right[0], -right[1]), height)  # the right side, mirrored
    return int(np.maximum(highest - lowest + 1, 0).sum())


@njit(cache=True, nogil=True)
def _convex_minorant(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Corners of the lowest convex curve on or below ``cols`` over increasing ``rows`` (Andrew's monotone
    chain, compiled): the hull's side through them."""
    chain_rows, chain_cols = np.empty(len(rows), dtype=np.int64), np.empty(len(rows), dtype=np.int64)
    m = 0
    for i in range(len(rows)):
        r, c = rows[i], cols[i]
        while m >= 2 and ((chain_cols[m - 1] - chain_cols[m - 2]) * (r - chain_rows[m - 2])
                          >= (c - chain_cols[m - 2]) * (chain_rows[m - 1] - chain_rows[m - 2])):
            m -= 1
        chain_rows[m], chain_cols[m] = r, c
        m += 1
    return chain_rows[:m].copy(), chain_cols[:m].copy()


def _first_columns(rows: np.ndarray, cols: np.ndarray, height: int) -> np.ndarray:
    """For each pixel row of the box, the first column within half a pixel of the convex side through the
    corners (``rows``, ``cols``): with a(r) the side's column at row r (linear between corners, which lie
    on whole rows), ceil(min(a(r) - 1/2, (a(r) + a(r - 1)) / 2, (a(r) + a(r + 1)) / 2)), as fractions."""
    r = np.arange(height)
    start = np.minimum(np.maximum(np.searchsorted(rows, r, side="right") - 1, 0), max(len(rows) - 2, 0))
    end = np.minimum(start + 1, len(rows) - 1)
    den = np.maximum(rows[end] - rows[start], 1)
    num = cols[start] * den + (cols[end] - cols[start]) * (r - rows[start])  # a(r) = num / den
    first = -((den - 2 * num) // (2 * den))  # ceiling division throughout
    between = -(-(num[1:] * den[:-1] + num[:-1] * den[1:]) // (2 * den[1:] * den[:-1]))
    first[1:] = np.minimum(first[1:], between)
    first[:-1] = np.minimum(first[:-1], between)
    return first


def _outline(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Outline of a particle's box mask (its pixels with a 4-neighbour outside: ``ndimage.binary_erosion``'s
    default, nothing outside the box) as (rows, columns), with ``skimage.measure.perimeter`` (4-neighbour)
    and ``perimeter_crofton`` (4 directions): the same neighbourhood codes, counted and weighted as there.
    The perimeter's code of a pixel is its outline convolved with [[10, 2, 10], [2, 1, 2], [10, 2, 10]],
    only odd (outline) codes weigh, so only the outline's are worked out; Crofton's is the 2x2
    configuration at every pixel of the box padded by one."""
    height, width = image.shape
    padded = np.zeros((height + 3, width + 3), dtype=np.uint8)  # the box at [2:-1, 2:-1]
    padded[2:-1, 2:-1] = image
    inside = padded[2:-1, 2:-1]
    border = inside - (inside & padded[1:-2, 2:-1] & padded[3:, 2:-1] & padded[2:-1, 1:-2] & padded[2:-1, 3:])
    at = np.flatnonzero(border)
    rows, cols = np.divmod(at, width)
    outline = np.zeros((height + 2, width + 2), dtype=np.uint8)
    outline[1:-1, 1:-1] = border
    steps = (np.arange(-1, 2)[:, None] * (width + 2) + np.arange(-1, 2)).reshape(9, 1)  # raveled 3x3
    codes = _PERIMETER_KERNEL @ outline.ravel()[at + 2 * rows + width + 3 + steps]
    perimeter = float(np.bincount(codes, minlength=50) @ _PERIMETER_WEIGHTS)
    crofton = padded[1:, 1:] + 2 * padded[:-1, 1:] + 4 * padded[1:, :-1] + 8 * padded[:-1, :-1]
    return np.stack([rows, cols]), perimeter, float(_CROFTON_WEIGHTS @ np.bincount(crofton.ravel(), minlength=16))


def _moment_features(image: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Major and minor axis, eccentricity, orientation and the first two Hu invariants of a box mask:
    ``regionprops``' formulas on its second central moments, from exact integer sums of the pixel
    coordinates (n mu_pq is an integer), so the moments are correctly rounded where regionprops' float
    sums are within a few units in the last place. Where its formulas hinge on an exact zero (no
    cross moment: the sign of a zero picks the orientation; equal moments: its orientation branch;
    pixels on one line: a zero minor axis) regionprops itself gives the values, bit for bit."""
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    per_row, per_col = np.count_nonzero(image, axis=1), np.count_nonzero(image, axis=0)
    n, sum_r, sum_c = int(per_row.sum()), int(per_row @ rows), int(per_col @ cols)
    n_mu20 = n * int(per_row @ rows**2) - sum_r * sum_r  # n * mu20: rows are the image's first axis
    n_mu02 = n * int(per_col @ cols**2) - sum_c * sum_c
    n_mu11 = n * int(rows @ (image @ cols)) - sum_r * sum_c
    if n_mu11 == 0 or n_mu20 == n_mu02 or n_mu20 * n_mu02 == n_mu11 * n_mu11:
        region = regionprops(image.astype(np.uint8))[0]
        return (float(region.axis_major_length), float(region.axis_minor_length), float(region.eccentricity),
                float(region.orientation), *(float(hu) for hu in region.moments_hu[:2]))
    mu20, mu02, mu11 = n_mu20 / n, n_mu02 / n, n_mu11 / n
    total = mu20 + mu02  # skimage.measure.inertia_tensor
    a, b, c = (total - mu20) / n, -mu11 / n, (total - mu02) / n
    l1 = (a + c) / 2 + math.sqrt(((a - c) / 2) ** 2 + b * b)
    l2 = min((n_mu20 * n_mu02 - n_mu11 * n_mu11) / n**4 / l1, l1)  # the determinant over l1
    nu20, nu02, nu11 = mu20 / n**2, mu02 / n**2, mu11 / n**2  # normalised: mu_pq / mu00 ^ (1 + (p + q) / 2)
    return (4 * math.sqrt(l1), 4 * math.sqrt(l2), math.sqrt(1 - l2 / l1), 0.5 * math.atan2(-2 * b, c - a),
            nu20 + nu02, (nu20 - nu02) ** 2 + 4 * nu11**2)


def _sobel_at(crop: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``skimage.filters.sobel(crop)[rows, cols]``, worked out only at those pixels: each derivative the
    weighted sum of the neighbours in float64 in ``ndimage.convolve``'s order (``_SOBEL_TERMS``), the
    crop's edge mirrored as its 'reflect' mode does, then squared, summed, rooted and scaled in the
    crop's float precision as sobel does (integer crops scaled to [0, 1] first, as there)."""
    if crop.dtype.kind != "f":
        crop = img_as_float(crop)
    dtype = np.float64 if crop.dtype == np.float64 else np.float32
    return _sobel_kernel(np.ascontiguousarray(crop, dtype=dtype), rows, cols, *_SOBEL_TERMS,
                         np.sqrt(2, dtype=dtype))


@njit(cache=True, nogil=True)
def _sobel_kernel(crop: np.ndarray, rows: np.ndarray, cols: np.ndarray, neighbours: np.ndarray,
                  weights: np.ndarray, root2: np.floating) -> np.ndarray:  # pragma: no cover - compiled (numba)
    """:func:`_sobel_at`'s arithmetic, one pixel at a time: each derivative a float64 sum in the terms' order
    (from the first term, as a reduction starts), then squared, summed and rooted in the crop's precision."""
    height, width = crop.shape
    out = np.empty(len(rows), dtype=crop.dtype)
    derivative = np.empty(2, dtype=crop.dtype)
    for k in range(len(rows)):
        for d in range(2):
            acc = 0.0
            for t in range(neighbours.shape[1]):
                r = min(max(rows[k] + neighbours[d, t] // 3 - 1, 0), height - 1)
                c = min(max(cols[k] + neighbours[d, t] % 3 - 1, 0), width - 1)
                term = np.float64(crop[r, c]) * weights[d, t]
                acc = term if t == 0 else acc + term
            derivative[d] = acc  # rounded to the crop's precision
        out[k] = np.sqrt(derivative[0] * derivative[0] + derivative[1] * derivative[1]) / root2
    return out


def _quantize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Intensities as ``GLCM_LEVELS`` grey levels spanning the crop's range ``low`` to ``high``."""
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.minimum((scaled * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)


def _entropy(levels: np.ndarray) -> float:
    """Shannon entropy (bits) of grey levels."""
    p = np.bincount(levels.ravel(), minlength=GLCM_LEVELS) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _glcm_counts(levels: np.ndarray) -> np.ndarray:
    """Pair counts of ``graycomatrix(levels, [1], [0, pi/4, pi/2, 3 pi/4], GLCM_LEVELS, symmetric=True)``
    as [direction, level i * GLCM_LEVELS + level j], counted in one compiled pass per direction."""
    return _glcm_kernel(np.ascontiguousarray(levels, dtype=np.uint8), _GLCM_STEPS, GLCM_LEVELS)


@njit(cache=True, nogil=True)
def _glcm_kernel(levels: np.ndarray, steps: np.ndarray, n_levels: int) -> np.ndarray:  # pragma: no cover - numba
    """Symmetric pair counts [direction, i * n_levels + j] of each (row, column) step, one pass per step."""
    height, width = levels.shape
    counts = np.zeros((len(steps), n_levels * n_levels), dtype=np.int64)
    for k in range(len(steps)):
        dr, dc = steps[k, 0], steps[k, 1]
        for r in range(height - dr):
            for c in range(max(-dc, 0), width - max(dc, 0)):
                a, b = np.int64(levels[r, c]), np.int64(levels[r + dr, c + dc])
                counts[k, a * n_levels + b] += 1
                counts[k, b * n_levels + a] += 1
    return counts


def _texture(levels: np.ndarray) -> dict[str, float]:
    """Haralick-style texture of the particle's bounding box (grey ``levels``), averaged over four
    directions: ``graycoprops``' contrast, homogeneity, energy and correlation of the normalised matrix
    P = counts / n, from integer sums of the counts. The matrix is symmetric, so both levels have the
    same mean and spread, and the correlation is the exact ratio (n S_ij - S_i^2) / (n S_ii - S_i^2);
    graycoprops sums the normalised floats in another order (equal to within a few units in the last
    place, see tests/images)."""
    counts = _glcm_counts(levels).astype(np.float64)  # float sums of integers below 2^53: exact, and fast
    sums = counts @ _GLCM_WEIGHTS
    n, s_i, s_ii, s_ij, contrast = sums[:, :5].astype(np.int64).T.tolist()
    homogeneity = sums[:, 5]
    squares = (counts * counts).sum(axis=1).astype(np.int64).tolist()
    props = {prop: [] for prop in _GLCM_PROPS}
    for k in range(len(_GLCM_STEPS)):  # a direction without pairs (a one-row box) has an all-zero matrix
        total = n[k] or 1
        spread, cross = total * s_ii[k] - s_i[k] ** 2, total * s_ij[k] - s_i[k] ** 2
        props["contrast"].append(contrast[k] / total)
        props["homogeneity"].append(homogeneity[k] / total)
        props["energy"].append(math.sqrt(squares[k]) / total)
        props["correlation"].append(cross / spread if spread else 1.0)  # graycoprops: 1 where a level never varies
    return {f"feat_glcm_{prop}": float(np.mean(values)) for prop, values in props.items()}


def _colour_features(colour: np.ndarray, box: tuple[slice, slice], mask: np.ndarray) -> dict[str, float]:
    """Per-channel mean, spread and contrast to the field (the border of the colour crop) of the particle
    (``mask`` inside ``box``): a purple-stained nucleus and a pink red cell differ in hue, not only in
    brightness."""
    from quagga.images.normalize import local_background  # normalize imports nothing of this module

    field = local_background(colour)
    patch = colour[box]
    out = {}
    channels = np.ascontiguousarray(patch[mask].T, dtype=np.float64)  # [3, n]: each channel as one at a time
    for c, name in enumerate(COLOUR_NAMES):
        values = channels[c]
        out.update({f"feat_mean_{name}": float(values.mean()), f"feat_std_{name}": float(values.std()),
                    f"feat_contrast_{name}": float(values.mean() - field[c])})
    return out
