"""Find particles in a field image that has no boxes, and score found boxes against human ones.

The classic flow-imaging / ImageJ recipe, each step a scikit-image or SciPy call: subtract a Gaussian
background (uneven illumination), threshold automatically, open (remove specks and bridges), close (join
the parts of one particle), fill holes, optionally split touching particles with a watershed on the
distance transform, optionally grow each particle (a pale rim the threshold misses), then keep connected
components by area and border contact. Polarity is read from the image (particles lie on the far side of
the threshold from the median, which is the field), so dark-on-bright and fluorescent images need no
setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage import filters, measure, morphology, segmentation
from skimage.feature import peak_local_max

from quagga.images.normalize import Box
from quagga.params import DetectParams

THRESHOLDS = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "triangle": filters.threshold_triangle,
    "yen": filters.threshold_yen,
}
POLARITIES = ("auto", "dark", "bright")
BORDERS = ("keep", "drop")


def check_detect(p: DetectParams) -> None:
    """Fail at start on a setting the detector does not know (bounds are the config schema's job)."""
    for key, value, allowed in [("threshold", p.threshold, tuple(THRESHOLDS)), ("polarity", p.polarity, POLARITIES),
                                ("border", p.border, BORDERS)]:
        if value not in allowed:
            raise ValueError(f"images.detect.{key}: unknown value {value!r}; allowed: {list(allowed)}")


def foreground_mask(gray: np.ndarray, p: DetectParams) -> np.ndarray:
    """Boolean mask of every particle pixel of ``gray`` (steps up to and including hole filling)."""
    signal = gray.astype(np.float32)
    if p.background_sigma_px > 0:
        signal = signal - filters.gaussian(signal, sigma=p.background_sigma_px, preserve_range=True)
    if signal.max() <= signal.min():
        return np.zeros(gray.shape, dtype=bool)
    threshold = THRESHOLDS[p.threshold](signal)
    bright = threshold > np.median(signal) if p.polarity == "auto" else p.polarity == "bright"
    mask = signal > threshold if bright else signal < threshold
    if p.open_px > 0:
        mask = ndimage.binary_opening(mask, structure=morphology.disk(p.open_px))
    if p.close_px > 0:
        mask = ndimage.binary_closing(mask, structure=morphology.disk(p.close_px), border_value=0)
    if p.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask


def find_particles(gray: np.ndarray, p: DetectParams) -> list[Box]:
    """Boxes of the particles in ``gray``, in reading order (top to bottom, then left to right)."""
    mask = foreground_mask(gray, p)
    regions = measure.label(mask)
    if p.split_touching and regions.max() > 0:
        distance = ndimage.distance_transform_edt(mask)
        peaks = peak_local_max(distance, min_distance=p.split_min_distance_px, labels=regions, exclude_border=False)
        markers = np.zeros(mask.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        regions = segmentation.watershed(-distance, markers, mask=mask)
    if p.grow_px > 0:
        regions = segmentation.expand_labels(regions, distance=p.grow_px)
    height, width = gray.shape
    boxes = []
    for region in measure.regionprops(regions):
        if region.area < p.min_area_px or (p.max_area_px is not None and region.area > p.max_area_px):
            continue
        ymin, xmin, ymax, xmax = region.bbox
        if p.border == "drop" and (xmin == 0 or ymin == 0 or xmax == width or ymax == height):
            continue
        boxes.append(Box(int(xmin), int(ymin), int(xmax), int(ymax)))
    return sorted(boxes, key=lambda b: (b.ymin, b.xmin))


def iou_matrix(found: Sequence[Sequence[float]], truth: Sequence[Sequence[float]]) -> np.ndarray:
    """Intersection over union of every (found, truth) pair of ``(xmin, ymin, xmax, ymax)`` boxes."""
    a = np.asarray(found, dtype=float).reshape(-1, 4)[:, None, :]
    b = np.asarray(truth, dtype=float).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(
    found: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], min_iou: float = 0.5
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(found index, truth index, IoU)``, greedily by IoU, each at least ``min_iou``.

    The PASCAL-VOC detection rule: a human box counts as found once, by its best remaining match.
    """
    iou = iou_matrix(found, truth)
    pairs = sorted(((iou[i, j], i, j) for i, j in zip(*np.nonzero(iou >= min_iou), strict=True)), reverse=True)
    used_found: set[int] = set()
    used_truth: set[int] = set()
    matches = []
    for value, i, j in pairs:
        if i in used_found or j in used_truth:
            continue
        used_found.add(int(i))
        used_truth.add(int(j))
        matches.append((int(i), int(j), float(value)))
    return matches
