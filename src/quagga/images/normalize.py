"""One particle box -> one square tile in [0, 1].

The box is cropped with a context margin and centred on a square canvas filled with the crop's local
background (median of its border pixels), so the aspect ratio is never stretched and the padding looks
like the field, not like a black frame. In ``fit`` mode the square is resized to the tile, so every
particle fills it; in ``fixed`` mode the canvas is ``fixed_extent_px`` source pixels wide, so particle
size stays visible across tiles (a particle that does not fit is shrunk, and the tile says so).
Intensities are mapped to [0, 1] in one of two ways. ``percentile`` stretches each crop between two of
its percentiles (robust to hot pixels, works for any contrast mechanism, but a pale particle comes out
as dark as an opaque one). ``absorbance`` is for bright-field (transmitted-light) images: each pixel
becomes ``1 - intensity / local background``, the fraction of light the particle absorbs, so opacity is
kept and comparable across tiles and uneven illumination cancels; particles come out bright on black.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from skimage.transform import resize

from quagga.params import NormalizeParams

SCALE_MODES = ("fit", "fixed")
INTENSITY_MODES = ("percentile", "absorbance")
MIN_SIDE_PX = 2  # a region narrower than this has no shape to learn from
MIN_CONTEXT_PX = 2  # a tiny box still gets some field around it (for the background and the contrast)


class Box(NamedTuple):
    """A box in source pixels: ``xmin``/``ymin`` inclusive, ``xmax``/``ymax`` exclusive."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int

    @property
    def width(self) -> int:
        return self.xmax - self.xmin

    @property
    def height(self) -> int:
        return self.ymax - self.ymin


class CropError(ValueError):
    """A box that cannot become a tile (empty, outside the image, too small, no contrast)."""


@dataclass(frozen=True)
class Tile:
    """A normalized tile and how it was made."""

    image: np.ndarray  # [tile_size, tile_size] float32 in [0, 1]
    scale: float  # tile pixels per source pixel
    shrunk: bool  # fixed mode only: the particle did not fit fixed_extent_px and was shrunk to fit
    background: float  # local background of the crop, in source intensity
    context: Box  # the box with its margin, clipped to the image: the source pixels the tile shows


def check_normalize(p: NormalizeParams) -> None:
    """Fail at start on a mode the tiler does not know (bounds are the config schema's job)."""
    if p.scale_mode not in SCALE_MODES:
        raise ValueError(f"normalize.scale_mode: unknown mode {p.scale_mode!r}; allowed: {list(SCALE_MODES)}")
    if p.intensity not in INTENSITY_MODES:
        raise ValueError(f"normalize.intensity: unknown mode {p.intensity!r}; allowed: {list(INTENSITY_MODES)}")


def local_background(crop: np.ndarray) -> float:
    """Median of the crop's border pixels: the field around the particle, whatever its polarity."""
    border = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
    return float(np.median(border))


def make_tile(gray: np.ndarray, box: Box, p: NormalizeParams) -> Tile:
    """Tile of the particle in ``box`` (which must lie inside ``gray``), centred, in [0, 1]."""
    height, width = gray.shape
    pad = max(round(p.margin * max(box.width, box.height)), MIN_CONTEXT_PX)
    context = Box(max(box.xmin - pad, 0), max(box.ymin - pad, 0),
                  min(box.xmax + pad, width), min(box.ymax + pad, height))
    if min(context.width, context.height) < MIN_SIDE_PX:
        raise CropError(f"only {context.width}x{context.height} px to tile; "
                        f"at least {MIN_SIDE_PX} px per side are needed")
    crop = gray[context.ymin : context.ymax, context.xmin : context.xmax]
    background = local_background(crop)
    low, high = _intensity_range(crop, background, p)

    side = max(box.width, box.height) + 2 * pad
    shrunk = p.scale_mode == "fixed" and side > p.fixed_extent_px
    if p.scale_mode == "fixed":
        side = max(side, p.fixed_extent_px)
    top, left = (box.ymin + box.ymax - side) // 2, (box.xmin + box.xmax - side) // 2  # box centred
    canvas = np.full((side, side), background, dtype=np.float32)
    canvas[context.ymin - top : context.ymax - top, context.xmin - left : context.xmax - left] = crop

    size = p.tile_size
    tile = resize(canvas, (size, size), order=1, mode="edge", anti_aliasing=side > size, preserve_range=True)
    tile = 1.0 - tile / background if p.intensity == "absorbance" else (tile - low) / (high - low)
    tile = np.clip(tile, 0.0, 1.0)
    if p.invert:
        tile = 1.0 - tile
    return Tile(image=tile.astype(np.float32), scale=size / side, shrunk=shrunk, background=background,
                context=context)


def _intensity_range(crop: np.ndarray, background: float, p: NormalizeParams) -> tuple[float, float]:
    """Percentile bounds of the crop; min/max when a tiny particle leaves the percentiles equal.

    Also the check that the crop shows anything: a flat crop, or (absorbance) a black field, is refused.
    """
    if p.intensity == "absorbance" and background <= 0:
        raise CropError("local background is black: absorbance needs a bright field "
                        "(use normalize.intensity: percentile for dark-field or fluorescence images)")
    low, high = np.percentile(crop, [p.percentile_low, p.percentile_high])
    if high <= low:
        low, high = crop.min(), crop.max()
    if high <= low:
        raise CropError(f"crop has no contrast (every pixel is {float(low):.4g})")
    return float(low), float(high)
