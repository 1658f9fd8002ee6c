"""Tile store: streamed write, memory-mapped read, atomic folder, parameter guard."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagga.tiles.store import (
    Skipped,
    StoreError,
    TileItem,
    TileStore,
    merge_stores,
    parse_shard,
    shard_bounds,
    to_float16,
    write_store,
)


def _items(n: int) -> list[TileItem | Skipped]:
    rng = np.random.default_rng(0)
    items: list[TileItem | Skipped] = [
        TileItem(f"f{i}", rng.random((16, 16), dtype=np.float32), {"label": "ab"[i % 2], "source": f"f{i}.wav"})
        for i in range(n)
    ]
    items.insert(2, Skipped("bad.wav", "row 3", "cannot read audio"))
    return items


def test_round_trip(tmp_path: Path) -> None:
    items = _items(5)
    assert write_store(tmp_path / "s", items, {"a": 1}, "audio") == 5
    store = TileStore(tmp_path / "s")
    assert len(store) == 5 and store.tiles.shape == (5, 1, 16, 16) and store.tile_size == 16
    first = items[0]
    assert isinstance(first, TileItem)
    np.testing.assert_allclose(store.tiles[0, 0], first.tile, atol=1e-3)  # float16 storage
    assert list(store.index["item_id"]) == [f"f{i}" for i in range(5)]
    assert list(store.index["label"]) == ["a", "b", "a", "b", "a"]
    assert store.skipped.to_dict(orient="records") == [
        {"source": "bad.wav", "item": "row 3", "reason": "cannot read audio"}
    ]
    assert not list(tmp_path.glob("*.tmp-*"))


def test_guards(tmp_path: Path) -> None:
    write_store(tmp_path / "s", _items(3), {"n_fft": 512}, "audio")
    store = TileStore(tmp_path / "s")
    store.require_params({"n_fft": 512})
    with pytest.raises(StoreError, match="other parameters"):
        store.require_params({"n_fft": 1024})
    with pytest.raises(StoreError, match="no usable items.*bad.wav: broken"):
        write_store(tmp_path / "empty", [Skipped("bad.wav", "row 2", "broken")], {}, "audio")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(StoreError, match=r"values must be finite and in \[0, 1\]"):
        write_store(tmp_path / "x", [TileItem("a", np.full((4, 4), 2.0))], {}, "audio")
    with pytest.raises(StoreError, match="duplicate item_id"):
        write_store(tmp_path / "x", [TileItem("a", np.zeros((4, 4)))] * 2, {}, "audio")
    with pytest.raises(StoreError, match="not a tile store"):
        TileStore(tmp_path / "nothing")


def test_index_is_written_in_chunks_under_one_promoted_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import quagga.tiles.store as store_module

    chunked = functools.partialmethod(store_module._IndexWriter.__init__, chunk=3)
    monkeypatch.setattr(store_module._IndexWriter, "__init__", chunked)
    items = [TileItem(f"i{k}", np.zeros((4, 4)), {
        "label": None if k < 5 else "x",  # no label at all in the first chunk
        "row": k if k < 7 else float("nan"),  # integers first, a missing value later
        **({"late": "y"} if k > 8 else {}),  # a column that appears in a later chunk only
    }) for k in range(11)]
    assert write_store(tmp_path / "s", items, {}, "images") == 11
    index = TileStore(tmp_path / "s").index
    assert index["item_id"].tolist() == [f"i{k}" for k in range(11)]
    assert index["label"].isna().sum() == 5 and (index["label"].dropna() == "x").all()
    assert index["row"].iloc[:7].tolist() == list(range(7)) and index["row"].iloc[7:].isna().all()
    assert index["late"].isna().sum() == 9
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["index.parquet", "skipped.csv", "store.json",
                                                                   "tiles.bin"]


def _shard_stores(tmp_path: Path, items: list[TileItem | Skipped], cuts: list[int], **kw: object) -> list[Path]:
    """``items`` cut at ``cuts`` into shard stores s0, s1, ... (a shard may be empty)."""
    bounds = [0, *cuts, len(items)]
    dirs = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        dirs.append(tmp_path / f"s{k}")
        write_store(dirs[-1], items[a:b], {"a": 1}, "audio", allow_empty=True, **kw)  # type: ignore[arg-type]
    return dirs


def test_merged_shards_equal_the_store_written_at_once(tmp_path: Path) -> None:
    items = _items(9)
    items.insert(7, Skipped("worse.wav", "row 8", "truncated"))
    write_store(tmp_path / "whole", items, {"a": 1}, "audio")
    extra = _extra_csv
    shards = _shard_stores(tmp_path, items, [4, 4, 8], extra=extra)  # s1 is empty
    assert TileStore(shards[1]).shape[0] == 0
    write_store(tmp_path / "whole-extra", items, {"a": 1}, "audio", extra=extra)
    assert merge_stores(tmp_path / "merged", shards) == 9
    whole, merged = TileStore(tmp_path / "whole"), TileStore(tmp_path / "merged")
    assert (tmp_path / "merged" / "tiles.bin").read_bytes() == (tmp_path / "whole" / "tiles.bin").read_bytes()
    pd.testing.assert_frame_equal(merged.index, whole.index)
    pd.testing.assert_frame_equal(merged.skipped, whole.skipped)
    assert merged.meta == whole.meta
    assert ((tmp_path / "merged" / "extra.csv").read_text()
            == (tmp_path / "whole-extra" / "extra.csv").read_text())
    assert not list(tmp_path.glob("*.tmp-*"))
    for first in (0, 1):  # scratch shards consumed: the first one's tiles moved (an empty one too), the same store
        scratch = _shard_stores(tmp_path / f"scratch{first}", items, [4 * first, 4, 8], extra=extra)
        assert merge_stores(tmp_path / f"consumed{first}", scratch, consume=True) == 9
        assert not (scratch[0] / "tiles.bin").exists()
        consumed = tmp_path / f"consumed{first}"
        assert (consumed / "tiles.bin").read_bytes() == (tmp_path / "whole" / "tiles.bin").read_bytes()
        pd.testing.assert_frame_equal(TileStore(consumed).index, whole.index)


def _extra_csv(folder: Path, index: pd.DataFrame) -> None:
    index[["item_id", "label"]].to_csv(folder / "extra.csv", index=False)


def test_merge_refuses_shards_made_otherwise(tmp_path: Path) -> None:
    items = _items(4)
    write_store(tmp_path / "a", items, {"a": 1}, "audio")
    write_store(tmp_path / "b", items, {"a": 2}, "audio")
    with pytest.raises(StoreError, match="tile_params"):
        merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "b"])
    write_store(tmp_path / "c", items, {"a": 1}, "images")
    with pytest.raises(StoreError, match="modality"):
        merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "c"])
    small = [TileItem("g", np.zeros((8, 8), np.float32))]
    write_store(tmp_path / "d", small, {"a": 1}, "audio")
    with pytest.raises(StoreError, match="sizes"):
        merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "d"])
    with pytest.raises(StoreError, match="no usable items for .*: x: z"):
        merge_stores(tmp_path / "m", _shard_stores(tmp_path / "e", [Skipped("x", "y", "z")], []))
    with pytest.raises(StoreError, match="duplicate item_id 'f0'"):  # as write_store refuses it
        merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "a"])
    assert not (tmp_path / "m").exists()


def test_shard_bounds_and_parse() -> None:
    assert [shard_bounds(7, (k, 3)) for k in range(3)] == [(0, 3), (3, 5), (5, 7)]
    assert [shard_bounds(1, (k, 3)) for k in range(3)] == [(0, 1), (1, 1), (1, 1)]
    # weighted: blocks of about equal work (one image with 9 particles is a block of its own), still contiguous
    weights = np.array([9, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    assert [shard_bounds(10, (k, 2), weights) for k in range(2)] == [(0, 1), (1, 10)]
    assert [shard_bounds(3, (k, 4), np.array([1, 1, 1])) for k in range(4)] == [(0, 1), (1, 2), (2, 3), (3, 3)]
    assert shard_bounds(0, (0, 2), np.array([], dtype=int)) == (0, 0)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "x", "1/2/3", "-1/2"):
        with pytest.raises(StoreError, match="shard"):
            parse_shard(bad)


def test_cli_merge_tiles(tmp_path: Path) -> None:
    from quagga.cli import main

    shards = _shard_stores(tmp_path, _items(5), [2])
    assert main(["merge-tiles", "--out", str(tmp_path / "m"), *map(str, shards)]) == 0
    assert len(TileStore(tmp_path / "m")) == 5
    assert main(["merge-tiles", "--out", str(tmp_path / "m2"), str(tmp_path / "nope")]) == 2


def test_seen_ids_refuse_an_id_twice_whether_it_is_among_the_latest_or_the_older() -> None:
    """10,000 distinct ids pass (the older ones moved into the sorted array, the latest in the set); an id seen
    again is refused from either place, by name."""
    import hashlib

    from quagga.tiles.store import _SeenIds

    seen = _SeenIds()
    for i in range(10_000):
        seen.add(f"rec{i % 7}.wav#{i:06d}")
    assert len(seen.older) + len(seen.latest) == 10_000 and len(seen.older) >= 8192
    older, latest = "rec0.wav#000000", "rec3.wav#009999"
    assert int.from_bytes(hashlib.blake2b(latest.encode(), digest_size=8).digest(), "big") in seen.latest
    for again in (older, latest):
        with pytest.raises(StoreError, match=f"duplicate item_id '{again}'"):
            seen.add(again)


def test_to_float16_is_numpys_conversion_bit_for_bit() -> None:
    """Every 9,973rd float32 from 0 to float16's smallest normal, the halfway cases between its subnormals
    (ties to even), and random values over [0, 1]: the same bits as ``astype(np.float16)``."""
    small = np.arange(0, np.float32(2.0**-14).view(np.uint32) + 1, 9973, dtype=np.uint32).view(np.float32)
    halfway = ((np.arange(2048) + 0.5) * 2.0**-24).astype(np.float32)
    spread = np.random.default_rng(0).random(100_000).astype(np.float32) ** 8  # many subnormals: the fast path
    for values in (small, halfway, spread, np.array([0.0, 1.0, 2.0**-14], dtype=np.float32)):
        np.testing.assert_array_equal(to_float16(values).view(np.uint16), values.astype(np.float16).view(np.uint16))
    tile = spread[:3 * 16 * 16].reshape(3, 16, 16)
    assert to_float16(tile).shape == tile.shape and to_float16(tile).dtype == np.float16
