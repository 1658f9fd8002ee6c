"""Image front end end to end: single images and box tables (CSV, VOC XML), bad input skipped, not fatal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import draw

import quagga.images
from quagga.images import iter_image_tiles
from quagga.images.particles import read_box_table
from quagga.params import DetectParams, ImageParams
from quagga.tiles.store import Skipped, TileItem, TileStore, write_store

BCCD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bccd"


def _png(path: Path, gray: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(gray * 255, 0, 255).astype(np.uint8)).save(path)
    return path


def _field(shape: tuple[int, int], discs: Sequence[tuple[int, int, int]] = (),
           squares: Sequence[tuple[int, int, int]] = ()) -> np.ndarray:
    """Bright field with dark discs (cy, cx, r) and dark squares (top, left, side)."""
    image = np.full(shape, 0.8)
    for cy, cx, r in discs:
        image[draw.disk((cy, cx), r, shape=shape)] = 0.2
    for top, left, side in squares:
        image[top : top + side, left : left + side] = 0.2
    return image


def _split(items: list[TileItem | Skipped]) -> tuple[dict[str, TileItem], list[Skipped]]:
    tiles = {i.item_id: i for i in items if isinstance(i, TileItem)}
    return tiles, [i for i in items if isinstance(i, Skipped)]


def _reason(skipped: list[Skipped], item: str) -> str:
    return next(s.reason for s in skipped if s.item == item)


@pytest.fixture()
def singles(tmp_path: Path) -> Path:
    """Two good particle images and one of every kind of bad image, listed in labels.csv."""
    folder = tmp_path / "data" / "particles"
    _png(folder / "disc.png", _field((40, 40), discs=[(20, 20, 10)]))
    _png(folder / "sub" / "wide.png", _field((30, 60), discs=[(15, 30, 8)]))
    good = (folder / "disc.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "text.png").write_text("this is not a picture")
    _png(folder / "tiny.png", np.full((1, 1), 0.5))
    _png(folder / "flat.png", np.full((20, 20), 0.5))
    rows = [("disc.png", "round"), ("sub/wide.png", ""), ("truncated.png", "x"), ("text.png", "x"),
            ("tiny.png", "x"), ("flat.png", "x"), ("missing.png", "x")]
    pd.DataFrame(rows, columns=["file", "label"]).to_csv(folder / "labels.csv", index=False)
    return tmp_path


def test_single_images_with_labels_and_bad_files(singles: Path) -> None:
    params = ImageParams(images="data/particles", labels="data/particles/labels.csv", single_crop="image")
    tiles, skipped = _split(list(iter_image_tiles(params, singles)))
    assert set(tiles) == {"data/particles/disc.png", "data/particles/sub/wide.png"}
    disc = tiles["data/particles/disc.png"]
    assert disc.tile.shape == (128, 128) and disc.tile.min() >= 0 and disc.tile.max() <= 1
    assert disc.meta["label"] == "round" and disc.meta["source"] == "data/particles/disc.png"
    assert (disc.meta["xmin"], disc.meta["ymin"], disc.meta["xmax"], disc.meta["ymax"]) == (0, 0, 40, 40)
    assert disc.meta["orig_width"] == disc.meta["orig_height"] == 40
    assert disc.meta["scale"] == pytest.approx(128 / 48)  # 40 px and a 4 px margin each side
    assert disc.meta["feat_area"] == pytest.approx(np.pi * 10**2, rel=0.1)
    assert tiles["data/particles/sub/wide.png"].meta["label"] is None  # empty label cell
    reasons = {s.source.rsplit("/", 1)[-1]: s.reason for s in skipped}
    assert set(reasons) == {"truncated.png", "text.png", "tiny.png", "flat.png", "missing.png"}
    assert "cannot read image" in reasons["truncated.png"] and "cannot read image" in reasons["text.png"]
    assert "1x1 px" in reasons["tiny.png"]
    assert "no contrast" in reasons["flat.png"]
    assert "image not found" in reasons["missing.png"]


def test_single_images_cropped_to_their_particle(singles: Path) -> None:
    """Default single_crop: the particle's own box (not the imager's margin) sets the tile."""
    params = ImageParams(images="data/particles", labels="data/particles/labels.csv")
    tiles, skipped = _split(list(iter_image_tiles(params, singles)))
    disc = tiles["data/particles/disc.png"]
    box = (disc.meta["xmin"], disc.meta["ymin"], disc.meta["xmax"], disc.meta["ymax"])
    assert box == (11, 11, 30, 30)  # skimage's disk of radius 10 at (20, 20) spans 11..29
    assert disc.meta["scale"] == pytest.approx(128 / (19 + 2 * 2))  # a 10 % margin of 19 px rounds to 2
    assert disc.item_id == "data/particles/disc.png"  # still one item per image
    reasons = {s.source.rsplit("/", 1)[-1]: s.reason for s in skipped}
    assert "no particle stands out" in reasons["flat.png"] and "20x20 px" in reasons["flat.png"]
    assert "1x1 px" in reasons["tiny.png"]


def test_single_images_labelled_by_folder(tmp_path: Path) -> None:
    for name in ["dust/a.png", "pollen/b.PNG", "deep/er/c.png", "loose.png"]:
        _png(tmp_path / "imgs" / name, _field((30, 30), discs=[(15, 15, 6)]))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    params = ImageParams(images=str(tmp_path / "imgs"), labels=None)
    tiles, skipped = _split(list(iter_image_tiles(params, tmp_path / "elsewhere")))
    labels = {Path(k).name: t.meta["label"] for k, t in tiles.items()}
    assert labels == {"a.png": "dust", "b.PNG": "pollen", "c.png": "deep/er", "loose.png": None}
    assert not skipped
    assert all(Path(k).is_absolute() for k in tiles)  # outside base_dir: absolute source paths


@pytest.fixture()
def fields(tmp_path: Path) -> Path:
    """A 120x200 field with two discs and a square, one constant field, and a box table with bad rows."""
    f1 = _field((120, 200), discs=[(40, 50, 15), (105, 192, 10)], squares=[(60, 130, 30)])
    _png(tmp_path / "fields" / "f1.png", f1)
    _png(tmp_path / "fields" / "flat.png", np.full((50, 50), 0.6))
    rows = [
        ("f1.png", "disc", 35, 25, 66, 56),  # line 2
        ("f1.png", "square", 130, 60, 160, 90),  # line 3
        ("f1.png", "outside", 300, 10, 320, 30),  # line 4
        ("f1.png", "empty", 50, 50, 50, 60),  # line 5
        ("missing.png", "disc", 0, 0, 10, 10),  # line 6
        ("flat.png", "flat", 10, 10, 30, 30),  # line 7
        ("f1.png", "edge", 182, 95, 230, 130),  # line 8: partly outside, clipped to 182,95,200,120
        ("f1.png", "twice", 130, 60, 160, 90),  # line 9: same box as line 3
        ("f1.png", "nan", "a", 1, 2, 3),  # line 10
    ]
    pd.DataFrame(rows, columns=["image", "label", "xmin", "ymin", "xmax", "ymax"]).to_csv(
        tmp_path / "fields" / "boxes.csv", index=False)
    return tmp_path


def test_boxes_crop_the_right_region(fields: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real_read = quagga.images.read_pixels
    monkeypatch.setattr(quagga.images, "read_pixels", lambda path, *args: reads.append(path.name) or
                        real_read(path, *args))
    params = ImageParams(input="boxes", images="fields", labels=None, boxes="fields/boxes.csv")
    tiles, skipped = _split(list(iter_image_tiles(params, fields)))
    assert sorted(reads) == ["f1.png", "flat.png"]  # each field read once, however many boxes it has
    assert set(tiles) == {
        "fields/f1.png#35,25,66,56", "fields/f1.png#130,60,160,90", "fields/f1.png#182,95,200,120"}
    disc, square = tiles["fields/f1.png#35,25,66,56"], tiles["fields/f1.png#130,60,160,90"]
    assert disc.meta["label"] == "disc" and square.meta["label"] == "square"
    assert disc.meta["orig_width"] == 200 and disc.meta["orig_height"] == 120
    # a square fills the corners of the particle area, a disc does not
    corner = (slice(14, 20), slice(14, 20))
    assert square.tile[corner].max() < 0.1 and disc.tile[corner].min() > 0.9
    assert disc.tile[64, 64] < 0.1 and square.tile[64, 64] < 0.1
    assert disc.meta["feat_area"] == pytest.approx(np.pi * 15**2, rel=0.1)
    assert square.meta["feat_area"] == pytest.approx(30**2, rel=0.05)
    assert square.meta["feat_solidity"] == pytest.approx(1.0, abs=0.02)
    assert _reason(skipped, "line 4") == "box (300, 10, 320, 30) is outside the 200x120 image"
    assert "zero area" in _reason(skipped, "line 5")
    assert "image not found" in _reason(skipped, "line 6")
    assert "no contrast" in _reason(skipped, "line 7")
    assert _reason(skipped, "line 9") == "same particle as line 3"
    assert "not all numbers" in _reason(skipped, "line 10")
    assert len(skipped) == 6
    edge = tiles["fields/f1.png#182,95,200,120"]
    assert (edge.meta["xmax"], edge.meta["ymax"]) == (200, 120)
    assert edge.tile[:, -10:].mean() > 0.9  # the part beyond the image is background, not black


def test_boxes_flow_into_a_tile_store(fields: Path, tmp_path: Path) -> None:
    params = ImageParams(input="boxes", images="fields", labels=None, boxes="fields/boxes.csv")
    assert write_store(tmp_path / "store", iter_image_tiles(params, fields), {}, modality="images") == 3
    store = TileStore(tmp_path / "store")
    assert list(store.index["label"]) == ["disc", "square", "edge"]
    assert {"feat_area", "scale", "shrunk", "orig_width"} <= set(store.index.columns)
    assert len(store.skipped) == 6


def _voc(path: Path, filename: str, objects: list[tuple[str, int, int, int, int]]) -> None:
    boxes = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1 in objects
    )
    path.write_text(f"<annotation><folder>fields</folder><filename>{filename}</filename>"
                    f"<size><width>200</width><height>120</height><depth>1</depth></size>{boxes}</annotation>")


def test_voc_xml_folder(fields: Path) -> None:
    ann = fields / "ann"
    ann.mkdir()
    _voc(ann / "f1.xml", "f1.png", [("disc", 36, 26, 66, 56), ("square", 131, 61, 160, 90)])
    (ann / "broken.xml").write_text("<annotation><filename>f1.png</filename>")
    params = ImageParams(input="boxes", images="fields", labels=None, boxes="ann")
    tiles, skipped = _split(list(iter_image_tiles(params, fields)))
    # VOC is 1-based with inclusive ends: the same boxes as the CSV's 0-based, exclusive ones
    assert {k: t.meta["label"] for k, t in tiles.items()} == {
        "fields/f1.png#35,25,66,56": "disc", "fields/f1.png#130,60,160,90": "square"}
    assert [(s.source, s.item) for s in skipped] == [("broken.xml", "annotation")]
    assert "unreadable VOC XML" in skipped[0].reason


def test_missing_tables_and_folders_are_user_errors(fields: Path) -> None:
    with pytest.raises(ValueError, match="nope.csv"):
        iter_image_tiles(ImageParams(input="boxes", images="fields", boxes="nope.csv"), fields)
    with pytest.raises(ValueError, match="labels.csv"):
        iter_image_tiles(ImageParams(images="fields", labels="labels.csv"), fields)
    with pytest.raises(ValueError, match="images folder not found"):
        iter_image_tiles(ImageParams(images="no_such_folder", labels=None), fields)
    with pytest.raises(ValueError, match="images.boxes"):
        iter_image_tiles(ImageParams(input="boxes", images="fields", boxes=None), fields)
    (fields / "empty").mkdir()
    with pytest.raises(ValueError, match="no Pascal-VOC .xml files"):
        iter_image_tiles(ImageParams(input="boxes", images="fields", boxes="empty"), fields)
    (fields / "bad.csv").write_text("image,label,x,y\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['xmin'"):
        iter_image_tiles(ImageParams(input="boxes", images="fields", boxes="bad.csv"), fields)


@pytest.mark.slow
@pytest.mark.skipif(not (BCCD / "boxes.csv").is_file(), reason="BCCD data not in ../shared/data")
def test_bccd_first_images(tmp_path: Path) -> None:
    table = pd.read_csv(BCCD / "boxes.csv")
    first = table[table["image"].isin(table["image"].unique()[:5])]
    first.to_csv(tmp_path / "boxes.csv", index=False)  # image paths are relative to the bccd folder
    params = ImageParams(input="boxes", images=str(BCCD), labels=None, boxes="boxes.csv")
    tiles, skipped = _split(list(iter_image_tiles(params, tmp_path)))
    assert not skipped and len(tiles) == len(first)
    index = pd.DataFrame([t.meta for t in tiles.values()])
    assert index["label"].value_counts().to_dict() == first["label"].value_counts().to_dict()
    assert set(index[["orig_width", "orig_height"]].itertuples(index=False)) == {(640, 480)}
    sizes = index.groupby("label")["feat_equivalent_diameter"].median()
    assert sizes["Platelets"] < sizes["RBC"] < sizes["WBC"]  # platelets are small, white cells big

    xml_dir = tmp_path / "ann"
    xml_dir.mkdir()
    for image in first["image"].unique():
        name = Path(image).with_suffix(".xml").name
        (xml_dir / name).write_bytes((BCCD / "BCCD" / "Annotations" / name).read_bytes())
    voc = ImageParams(input="boxes", images=str(BCCD / "BCCD" / "JPEGImages"), labels=None, boxes="ann")
    voc_tiles, voc_skipped = _split(list(iter_image_tiles(voc, tmp_path)))
    assert not voc_skipped and len(voc_tiles) == len(first)


def _ids(items: list[TileItem | Skipped]) -> list[tuple]:
    return [(i.item_id, tuple(sorted(i.meta.items())), i.tile.tobytes()) if isinstance(i, TileItem) else i
            for i in items]


@pytest.mark.parametrize("kind", ["single", "boxes", "segment"])
def test_shards_together_are_the_whole_run_and_table_level_skips_come_once(
    singles: Path, fields: Path, kind: str
) -> None:
    if kind == "single":
        params, root = ImageParams(images="data/particles", labels="data/particles/labels.csv"), singles
    else:
        _png(fields / "fields" / "f2.png", _field((60, 80), discs=[(30, 40, 12)]))
        (fields / "ann").mkdir()
        _voc(fields / "ann" / "f1.xml", "f1.png", [("disc", 36, 26, 66, 56), ("square", 131, 61, 160, 90)])
        _voc(fields / "ann" / "f2.xml", "f2.png", [("disc", 18, 28, 42, 52)])
        _voc(fields / "ann" / "gone.xml", "gone.png", [("disc", 1, 1, 9, 9)])
        (fields / "ann" / "broken.xml").write_text("<annotation><filename>f1.png</filename>")
        params = ImageParams(input=kind, images="fields", labels=None, boxes="ann",
                             detect=DetectParams(background_sigma_px=0))
        root = fields
    whole = list(iter_image_tiles(params, root))
    table_level = [] if kind == "single" else read_box_table(root / "ann")[1]
    assert kind == "single" or table_level  # the unreadable VOC file
    for n in (1, 2, 3, 4):
        shards = [list(iter_image_tiles(params, root, shard=(k, n))) for k in range(n)]
        assert _ids([i for shard in shards for i in shard]) == _ids(whole), n
        assert all(s not in shard for shard in shards[1:] for s in table_level)
    assert sum(isinstance(i, TileItem) for i in whole) >= 2


def test_a_crop_cut_tight_around_its_particle_is_tiled_whole() -> None:
    """Nothing but fine texture against the border's level (a grain filling its 12x30 px crop): no region
    survives the opening, so the whole image is the particle, not a skip."""
    from quagga.images import particle_region

    image = np.full((12, 30), 0.5, dtype=np.float32)
    image[1::3, 1::3] = 0.9  # isolated bright pixels: texture, no region
    box, mask = particle_region(image)
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == (0, 0, 30, 12) and mask.all()
