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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quagga.images.detect import find_particles
from quagga.images.features import particle_mask
from quagga.images.io import ImageReadError, read_pixels, to_channels, to_gray
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
COLOUR_SPREAD = 0.02  # channel auto: colour tiles when the particles' hue varies at least this much
MAX_GAIN = 10.0
FALLBACK = {"channel": "luminance", "intensity": "percentile", "scale_mode": "fit", "fixed_extent_px": 128}


@dataclass(frozen=True)
class _Crop:
    """A sampled particle: its image in colour ([H, W, 3]; gray images repeated) and gray, and its box."""

    colour: np.ndarray
    gray: np.ndarray
    box: Box

    def context(self, image: np.ndarray) -> np.ndarray:
        pad = max(self.box.width, self.box.height) // 4 + 2
        b = self.box
        return image[max(b.ymin - pad, 0): b.ymax + pad, max(b.xmin - pad, 0): b.xmax + pad]


def resolve_image_settings(params: ImageParams, base_dir: Path) -> tuple[ImageParams, Choices]:
    """``params`` with every ``auto`` value found from the images, and how each was chosen."""
    base_dir = Path(os.path.abspath(base_dir))
    images_dir = Path(os.path.normpath(base_dir / params.images))
    crops = _sample_crops(params, base_dir, images_dir)
    choices = Choices()
    p = params.normalize
    few = f"only {len(crops)} particles could be measured (fewer than {MIN_ITEMS})"
    channel = choices.pick("channel", params.channel, _channel(crops), FALLBACK["channel"], few)
    intensity = choices.pick("normalize.intensity", p.intensity, _intensity(crops), FALLBACK["intensity"], few)
    sides = _sides(params, base_dir, crops)
    scale = _scale(sides, p.margin, p.tile_size)
    mode = choices.pick("normalize.scale_mode", p.scale_mode, None if scale is None else scale[0],
                        FALLBACK["scale_mode"], few)
    extent = choices.pick("normalize.fixed_extent_px", p.fixed_extent_px, None if scale is None else scale[1],
                          FALLBACK["fixed_extent_px"], few)
    gain = choices.pick("normalize.gain", p.gain, _gain(crops, channel) if intensity == "absorbance" else
                        (1.0, "intensity percentile: no absorbance to stretch"), 1.0, few)
    normalize = dataclasses.replace(p, intensity=intensity, scale_mode=mode, fixed_extent_px=extent, gain=gain)
    return dataclasses.replace(params, channel=channel, normalize=normalize), choices


def _sample_crops(params: ImageParams, base_dir: Path, images_dir: Path) -> list[_Crop]:
    """Up to MAX_CROPS particles from up to MAX_IMAGES images, evenly chosen."""
    if params.input == "boxes" and params.boxes is not None:
        table, _ = read_box_table(Path(os.path.normpath(base_dir / params.boxes)))
    else:
        labels = params.labels if params.input == "single" else None
        table = single_particle_table(images_dir, None if labels is None else Path(os.path.normpath(base_dir / labels)))
    names = list(pd.unique(table["image"]))
    picked = set(_evenly(names, MAX_IMAGES))
    per_image = max(1, math.ceil(MAX_CROPS / max(len(picked), 1)))
    crops: list[_Crop] = []
    gray_channel = "luminance" if params.channel in ("auto", "rgb") else params.channel
    for image, rows in table[table["image"].isin(picked)].groupby("image", sort=False):
        try:
            pixels = read_pixels(images_dir / str(image), params.page, params.max_megapixels)
            colour, gray = to_channels(pixels, "rgb"), to_gray(pixels, gray_channel)
        except (ImageReadError, OSError):
            continue
        located = colour if params.channel in ("auto", "rgb") else gray
        for box in _evenly(_boxes(located, gray, rows, params), per_image):
            crops.append(_Crop(colour, gray, box))
    return crops


def _sides(params: ImageParams, base_dir: Path, crops: list[_Crop]) -> np.ndarray:
    """Particle sizes (longer box side, px): every row of a box table, else the measured crops."""
    if params.input == "boxes" and params.boxes is not None:
        table, _ = read_box_table(Path(os.path.normpath(base_dir / params.boxes)))
        sides = np.maximum(table["xmax"] - table["xmin"], table["ymax"] - table["ymin"]).to_numpy(float)
        return sides[np.isfinite(sides) & (sides > 0)]
    return np.array([max(c.box.width, c.box.height) for c in crops], dtype=float)


def _boxes(located: np.ndarray, gray: np.ndarray, rows: pd.DataFrame, params: ImageParams) -> list[Box]:
    """The particle boxes of one image, as the tiler will find them (single particles in ``located``)."""
    from quagga.images import particle_box  # the tiler's own particle finder

    height, width = gray.shape
    if params.input == "segment":
        return find_particles(gray, params.detect)
    if params.input == "single":
        if params.single_crop == "image":
            return [Box(0, 0, width, height)]
        try:
            return [particle_box(located)]
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


def _channel(crops: list[_Crop]) -> tuple[str, str] | None:
    """Colour tiles (rgb) when the particles' colour, not only their darkness, varies from one to the next."""
    if len(crops) < MIN_ITEMS:
        return None
    hues = []
    for crop in crops:
        gray, colour = crop.context(crop.gray), crop.context(crop.colour)
        mask = particle_mask(gray, float(local_background(gray)))
        field = local_background(colour)
        if mask.any() and np.min(field) > 0:
            absorbed = 1.0 - colour[mask].mean(axis=0) / field  # per channel: light the particle takes
            hues.append(absorbed - absorbed.mean())  # what is left when darkness is taken out: its colour
    if len(hues) < MIN_ITEMS:
        return None
    spread = float(np.sqrt(np.var(np.asarray(hues), axis=0).sum()))
    how = (f"the particles' colour (absorbance per channel minus its mean) varies by {spread:.3f} between "
           f"{len(hues)} particles")
    if spread >= COLOUR_SPREAD:
        return "rgb", f"{how} (>= {COLOUR_SPREAD}): colour tiles"
    return "luminance", f"{how} (< {COLOUR_SPREAD}): one gray channel"


def _gain(crops: list[_Crop], channel: str) -> tuple[float, str] | None:
    """Absorbance gain: the brightest particles' absorbance (99.5th percentile) is stretched to 1."""
    values = []
    for crop in crops:
        image = crop.context(crop.colour if channel == "rgb" else crop.gray)
        field = local_background(image)
        if np.min(field) > 0:
            absorbed = np.clip(1.0 - image / field, 0.0, 1.0)
            values.append(absorbed.max(axis=-1).ravel() if absorbed.ndim == 3 else absorbed.ravel())
    if len(values) < MIN_ITEMS:
        return None
    top = float(np.percentile(np.concatenate(values), 99.5))
    gain = float(np.clip(round(1.0 / max(top, 1e-6), 2), 1.0, MAX_GAIN))
    return gain, (f"1 / the 99.5th percentile of the absorbance around {len(values)} particles ({top:.3f}), "
                  f"within 1-{MAX_GAIN:g}")


def _intensity(crops: list[_Crop]) -> tuple[str, str] | None:
    """Bright field (absorbance) when the field around the particles is the bright end of their crops."""
    if len(crops) < MIN_ITEMS:
        return None
    positions = []
    for c in crops:
        crop = c.context(c.gray)
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
