"""Tile settings found from the images (``auto`` values), without labels.

- ``normalize.intensity``: ``absorbance`` for bright-field images (the field is the bright end of a crop and
  the particle darker: transmitted light, so opacity is what the tile should keep), ``percentile``
  otherwise (fluorescence, dark field);
- ``normalize.scale_mode`` and ``fixed_extent_px``: one pixel scale for all tiles (``fixed``, wide enough
  for all but the largest 1 % of particles with their margin) when the small particles still span at
  least ``MIN_PARTICLE_PX`` tile pixels at that scale, so size stays visible; otherwise (sizes spread over
  more than about a factor ten) every particle fills its tile (``fit``).

Particle sizes come from the box table, the particle found in a single-particle image, the image itself
(``single_crop: image``) or automatic detection; at most ``MAX_IMAGES`` images, chosen evenly, are
decoded (the same data gives the same values).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from quagga.images.detect import find_particles
from quagga.images.io import ImageReadError, read_pixels, to_gray
from quagga.images.normalize import Box, CropError, local_background
from quagga.images.particles import COORDINATES, box_in_image, read_box_table, single_particle_table
from quagga.params import ImageParams
from quagga.settings import MIN_ITEMS, Choices

log = logging.getLogger(__name__)

__all__ = ["resolve_image_settings"]

MAX_IMAGES = 200  # images decoded to measure particles (evenly spread)
MAX_CROPS = 400  # particle crops whose intensities are measured
MIN_PARTICLE_PX = 12  # fixed scale only if the 5th-percentile particle spans this many tile pixels
BRIGHT_FIELD = 0.6  # the field's median position in the crops' intensity range above this: bright field
FALLBACK = {"intensity": "percentile", "scale_mode": "fit", "fixed_extent_px": 128}


def resolve_image_settings(params: ImageParams, base_dir: Path) -> tuple[ImageParams, Choices]:
    """``params`` with every ``auto`` normalize value found from the images, and how each was chosen."""
    base_dir = Path(os.path.abspath(base_dir))
    images_dir = Path(os.path.normpath(base_dir / params.images))
    crops = _sample_crops(params, base_dir, images_dir)
    choices = Choices()
    p = params.normalize
    few = f"only {len(crops)} particles could be measured (fewer than {MIN_ITEMS})"
    intensity = choices.pick("normalize.intensity", p.intensity, _intensity(crops), FALLBACK["intensity"], few)
    sides = _sides(params, base_dir, crops)
    scale = _scale(sides, p.margin, p.tile_size)
    mode = choices.pick("normalize.scale_mode", p.scale_mode, None if scale is None else scale[0],
                        FALLBACK["scale_mode"], few)
    extent = choices.pick("normalize.fixed_extent_px", p.fixed_extent_px, None if scale is None else scale[1],
                          FALLBACK["fixed_extent_px"], few)
    normalize = dataclasses.replace(p, intensity=intensity, scale_mode=mode, fixed_extent_px=extent)
    return dataclasses.replace(params, normalize=normalize), choices


def _sample_crops(params: ImageParams, base_dir: Path, images_dir: Path) -> list[tuple[np.ndarray, Box]]:
    """(grey image, particle box) of up to MAX_CROPS particles from up to MAX_IMAGES images, evenly chosen."""
    if params.input == "boxes" and params.boxes is not None:
        table, _ = read_box_table(Path(os.path.normpath(base_dir / params.boxes)))
    else:
        labels = params.labels if params.input == "single" else None
        table = single_particle_table(images_dir, None if labels is None else Path(os.path.normpath(base_dir / labels)))
    names = list(pd.unique(table["image"]))
    picked = set(_evenly(names, MAX_IMAGES))
    per_image = max(1, math.ceil(MAX_CROPS / max(len(picked), 1)))
    crops: list[tuple[np.ndarray, Box]] = []
    for image, rows in table[table["image"].isin(picked)].groupby("image", sort=False):
        try:
            gray = to_gray(read_pixels(images_dir / str(image), params.page, params.max_megapixels), params.channel)
        except (ImageReadError, OSError):
            continue
        for box in _evenly(_boxes(gray, rows, params), per_image):
            crops.append((gray, box))
    return crops


def _sides(params: ImageParams, base_dir: Path, crops: list[tuple[np.ndarray, Box]]) -> np.ndarray:
    """Particle sizes (longer box side, px): every row of a box table, else the measured crops."""
    if params.input == "boxes" and params.boxes is not None:
        table, _ = read_box_table(Path(os.path.normpath(base_dir / params.boxes)))
        sides = np.maximum(table["xmax"] - table["xmin"], table["ymax"] - table["ymin"]).to_numpy(float)
        return sides[np.isfinite(sides) & (sides > 0)]
    return np.array([max(box.width, box.height) for _, box in crops], dtype=float)


def _boxes(gray: np.ndarray, rows: pd.DataFrame, params: ImageParams) -> list[Box]:
    """The particle boxes of one image, as the tiler will find them."""
    from quagga.images import particle_box  # the tiler's own particle finder

    height, width = gray.shape
    if params.input == "segment":
        return find_particles(gray, params.detect)
    if params.input == "single":
        if params.single_crop == "image":
            return [Box(0, 0, width, height)]
        try:
            return [particle_box(gray)]
        except CropError:
            return []
    boxes = []
    for row in rows[COORDINATES].itertuples(index=False):
        try:
            boxes.append(box_in_image(tuple(row), width, height))
        except CropError:
            continue
    return boxes


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _intensity(crops: list[tuple[np.ndarray, Box]]) -> tuple[str, str] | None:
    """Bright field (absorbance) when the field around the particles is the bright end of their crops."""
    if len(crops) < MIN_ITEMS:
        return None
    positions = []
    for gray, box in crops:
        pad = max(box.width, box.height) // 4 + 2
        crop = gray[max(box.ymin - pad, 0): box.ymax + pad, max(box.xmin - pad, 0): box.xmax + pad]
        low, high = np.percentile(crop, [1, 99])
        if high > low:
            positions.append((local_background(crop) - low) / (high - low))
    if len(positions) < MIN_ITEMS:
        return None
    where = float(np.median(positions))
    how = (f"the field around {len(positions)} particles sits at {where:.2f} of their crops' 1st-99th percentile "
           f"range (median)")
    if where >= BRIGHT_FIELD:
        return "absorbance", f"bright field: {how}, above {BRIGHT_FIELD}"
    return "percentile", f"not bright field: {how}, below {BRIGHT_FIELD}"


def _scale(sides: np.ndarray, margin: float, tile_size: int) -> tuple[tuple[str, str], tuple[int, str]] | None:
    """(scale_mode, statistic), (fixed_extent_px, statistic) from the particles' longer sides.

    One scale for all (``fixed``) keeps size visible: wide enough for all but the largest 1 % of the
    particles with their margin, unless that would leave the small ones (5th percentile) under
    MIN_PARTICLE_PX tile pixels; then as wide as the small ones allow, if three quarters of the particles
    still fit (the largest are shrunk to fit and flagged ``shrunk``); else each particle fills its tile.
    """
    if len(sides) < MIN_ITEMS:
        return None
    p5, p50, p75, p99 = np.percentile(sides, [5, 50, 75, 99])
    fits_all = p99 * (1 + 2 * margin)
    small_visible = p5 * tile_size / MIN_PARTICLE_PX
    sizes = (f"{len(sides)} particles' longer sides: 5th percentile {p5:.0f} px, median {p50:.0f}, "
             f"75th {p75:.0f}, 99th {p99:.0f}")
    if fits_all <= small_visible:
        extent = _round8(fits_all)
        return (("fixed", f"at {extent} px per tile the 5th percentile particle spans {p5 * tile_size / extent:.0f} "
                          f"tile px (>= {MIN_PARTICLE_PX}): size stays visible ({sizes})"),
                (extent, f"the 99th percentile particle with its margin ({sizes})"))
    extent = _round8(small_visible)
    if p75 * (1 + 2 * margin) <= extent:
        shrunk = float(np.mean(sides * (1 + 2 * margin) > extent))
        return (("fixed", f"sizes spread widely ({sizes}): one scale at which the 5th percentile particle spans "
                          f"{MIN_PARTICLE_PX} tile px; the largest {shrunk:.0%} are shrunk to fit"),
                (extent, f"the 5th percentile particle x {tile_size}/{MIN_PARTICLE_PX} ({sizes})"))
    return (("fit", f"sizes spread too widely for one scale ({sizes}): each particle fills its tile"),
            (extent, "unused with fit"))


def _round8(px: float) -> int:
    return int(math.ceil(px / 8) * 8)
