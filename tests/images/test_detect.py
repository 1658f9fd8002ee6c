"""Automatic particle detection: what it finds on synthetic fields, box matching, and input: segment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import draw

from quagga.images import found_boxes_writer, iter_image_tiles
from quagga.images.detect import check_detect, find_particles, iou_matrix, match_boxes
from quagga.images.normalize import Box
from quagga.params import DetectParams, ImageParams
from quagga.tiles.store import Skipped, TileItem, TileStore, merge_stores, write_store
from tests.images.test_iter_tiles import _png

FLAT = DetectParams(background_sigma_px=0)
DISC = Box(36, 26, 65, 55)  # the disc's one-pixel tips are shaved by the opening (open_px 2)
SQUARE = Box(130, 60, 160, 90)


def _field(shape: tuple[int, int] = (120, 200), value: float = 0.2, background: float = 0.8) -> np.ndarray:
    image = np.full(shape, background)
    image[draw.disk((40, 50), 15, shape=shape)] = value  # box (35, 25, 66, 56)
    image[60:90, 130:160] = value  # box (130, 60, 160, 90)
    image[5:7, 5:7] = value  # a 4 px speck
    return image


def test_dark_particles_on_a_bright_field_are_found_with_tight_boxes() -> None:
    assert find_particles(_field(), FLAT) == [DISC, SQUARE]


def test_bright_particles_on_a_dark_field_need_no_setting() -> None:
    assert find_particles(_field(value=0.9, background=0.1), FLAT) == [DISC, SQUARE]


def test_uneven_illumination_is_subtracted() -> None:
    ramp = np.linspace(0.0, 0.5, 200)[None, :]
    field = np.clip(_field(value=0.1, background=0.45) + ramp, 0, 1)
    assert find_particles(field, FLAT) != [DISC, SQUARE]  # ramp fools a flat threshold
    assert find_particles(field, DetectParams(background_sigma_px=40, open_px=2)) == [
        DISC, SQUARE]


def test_area_limits_border_and_grow() -> None:
    field = _field()
    field[100:120, 0:20] = 0.2  # touches the left and bottom edges
    assert Box(0, 100, 20, 120) in find_particles(field, FLAT)
    assert Box(0, 100, 20, 120) not in find_particles(field, DetectParams(background_sigma_px=0, border="drop"))
    assert find_particles(field, DetectParams(background_sigma_px=0, min_area_px=800)) == [SQUARE]
    assert find_particles(field, DetectParams(background_sigma_px=0, max_area_px=800)) == [
        DISC, Box(0, 100, 20, 120)]
    grown = find_particles(_field(), DetectParams(background_sigma_px=0, grow_px=5))
    assert grown == [Box(31, 21, 70, 60), Box(125, 55, 165, 95)]


def test_touching_particles_are_split_by_watershed() -> None:
    field = np.full((80, 120), 0.8)
    field[draw.disk((40, 40), 20)] = 0.2
    field[draw.disk((40, 76), 20)] = 0.2  # overlaps the first by 4 px
    assert len(find_particles(field, FLAT)) == 1
    split = find_particles(field, DetectParams(background_sigma_px=0, split_touching=True, split_min_distance_px=10))
    assert len(split) == 2
    assert all(abs(b.width - 40) <= 4 and abs(b.height - 41) <= 2 for b in split)


def test_a_blank_field_has_no_particles() -> None:
    assert find_particles(np.full((50, 50), 0.5), FLAT) == []


def test_unknown_settings_are_config_errors() -> None:
    with pytest.raises(ValueError, match="images.detect.threshold: unknown value 'magic'"):
        check_detect(DetectParams(threshold="magic"))


def test_iou_and_one_to_one_matching() -> None:
    truth = [(0, 0, 10, 10), (20, 0, 30, 10)]
    found = [(0, 0, 10, 5), (0, 0, 10, 10), (20, 0, 30, 10), (50, 50, 60, 60)]
    np.testing.assert_allclose(iou_matrix(found, truth)[:, 0], [0.5, 1.0, 0.0, 0.0])
    assert sorted(match_boxes(found, truth)) == [(1, 0, 1.0), (2, 1, 1.0)]  # box 0 loses to the better match
    assert match_boxes([], truth) == []


def test_segment_input_tiles_found_particles_labels_them_and_writes_the_boxes(tmp_path: Path) -> None:
    _png(tmp_path / "fields" / "a.png", _field())
    _png(tmp_path / "fields" / "blank.png", np.full((40, 40), 0.5))
    (tmp_path / "fields" / "broken.png").write_text("not an image")
    pd.DataFrame([("a.png", "disc", 34, 24, 67, 57)],  # a human box for one of the two particles
                 columns=["image", "label", "xmin", "ymin", "xmax", "ymax"]).to_csv(tmp_path / "boxes.csv", index=False)
    params = ImageParams(input="segment", images="fields", labels=None, boxes="boxes.csv", detect=FLAT)
    items = list(iter_image_tiles(params, tmp_path))
    tiles = {i.item_id: i for i in items if isinstance(i, TileItem)}
    skipped = {i.source: i.reason for i in items if isinstance(i, Skipped)}
    assert set(tiles) == {"fields/a.png#36,26,65,55", "fields/a.png#130,60,160,90"}
    assert tiles["fields/a.png#36,26,65,55"].meta["label"] == "disc"
    assert tiles["fields/a.png#130,60,160,90"].meta["label"] is None  # no human box: unlabelled
    assert skipped["fields/blank.png"].startswith("no particles found (40x40 px")
    assert "cannot read image" in skipped["fields/broken.png"]

    store_dir = tmp_path / "tiles"
    write_store(store_dir, items, {}, "images", extra=found_boxes_writer(params, tmp_path))
    found = pd.read_csv(store_dir / "found_boxes.csv")
    assert found.columns.tolist() == ["image", "label", "xmin", "ymin", "xmax", "ymax"]
    assert found[["image", "xmin", "ymin"]].values.tolist() == [["a.png", 36, 26], ["a.png", 130, 60]]
    assert len(TileStore(store_dir)) == 2
    # the boxes found can be fed back as a box table
    again = ImageParams(input="boxes", images="fields", labels=None, boxes="tiles/found_boxes.csv")
    assert {i.item_id for i in iter_image_tiles(again, tmp_path) if isinstance(i, TileItem)} == set(tiles)
    assert found_boxes_writer(again, tmp_path) is None


def test_closing_joins_the_lobes_of_one_particle() -> None:
    field = np.full((80, 120), 0.8)
    for cx in (40, 60, 80):  # three lobes 8 px apart, like a segmented nucleus
        field[draw.disk((40, cx), 6)] = 0.2
    assert len(find_particles(field, FLAT)) == 3
    joined = find_particles(field, DetectParams(background_sigma_px=0, close_px=6))
    assert joined == [Box(35, 35, 86, 46)]  # tips shaved by the opening, as for DISC


def test_segment_shards_merge_into_the_same_store_with_its_found_boxes(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _png(tmp_path / "fields" / f"{name}.png", _field())
    _png(tmp_path / "fields" / "blank.png", np.full((40, 40), 0.5))
    params = ImageParams(input="segment", images="fields", labels=None, boxes=None, detect=FLAT)
    extra = found_boxes_writer(params, tmp_path)
    write_store(tmp_path / "whole", iter_image_tiles(params, tmp_path), {}, "images", extra=extra)
    shards = [tmp_path / f"shard{k}" for k in range(3)]
    for k, shard in enumerate(shards):
        write_store(shard, iter_image_tiles(params, tmp_path, shard=(k, 3)), {}, "images", extra=extra,
                    allow_empty=True)
    merge_stores(tmp_path / "merged", shards)
    for name in ("found_boxes.csv", "skipped.csv", "tiles.bin"):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    pd.testing.assert_frame_equal(TileStore(tmp_path / "merged").index, TileStore(tmp_path / "whole").index)
