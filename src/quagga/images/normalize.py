"""One particle box -> one square tile in [0, 1] (one channel, or three for colour images).

The box is cropped with a context margin and centred on a square canvas filled with the crop's local
background (median of its border pixels, per channel), so the aspect ratio is never stretched and the
padding looks like the field, not like a black frame. In ``fit`` mode the square is resized to the tile, so
every particle fills it; in ``fixed`` mode the canvas is ``fixed_extent_px`` source pixels wide, so particle
size stays visible across tiles (a particle that does not fit is shrunk, and the tile says so).
Intensities are mapped to [0, 1] in one of two ways. ``percentile`` stretches each crop between two of
its percentiles (robust to hot pixels, works for any contrast mechanism, but a pale particle comes out
as dark as an opaque one; colour channels share the bounds, so hue is kept). ``absorbance`` is for
bright-field (transmitted-light) images: each pixel becomes ``gain x (1 - intensity / local background)``,
the fraction of light the particle absorbs (per channel), so opacity is kept and comparable across tiles
and uneven illumination cancels; particles come out bright on black. ``gain`` (found from the data)
stretches faint stained cells over the range instead of leaving them near black.
``orient: canonical`` turns each particle so its major axis lies along x and flips it so its mass sits in
the lower right: a particle's pose in the field says nothing about what it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import sparse
from skimage.transform import rotate

from quagga.params import NormalizeParams
from quagga.settings import SettingsError, is_auto

SCALE_MODES = ("fit", "fixed")
ORIENTATIONS = ("none", "canonical")
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

    image: np.ndarray  # [tile_size, tile_size] (one channel) or [C, tile_size, tile_size], float32 in [0, 1]
    scale: float  # tile pixels per source pixel
    shrunk: bool  # fixed mode only: the particle did not fit fixed_extent_px and was shrunk to fit
    background: float | np.ndarray  # local background of the crop, in source intensity (per channel)
    context: Box  # the box with its margin, clipped to the image: the source pixels the tile shows
    angle: float = 0.0  # orient canonical: degrees the particle was turned (counter-clockwise)
    flipped: tuple[bool, bool] = (False, False)  # orient canonical: mirrored left-right, top-bottom


def check_normalize(p: NormalizeParams) -> None:
    """Fail at start on a mode the tiler does not know (bounds are the config schema's job)."""
    if p.scale_mode not in SCALE_MODES:
        raise ValueError(f"normalize.scale_mode: unknown mode {p.scale_mode!r}; allowed: {list(SCALE_MODES)}")
    if p.intensity not in INTENSITY_MODES:
        raise ValueError(f"normalize.intensity: unknown mode {p.intensity!r}; allowed: {list(INTENSITY_MODES)}")
    if p.orient not in ORIENTATIONS:
        raise ValueError(f"normalize.orient: unknown mode {p.orient!r}; allowed: {list(ORIENTATIONS)}")


def local_background(crop: np.ndarray) -> float | np.ndarray:
    """Median of the crop's border pixels: the field around the particle, whatever its polarity (a float
    for one channel, one value per channel for colour)."""
    border = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
    return float(np.median(border)) if crop.ndim == 2 else np.median(border, axis=0).astype(np.float32)


def make_tile(image: np.ndarray, box: Box, p: NormalizeParams, mask: np.ndarray | None = None) -> Tile:
    """Tile of the particle in ``box`` (which must lie inside ``image``, [H, W] or [H, W, C]), centred, in [0, 1].

    With ``orient: canonical``, ``mask`` (the particle's pixels, image-sized) gives its pose; without a mask
    the tile is not turned.
    """
    needed = ["scale_mode", "intensity"] + ["fixed_extent_px"] * (p.scale_mode == "fixed") + ["gain"] * (
        p.intensity == "absorbance")
    left = [key for key in needed if is_auto(getattr(p, key))]
    if left:
        raise SettingsError(f"normalize settings {left} are still 'auto': resolve them from the data first "
                            "(quagga.images.settings) or give values")
    angle, flipped = 0.0, (False, False)
    if p.orient == "canonical" and mask is not None:
        image, box, angle, flipped = _canonical(image, box, mask, p.margin)
    pad = context_pad(box, p.margin)
    context = context_box(box, p.margin, image.shape)
    if min(context.width, context.height) < MIN_SIDE_PX:
        raise CropError(f"only {context.width}x{context.height} px to tile; "
                        f"at least {MIN_SIDE_PX} px per side are needed")
    crop = image[context.ymin : context.ymax, context.xmin : context.xmax]
    background = local_background(crop)
    low, high = _intensity_range(crop, background, p)

    side = max(box.width, box.height) + 2 * pad
    shrunk = p.scale_mode == "fixed" and side > int(p.fixed_extent_px)
    if p.scale_mode == "fixed":
        side = max(side, int(p.fixed_extent_px))
    top, left = (box.ymin + box.ymax - side) // 2, (box.xmin + box.xmax - side) // 2  # box centred
    deviation = canvas_resize(_minus(crop, background), side, (context.ymin - top, context.xmin - left),
                              p.tile_size)
    if p.intensity == "absorbance":  # gain x (1 - intensity / background), without the cancellation
        tile = deviation * _per_pixel(-float(p.gain) / np.asarray(background, dtype=np.float32), p.tile_size)
    else:
        tile = (deviation + _per_pixel(np.asarray(background - low, dtype=np.float32), p.tile_size)) / (high - low)
    tile = np.clip(tile, 0.0, 1.0).reshape(p.tile_size, p.tile_size, *crop.shape[2:])
    if p.invert:
        tile = 1.0 - tile
    if tile.ndim == 3:
        tile = np.moveaxis(tile, -1, 0)  # [C, S, S], as the store keeps it
    return Tile(image=np.ascontiguousarray(tile, dtype=np.float32), scale=p.tile_size / side, shrunk=shrunk,
                background=background, context=context, angle=angle, flipped=flipped)


def canvas_resize(patch: np.ndarray, side: int, at: tuple[int, int], size: int) -> np.ndarray:
    """``skimage.transform.resize(canvas, (size, size), order=1, mode="edge", anti_aliasing=side > size,
    preserve_range=True)`` of a square [side, side(, C)] canvas that is zero but for ``patch`` [h, w(, C)]
    with its corner at ``at`` (row, column), as [size, size * C]: two products with one sparse matrix.

    Both of resize's steps, the Gaussian anti-aliasing and the linear interpolation, are linear and act on
    each axis alone, so one [size, side] matrix does them for rows and columns (built once per canvas side;
    the fixed scale gives every tile the same), and only its columns under the patch take part: a tile is
    the field's level plus the resized deviation of the crop from it (each row of weights sums to 1), so
    the field around a crop is never painted. Equal to resize within float32 rounding (a test checks 1e-5);
    10x faster on colour tiles, which resize filters and interpolates in three dimensions.
    """
    height, width = patch.shape[:2]
    (row, col), channels = at, patch.size // (height * width)
    across = _channel_weights(side, size, channels)[:, col * channels : (col + width) * channels]
    columns = np.ascontiguousarray((across @ patch.reshape(height, -1).T).T)  # [height, size * C]
    return _resize_matrix(side, size)[:, row : row + height] @ columns


def _minus(crop: np.ndarray, level: float | np.ndarray) -> np.ndarray:
    """``crop - level`` in float32, a level per channel broadcast along whole rows (numpy's inner loop over
    three channels at a time costs more than the arithmetic)."""
    width = crop.shape[1]
    return (crop.reshape(crop.shape[0], -1) - _per_pixel(np.asarray(level, dtype=np.float32), width)).reshape(
        crop.shape)


def _per_pixel(value: np.ndarray, pixels: int) -> np.ndarray:
    """A scalar, or one value per channel repeated for ``pixels`` pixels of a row ([pixels * C])."""
    return value if value.ndim == 0 else np.tile(value, pixels)


@lru_cache(maxsize=64)
def _channel_weights(side: int, size: int, channels: int) -> sparse.csr_matrix:
    """The resize weights of :func:`_resize_matrix` for rows of pixels whose C channels are interleaved
    ([size * C, side * C]), so a crop's columns are resized in its own memory layout."""
    weights = _resize_matrix(side, size)
    return weights if channels == 1 else sparse.kron(weights, sparse.identity(channels), format="csr").astype(
        np.float32)


@lru_cache(maxsize=64)
def _resize_matrix(side: int, size: int) -> sparse.csr_matrix:
    """[size, side] weights of resize along one axis: scipy's Gaussian (sigma (side / size - 1) / 2,
    truncated at 4 sigma, edges repeated) when shrinking, then its order-1 ``zoom`` with ``grid_mode``
    (pixel centres at (i + 0.5) * side / size - 0.5, clamped to the edge pixels)."""
    blur = sparse.identity(side, format="csr")
    if side > size:
        sigma = (side / size - 1) / 2
        radius = int(4.0 * sigma + 0.5)
        offsets = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * offsets**2 / sigma**2)
        kernel /= kernel.sum()
        rows = np.repeat(np.arange(side), offsets.size)
        cols = np.clip(rows + np.tile(offsets, side), 0, side - 1)
        blur = sparse.csr_matrix((np.tile(kernel, side), (rows, cols)), shape=(side, side))
    centre = np.clip((np.arange(size) + 0.5) * side / size - 0.5, 0, side - 1)
    low = np.floor(centre).astype(int)
    frac = centre - low
    rows = np.repeat(np.arange(size), 2)
    cols = np.stack([low, np.minimum(low + 1, side - 1)], axis=1).ravel()
    interpolate = sparse.csr_matrix((np.stack([1 - frac, frac], axis=1).ravel(), (rows, cols)), shape=(size, side))
    return (interpolate @ blur).astype(np.float32).tocsr()


def context_pad(box: Box, margin: float) -> int:
    """Pixels of field kept around a box: ``margin`` of its longer side, at least MIN_CONTEXT_PX."""
    return max(round(margin * max(box.width, box.height)), MIN_CONTEXT_PX)


def context_box(box: Box, margin: float, shape: tuple[int, ...]) -> Box:
    """The box with its margin, clipped to an image of ``shape``: the source pixels its tile shows."""
    pad = context_pad(box, margin)
    return Box(max(box.xmin - pad, 0), max(box.ymin - pad, 0), min(box.xmax + pad, shape[1]),
               min(box.ymax + pad, shape[0]))


def major_axis_angle(mask: np.ndarray) -> float:
    """Degrees, counter-clockwise, that turn the mask's major axis onto the x axis (scikit-image regionprops)."""
    from skimage.measure import regionprops

    return 90.0 - math.degrees(regionprops(mask.astype(np.uint8))[0].orientation)


def _canonical(image: np.ndarray, box: Box, mask: np.ndarray, margin: float
               ) -> tuple[np.ndarray, Box, float, tuple[bool, bool]]:
    """The particle turned onto its major axis and flipped so its mass is lower right: a square patch of the
    image around it (background outside the image) and the particle's box in that patch."""
    angle = major_axis_angle(mask[box.ymin:box.ymax, box.xmin:box.xmax])
    cy, cx = (box.ymin + box.ymax) / 2, (box.xmin + box.xmax) / 2
    half = int(math.ceil(math.hypot(box.width, box.height) / 2 * (1 + 2 * margin))) + MIN_CONTEXT_PX
    top, left = int(round(cy)) - half, int(round(cx)) - half
    region = Box(max(left, 0), max(top, 0), min(left + 2 * half, image.shape[1]), min(top + 2 * half, image.shape[0]))
    crop = image[region.ymin:region.ymax, region.xmin:region.xmax]
    background = local_background(crop)
    patch = np.empty((2 * half, 2 * half, *image.shape[2:]), dtype=np.float32)
    patch[...] = background
    inside = (slice(region.ymin - top, region.ymax - top), slice(region.xmin - left, region.xmax - left))
    patch[inside] = crop
    shape = np.zeros((2 * half, 2 * half), dtype=np.float32)
    shape[inside] = mask[region.ymin:region.ymax, region.xmin:region.xmax]
    # turn the deviation from the background, so the corners the turn uncovers are background
    patch = rotate(patch - background, angle, order=1, mode="constant", cval=0.0, preserve_range=True) + background
    shape = rotate(shape, angle, order=1, mode="constant", cval=0.0) > 0.5
    if not shape.any():
        raise CropError("the particle vanished when turned onto its major axis (a sliver of a few pixels)")
    contrast = np.abs(patch - background)
    weight = (contrast.sum(axis=-1) if contrast.ndim == 3 else contrast) * shape
    rows, cols = np.nonzero(shape)
    mass_y, mass_x = (np.average(rows, weights=weight[rows, cols]), np.average(cols, weights=weight[rows, cols])) \
        if weight[rows, cols].sum() > 0 else (rows.mean(), cols.mean())
    centre_y, centre_x = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
    flip_x, flip_y = bool(mass_x < centre_x), bool(mass_y < centre_y)
    if flip_x:
        patch, shape = patch[:, ::-1], shape[:, ::-1]
    if flip_y:
        patch, shape = patch[::-1], shape[::-1]
    rows, cols = np.nonzero(shape)
    turned = Box(int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return np.ascontiguousarray(patch), turned, round(angle, 2), (flip_x, flip_y)


def _intensity_range(crop: np.ndarray, background: float | np.ndarray, p: NormalizeParams) -> tuple[float, float]:
    """Percentile bounds of the crop (all channels together); min/max when a tiny particle leaves the
    percentiles equal.

    Also the check that the crop shows anything: a flat crop, or (absorbance) a black field, is refused.
    """
    if p.intensity == "absorbance" and np.min(background) <= 0:
        raise CropError("local background is black: absorbance needs a bright field "
                        "(use normalize.intensity: percentile for dark-field or fluorescence images)")
    # absorbance uses no bounds, only the contrast check, which min and max decide alone
    low, high = (np.percentile(crop, [p.percentile_low, p.percentile_high]) if p.intensity == "percentile"
                 else (crop.min(), crop.max()))
    if high <= low:
        low, high = crop.min(), crop.max()
    if high <= low:
        raise CropError(f"crop has no contrast (every pixel is {float(low):.4g})")
    return float(low), float(high)
