"""Image front end: particle images, field images with boxes, or field images whose particles are found
automatically -> one normalized tile per particle."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.filters import threshold_otsu

from quagga.images.detect import check_detect, find_particles, match_boxes
from quagga.images.features import particle_features, particle_mask
from quagga.images.io import ImageReadError, check_channel, read_pixels, to_channels, to_gray
from quagga.images.normalize import Box, CropError, check_normalize, context_box, local_background, make_tile
from quagga.images.particles import (
    COORDINATES,
    PARTICLE_COLUMNS,
    box_in_image,
    read_box_table,
    single_particle_table,
)
from quagga.params import ImageParams, NormalizeParams, to_dict
from quagga.settings import unresolved
from quagga.tiles.store import Skipped, TileItem, shard_bounds

log = logging.getLogger(__name__)

__all__ = ["found_boxes_writer", "iter_image_tiles"]

SINGLE_CROPS = ("particle", "image")
INPUTS = ("single", "boxes", "segment")
FOUND_BOXES_FILE = "found_boxes.csv"
MIN_REGION_PX = 20  # a candidate particle region smaller than this (or than 2 % of the largest) is a speck
OPEN_FRACTION = 0.01  # opening radius, as a fraction of the image's shorter side, that separates touching particles


def iter_image_tiles(
    params: ImageParams, base_dir: Path, shard: tuple[int, int] = (0, 1)
) -> Iterator[TileItem | Skipped]:
    """Yield a tile per particle; per-image and per-box problems become Skipped items.

    Relative paths in ``params`` are resolved against ``base_dir``; image names in the tables against
    the ``images`` folder. Settings, folders and tables are checked here, before the first item, so a
    config mistake fails at once (ValueError naming the path) instead of skipping every particle.
    ``shard=(k, n)`` tiles only the k-th of n contiguous blocks of the images (their usual order), and
    only shard 0 reports the table-level problems, so shards 0..n-1 together yield exactly the items of
    the whole run, in its order. ``auto`` settings left in ``params`` are found from the images first
    (``quagga tiles`` passes them resolved, so every shard uses the same values).
    """
    if unresolved(to_dict(params)):
        from quagga.images.settings import resolve_image_settings

        params, _ = resolve_image_settings(params, base_dir)
    check_channel(params.channel)
    check_normalize(params.normalize)
    check_detect(params.detect)
    if params.detect.channel is not None:
        check_channel(params.detect.channel)
    if params.single_crop not in SINGLE_CROPS:
        raise ValueError(f"images.single_crop: unknown value {params.single_crop!r}; allowed: {list(SINGLE_CROPS)}")
    base_dir = Path(os.path.abspath(base_dir))
    images_dir = _resolve(base_dir, params.images)
    if not images_dir.is_dir():
        raise ValueError(f"images folder not found: {images_dir}")
    skipped: list[Skipped] = []
    if params.input == "single":
        labels = None if params.labels is None else _resolve(base_dir, params.labels)
        table = single_particle_table(images_dir, labels)
    elif params.input == "boxes":
        if params.boxes is None:
            raise ValueError("images.boxes must name a box table or VOC folder when images.input is 'boxes'")
        table, skipped = read_box_table(_resolve(base_dir, params.boxes))
    elif params.input == "segment":
        table = single_particle_table(images_dir, None)  # every image, labelled by its folder
        truth = pd.DataFrame(columns=PARTICLE_COLUMNS)
        if params.boxes is not None:
            truth, skipped = read_box_table(_resolve(base_dir, params.boxes))
        log.info("%s: %d images to search for particles", images_dir, len(table))
    else:
        raise ValueError(f"images.input: unknown input {params.input!r}; allowed: {list(INPUTS)}")
    if shard[0] != 0:
        skipped = []  # the tables' problems are reported once, by shard 0
    if params.input == "segment":
        start, stop = shard_bounds(len(table), shard)
        return _iter_segmented(table.iloc[start:stop], truth, skipped, images_dir, base_dir, params)
    log.info("%s: %d particles in %d images", images_dir, len(table), table["image"].nunique())
    return _iter_tiles(table, skipped, images_dir, base_dir, params, shard)


def found_boxes_writer(params: ImageParams, base_dir: Path) -> Callable[[Path, pd.DataFrame], None] | None:
    """For ``input: segment``: a ``write_store`` extra that saves the boxes found as ``found_boxes.csv``.

    Same columns as a box table (``image`` relative to the images folder), so a user can inspect the
    boxes, correct them in any annotation tool, and feed them back with ``input: boxes``.
    """
    if params.input != "segment":
        return None
    base = Path(os.path.abspath(base_dir))
    images_dir = _resolve(base, params.images)

    def write(folder: Path, index: pd.DataFrame) -> None:
        image = [os.path.relpath(_resolve(base, s), images_dir) for s in index["source"]]
        boxes = pd.DataFrame({"image": image, "label": index["label"], **{c: index[c] for c in COORDINATES}})
        boxes.to_csv(folder / FOUND_BOXES_FILE, index=False)

    return write


def _iter_tiles(
    table: pd.DataFrame,
    skipped: list[Skipped],
    images_dir: Path,
    base_dir: Path,
    params: ImageParams,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[TileItem | Skipped]:
    """Read each image once and tile every particle row of it (of the images of ``shard``)."""
    yield from skipped
    whole_image = params.input == "single"
    locate = whole_image and params.single_crop == "particle"
    first_item: dict[str, str] = {}  # item_id -> the row that made it, to name duplicates
    grouped = table.groupby("image", sort=False)
    for image, rows in islice(grouped, *shard_bounds(grouped.ngroups, shard, grouped.size().to_numpy())):
        path = images_dir / str(image)
        source = _relative(path, base_dir)
        try:
            if not image:
                raise ImageReadError("no image named")
            image_px, gray = _channels(_read_image(path, params), params.channel)
        except ImageReadError as exc:
            yield from _skip_rows(source, rows, str(exc))
            continue
        for row in rows.itertuples(index=False):
            yield _particle(image_px, gray, row, source, whole_image, locate, params.normalize, first_item)


def _iter_segmented(
    images: pd.DataFrame,
    truth: pd.DataFrame,
    skipped: list[Skipped],
    images_dir: Path,
    base_dir: Path,
    params: ImageParams,
) -> Iterator[TileItem | Skipped]:
    """Find the particles of each image, label them from overlapping human boxes if any, tile them."""
    yield from skipped
    truth_by_image = dict(tuple(truth.groupby("image", sort=False)))
    detect_channel = params.detect.channel or params.channel
    first_item: dict[str, str] = {}
    for image in images.itertuples(index=False):
        source = _relative(images_dir / image.image, base_dir)
        try:
            pixels = _read_image(images_dir / image.image, params)
            image_px, gray = _channels(pixels, params.channel)
            detect_gray = gray if detect_channel == params.channel else to_gray(pixels, detect_channel)
        except ImageReadError as exc:
            log.warning("%s: %s", source, exc)
            yield Skipped(source, "image", str(exc))
            continue
        found = find_particles(detect_gray, params.detect)
        if not found:
            yield Skipped(source, "image", f"no particles found ({gray.shape[1]}x{gray.shape[0]} px; "
                          "see images.detect: threshold, polarity, min_area_px)")
            continue
        labels = _labels_by_overlap(found, truth_by_image.get(image.image), image.label, params.detect.label_min_iou)
        for k, (box, label) in enumerate(zip(found, labels, strict=True), start=1):
            row = SimpleNamespace(label=label, item=f"particle {k}", **box._asdict())
            yield _particle(image_px, gray, row, source, False, False, params.normalize, first_item)


def _labels_by_overlap(
    found: list[Box], truth: pd.DataFrame | None, default: str | None, min_iou: float
) -> list[str | None]:
    """Each found box's label: the human box it matches (one-to-one, IoU >= min_iou), else ``default``."""
    labels: list[str | None] = [default] * len(found)
    if truth is None or truth.empty:
        return labels
    truth = truth.dropna(subset=COORDINATES)
    for i, j, _ in match_boxes(found, truth[COORDINATES].to_numpy(), min_iou):
        labels[i] = truth["label"].iloc[j]
    return labels


def _read_image(path: Path, params: ImageParams) -> np.ndarray:
    """Decoded pixels of one image; ImageReadError (with the reason) when it is missing or unusable."""
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    return read_pixels(path, params.page, params.max_megapixels)


def _channels(pixels: np.ndarray, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """What the tiles show (gray, or [H, W, 3] for rgb) and the gray image shapes are measured in."""
    image = to_channels(pixels, channel)
    return image, image if image.ndim == 2 else to_gray(pixels, "luminance")


def _particle(
    image: np.ndarray,
    gray: np.ndarray,
    row: Any,
    source: str,
    whole_image: bool,
    locate: bool,
    p: NormalizeParams,
    first_item: dict[str, str],
) -> TileItem | Skipped:
    """Tile, box and features of one table row, or why it was skipped."""
    height, width = gray.shape
    mask = None
    try:
        if locate:
            box, mask = particle_region(image)
        elif whole_image:
            box = Box(0, 0, width, height)
        else:
            box = box_in_image(tuple(getattr(row, c) for c in COORDINATES), width, height)
        item_id = source if whole_image else f"{source}#{box.xmin},{box.ymin},{box.xmax},{box.ymax}"
        if item_id in first_item:
            raise CropError(f"same particle as {first_item[item_id]}")
        if p.orient == "canonical" and mask is None:
            mask = _box_particle_mask(gray, box, p.margin)
        tile = make_tile(image, box, p, mask)
    except CropError as exc:
        return Skipped(source, row.item, str(exc))
    first_item[item_id] = row.item
    ctx = context_box(box, p.margin, gray.shape)
    context = gray[ctx.ymin : ctx.ymax, ctx.xmin : ctx.xmax]
    meta = {
        "source": source,
        "label": None if pd.isna(row.label) else row.label,
        **box._asdict(),
        "orig_width": width,
        "orig_height": height,
        "scale": tile.scale,
        "shrunk": tile.shrunk,
        **particle_features(context, local_background(context),
                            image[ctx.ymin : ctx.ymax, ctx.xmin : ctx.xmax] if image.ndim == 3 else None),
    }
    if p.orient == "canonical":
        meta.update({"pose_angle": tile.angle, "pose_flip_x": tile.flipped[0], "pose_flip_y": tile.flipped[1]})
    return TileItem(item_id=item_id, tile=tile.image, meta=meta)


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def _box_particle_mask(gray: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Image-sized mask of the particle in ``box`` (the largest region of its context), to find its pose."""
    ctx = context_box(box, margin, gray.shape)
    crop = gray[ctx.ymin : ctx.ymax, ctx.xmin : ctx.xmax]
    mask = np.zeros(gray.shape, dtype=bool)
    mask[ctx.ymin : ctx.ymax, ctx.xmin : ctx.xmax] = particle_mask(crop, local_background(crop))
    inside = np.zeros_like(mask)
    inside[box.ymin : box.ymax, box.xmin : box.xmax] = True
    if not (mask & inside).any():
        raise CropError("no particle stands out from the background of this box (its pose cannot be found)")
    return mask


def particle_box(image: np.ndarray) -> Box:
    """Tight box of the particle in a single-particle image (see :func:`particle_region`)."""
    return particle_region(image)[0]


def particle_region(image: np.ndarray) -> tuple[Box, np.ndarray]:
    """Box and mask of the particle a single-particle image shows, so the margin an imager left is not tiled.

    Without it, ``fit`` tiles of a small grain with a wide margin show a speck, and the margin (which is
    the instrument's choice, not the particle's) would set the tile scale. The image's pixels are scored by
    how far they stand from the background (its border's median, in colour where the image has colour),
    Otsu's threshold splits particles from field, and of the regions it leaves the particle is the one the
    image is centred on and that stands out most (mean distance from the background, weighted by closeness
    to the centre), not the largest: a white cell among red cells, a pollen grain beside debris.
    """
    height, width = image.shape[:2]
    distance = np.abs(image - local_background(image))
    if distance.ndim == 3:
        distance = np.sqrt(np.square(distance).sum(axis=-1))
    blank = CropError(f"no particle stands out from the background of this {width}x{height} px image "
                      "(blank or uniform)")
    if distance.max() <= distance.min():
        raise blank
    mask = ndimage.binary_fill_holes(distance > threshold_otsu(distance))
    # cut the thin contacts between touching particles (red cells around a white cell) before labelling
    radius = max(1, round(OPEN_FRACTION * min(height, width)))
    mask = ndimage.binary_opening(mask, structure=_disk(radius))
    regions, n = ndimage.label(mask)
    if n == 0:  # nothing survives the opening: a crop cut tight around its particle, the whole image is it
        return Box(0, 0, width, height), np.ones((height, width), dtype=bool)
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(mask, regions, index)
    strength = ndimage.mean(distance, regions, index)
    cy, cx = np.array(ndimage.center_of_mass(mask, regions, index)).reshape(-1, 2).T
    reach = 0.25 * np.hypot(height, width)  # closeness to the centre falls to 1/e at a quarter diagonal
    closeness = np.exp(-(np.square(cy - (height - 1) / 2) + np.square(cx - (width - 1) / 2)) / reach**2)
    big_enough = area >= max(MIN_REGION_PX, 0.02 * area.max())
    score = np.where(big_enough, strength * closeness, -1.0)
    chosen = regions == index[int(np.argmax(score))]
    rows, cols = np.nonzero(chosen)
    return Box(int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1), chosen


def _skip_rows(source: str, rows: pd.DataFrame, reason: str) -> Iterator[Skipped]:
    log.warning("%s: %s (%d particles skipped)", source, reason, len(rows))
    for item in rows["item"]:
        yield Skipped(source, item, reason)


def _resolve(base_dir: Path, path: str) -> Path:
    """``path`` against ``base_dir``, absolute but with symlinks kept (data folders are often links)."""
    return Path(os.path.normpath(base_dir / path))


def _relative(path: Path, base_dir: Path) -> str:
    """Path relative to ``base_dir`` when inside it (stable item ids across machines), else absolute."""
    return (path.relative_to(base_dir) if path.is_relative_to(base_dir) else path).as_posix()
