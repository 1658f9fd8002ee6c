"""One test per bad image input the microscopy front end must survive (issue: named error or a skipped
row, and the rest processed). Each case goes through ``iter_image_tiles`` next to a good image."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from quagga.images import iter_image_tiles
from quagga.params import ImageParams
from quagga.tiles.store import Skipped, TileItem
from tests.images.test_iter_tiles import _field, _png


def _run(folder: Path, bad: str, **params: object) -> tuple[dict[str, TileItem], dict[str, str]]:
    """Tiles and skip reasons for a folder holding ``good.png`` and the bad file ``bad``."""
    _png(folder / "good.png", _field((40, 40), discs=[(20, 20, 10)]))
    pd.DataFrame({"file": ["good.png", bad], "label": ["ok", "bad"]}).to_csv(folder / "labels.csv", index=False)
    settings = {"images": str(folder), "labels": str(folder / "labels.csv"), **params}
    items = list(iter_image_tiles(ImageParams(**settings), folder))
    tiles = {i.item_id: i for i in items if isinstance(i, TileItem)}
    skipped = {i.source: i.reason for i in items if isinstance(i, Skipped)}
    assert "good.png" in tiles, "the good image must be processed whatever happened to the bad one"
    return tiles, skipped


def test_truncated_image(tmp_path: Path) -> None:
    _png(tmp_path / "full.png", np.random.default_rng(0).random((64, 64)))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[: len(data) // 2])
    _, skipped = _run(tmp_path, "bad.png")
    assert skipped["bad.png"].startswith("cannot read image (")


def test_truncated_jpeg_is_not_half_grey(tmp_path: Path) -> None:
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(tmp_path / "f.jpg")
    data = (tmp_path / "f.jpg").read_bytes()
    (tmp_path / "bad.jpg").write_bytes(data[: len(data) // 2])
    _, skipped = _run(tmp_path, "bad.jpg")
    assert "cannot read image" in skipped["bad.jpg"] and "truncated" in skipped["bad.jpg"]


def test_non_image_file_with_an_image_extension(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_text("sample id,depth\n1,2\n")
    _, skipped = _run(tmp_path, "bad.tif")
    assert skipped["bad.tif"].startswith("cannot read image (")


def test_one_pixel_image(tmp_path: Path) -> None:
    _png(tmp_path / "bad.png", np.full((1, 1), 0.3))
    _, skipped = _run(tmp_path, "bad.png")
    assert skipped["bad.png"] == "no particle stands out from the background of this 1x1 px image (blank or uniform)"
    _, skipped = _run(tmp_path, "bad.png", single_crop="image")
    assert skipped["bad.png"] == "only 1x1 px to tile; at least 2 px per side are needed"


def test_all_constant_image(tmp_path: Path) -> None:
    _png(tmp_path / "bad.png", np.full((30, 30), 0.5))
    _, skipped = _run(tmp_path, "bad.png")
    assert "no particle stands out" in skipped["bad.png"] and "30x30 px" in skipped["bad.png"]
    _, skipped = _run(tmp_path, "bad.png", single_crop="image")
    assert skipped["bad.png"].startswith("crop has no contrast")


def test_16_bit_image_with_few_used_levels_still_makes_a_full_range_tile(tmp_path: Path) -> None:
    pixels = np.full((40, 40), 2, dtype=np.uint16)  # three levels out of 65536: 0, 1 and 2
    pixels[10:30, 10:30] = 0
    pixels[15:25, 15:25] = 1
    tifffile.imwrite(tmp_path / "faint.tif", pixels)
    tiles, skipped = _run(tmp_path, "faint.tif")
    assert not skipped
    tile = tiles["faint.tif"].tile
    assert tile.min() == pytest.approx(0.0, abs=1e-6) and tile.max() == pytest.approx(1.0, abs=1e-6)


def test_boxes_outside_the_image_or_of_zero_area(tmp_path: Path) -> None:
    _png(tmp_path / "field.png", _field((60, 80), discs=[(30, 30, 10)]))
    rows = [("field.png", "ok", 18, 18, 43, 43), ("field.png", "out", 100, 5, 120, 20),
            ("field.png", "flat", 30, 10, 30, 40), ("field.png", "neg", 50, 50, 40, 40)]
    pd.DataFrame(rows, columns=["image", "label", "xmin", "ymin", "xmax", "ymax"]).to_csv(
        tmp_path / "boxes.csv", index=False)
    params = ImageParams(input="boxes", images=str(tmp_path), labels=None, boxes=str(tmp_path / "boxes.csv"))
    items = list(iter_image_tiles(params, tmp_path))
    reasons = {i.item: i.reason for i in items if isinstance(i, Skipped)}
    assert [i.item_id for i in items if isinstance(i, TileItem)] == ["field.png#18,18,43,43"]
    assert reasons == {
        "line 3": "box (100, 5, 120, 20) is outside the 80x60 image",
        "line 4": "box (30, 10, 30, 40) has zero area",
        "line 5": "box (50, 50, 40, 40) has zero area",
    }


def test_huge_image_is_refused_from_its_header_without_decoding(tmp_path: Path) -> None:
    # a 20000x20000 TIFF whose header promises 400 MP (the pixel data is never written)
    tifffile.imwrite(tmp_path / "huge.tif", shape=(20000, 20000), dtype=np.uint8)
    # and a PNG whose header says 20000x20000 (a valid IHDR, then nothing)
    header = (tmp_path / "good_header.png")
    Image.new("L", (8, 8)).save(header)
    data = bytearray(header.read_bytes()[:33])  # signature + IHDR chunk
    data[16:24] = (20000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    empty_idat = (0).to_bytes(4, "big") + b"IDAT" + zlib.crc32(b"IDAT").to_bytes(4, "big")
    (tmp_path / "huge.png").write_bytes(bytes(data) + empty_idat)
    for name in ["huge.tif", "huge.png"]:
        start = time.perf_counter()
        _, skipped = _run(tmp_path, name)
        assert time.perf_counter() - start < 5  # read the header, never the 400 MB of pixels
        assert skipped[name].startswith("image is 20000x20000 px (400 MP), above images.max_megapixels = 100")
    _, skipped = _run(tmp_path, "huge.png", max_megapixels=500)  # allowed now: decoding fails on the missing data
    assert skipped["huge.png"].startswith("cannot read image (")


def test_multi_page_tiff_page_choice(tmp_path: Path) -> None:
    particle = (_field((40, 40), discs=[(20, 20, 12)]) * 255).astype(np.uint8)
    planes = np.stack([np.full((40, 40), 200, np.uint8), particle])
    tifffile.imwrite(tmp_path / "stack.tif", planes)
    _, skipped = _run(tmp_path, "stack.tif")  # page 0 is blank
    assert "no particle stands out" in skipped["stack.tif"]
    tiles, skipped = _run(tmp_path, "stack.tif", page=1)  # good.png has one page and is read as it is
    assert "stack.tif" in tiles and not skipped
    assert tiles["stack.tif"].meta["feat_equivalent_diameter"] == pytest.approx(24, rel=0.1)
    _, skipped = _run(tmp_path, "stack.tif", page=5)
    assert skipped["stack.tif"] == "images.page is 5, but the file has 2 pages (pages count from 0)"


def test_cmyk_jpeg_and_palette_png_are_read_as_colour(tmp_path: Path) -> None:
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:] = (230, 230, 230)
    rgb[10:30, 10:30] = (200, 30, 30)  # a red square on a light field
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    for name in ["cmyk.jpg", "palette.png"]:
        tiles, skipped = _run(tmp_path, name, channel="green")
        assert not skipped
        assert tiles[name].meta["feat_area"] == pytest.approx(400, rel=0.15)
