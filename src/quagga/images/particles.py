"""Where the particles are: label tables, box tables (CSV or Pascal-VOC XML) and box checks.

Every input kind becomes one particle table with the columns of ``PARTICLE_COLUMNS``: ``image`` (path
relative to the images folder), ``label`` (str or None), the box (NaN for a whole single-particle image)
and ``item`` (where the row came from, for skip reasons). A missing table is a user error and raises
ValueError; a bad row or an unreadable XML file only costs that row or file.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from quagga.images.io import IMAGE_SUFFIXES
from quagga.images.normalize import Box, CropError
from quagga.tiles.store import Skipped

log = logging.getLogger(__name__)

COORDINATES = ["xmin", "ymin", "xmax", "ymax"]
PARTICLE_COLUMNS = ["image", "label", *COORDINATES, "item"]


def single_particle_table(images_dir: Path, labels: Path | None) -> pd.DataFrame:
    """One row per single-particle image: from the ``file,label`` CSV, or every image under the folder.

    Without a CSV the label is the image's folder relative to ``images_dir`` (None directly in it).
    """
    if labels is not None:
        table = _read_csv(labels, ["file", "label"])
        return _particle_table(table.rename(columns={"file": "image"}))
    files = sorted(
        p.relative_to(images_dir)
        for p in images_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    rows = [(f.as_posix(), None if f.parent == Path(".") else f.parent.as_posix()) for f in files]
    table = pd.DataFrame(rows, columns=["image", "label"], dtype=object)
    table["item"] = table["image"]
    return _particle_table(table)


def read_box_table(path: Path) -> tuple[pd.DataFrame, list[Skipped]]:
    """Particle table of a box CSV (``image,label,xmin,ymin,xmax,ymax``) or a folder of VOC XML files.

    Returns the table and the annotation files that could not be parsed.
    """
    if path.is_dir():
        return read_voc_folder(path)
    table = _read_csv(path, ["image", *COORDINATES])
    return _particle_table(table), []


def read_voc_folder(folder: Path) -> tuple[pd.DataFrame, list[Skipped]]:
    """Boxes of every Pascal-VOC ``*.xml`` in ``folder``; ``<filename>`` is relative to the images folder.

    VOC pixels are 1-based with inclusive ends, so ``xmin``/``ymin`` are shifted by one to give
    0-based boxes with exclusive ends.
    """
    rows: list[dict[str, object]] = []
    skipped: list[Skipped] = []
    xml_files = sorted(folder.glob("*.xml"))
    if not xml_files:
        raise ValueError(f"no Pascal-VOC .xml files in {folder}")
    for xml_path in xml_files:
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            skipped.append(Skipped(xml_path.name, "annotation", f"unreadable VOC XML: {exc}"))
            continue
        image = (root.findtext("filename") or "").strip()
        if not image:
            skipped.append(Skipped(xml_path.name, "annotation", "VOC XML has no <filename>"))
            continue
        for k, obj in enumerate(root.iter("object"), start=1):
            box = obj.find("bndbox")
            coords = {c: pd.NA if box is None else box.findtext(c) for c in COORDINATES}
            rows.append({"image": image, "label": obj.findtext("name"), **coords,
                         "item": f"{xml_path.name} object {k}"})
    table = _particle_table(pd.DataFrame(rows, columns=PARTICLE_COLUMNS))
    table["xmin"] -= 1
    table["ymin"] -= 1
    log.info("%s: %d boxes in %d VOC files", folder, len(table), len(xml_files))
    return table, skipped


def box_in_image(row_box: tuple[float, float, float, float], width: int, height: int) -> Box:
    """Integer box of a table row, clipped to the image; CropError when nothing usable is left.

    Fractional coordinates are widened to whole pixels; a box partly outside the image keeps its inside.
    """
    if not all(math.isfinite(v) for v in row_box):
        raise CropError(f"box coordinates are not all numbers: {row_box}")
    xmin, ymin = math.floor(row_box[0]), math.floor(row_box[1])
    xmax, ymax = math.ceil(row_box[2]), math.ceil(row_box[3])
    if xmax <= xmin or ymax <= ymin:
        raise CropError(f"box ({xmin}, {ymin}, {xmax}, {ymax}) has zero area")
    clipped = Box(max(xmin, 0), max(ymin, 0), min(xmax, width), min(ymax, height))
    if clipped.width <= 0 or clipped.height <= 0:
        raise CropError(f"box ({xmin}, {ymin}, {xmax}, {ymax}) is outside the {width}x{height} image")
    return clipped


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """A user's table as text, with an ``item`` column naming each row's line in the file."""
    if not path.is_file():
        raise ValueError(f"table not found: {path}")
    table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    table["item"] = "line " + (table.index + 2).astype(str)  # header is line 1
    return table


def _particle_table(table: pd.DataFrame) -> pd.DataFrame:
    """Keep the particle columns: image as text, label as text or None, coordinates as float (bad: NaN)."""
    out = pd.DataFrame({"image": table["image"].fillna("").astype(str).str.strip()})
    label = table["label"] if "label" in table else pd.Series(None, index=table.index, dtype=object)
    out["label"] = [None if pd.isna(v) else str(v).strip() for v in label]
    for c in COORDINATES:
        out[c] = pd.to_numeric(table[c], errors="coerce") if c in table else float("nan")
    out["item"] = table["item"].astype(str)
    return out.reset_index(drop=True)
