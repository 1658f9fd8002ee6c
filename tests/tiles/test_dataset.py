"""Tile dataset and datamodule: dtype/shape, seeded disjoint split, epoch-seeded shuffling, order."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from quagga.tiles.dataset import EpochShuffleSampler, TileDataModule, TileDataset, split_indices
from quagga.tiles.store import TileItem, TileStore, write_store

N = 20


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("ds") / "tiles"
    write_store(path, [TileItem(f"t{i:02d}", rng.random((8, 8))) for i in range(N)], {"tile_size": 8}, "test")
    return path


def test_dataset_items_are_float32_tiles(store_dir: Path) -> None:
    store = TileStore(store_dir)
    ds = TileDataset(store, [3, 0])
    assert len(ds) == 2
    x = ds[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8)
    np.testing.assert_array_equal(x.numpy(), store.tiles[3].astype(np.float32))
    np.testing.assert_array_equal(ds[1].numpy(), store.tiles[0].astype(np.float32))
    # Workers receive a pickled dataset: the store must reopen its memory map there.
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.store._tiles is None
    np.testing.assert_array_equal(clone[0].numpy(), x.numpy())
    assert len(TileDataset(store)) == N


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(100, 0.2, seed=7)
    assert len(train) == 80 and len(val) == 20
    assert not set(train) & set(val) and sorted({*train, *val}) == list(range(100))
    again_train, again_val = split_indices(100, 0.2, seed=7)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(val, split_indices(100, 0.2, seed=8)[1])
    assert len(split_indices(5, 0.01, 0)[1]) == 1  # a positive fraction keeps one validation item
    assert len(split_indices(2, 0.9, 0)[0]) == 1  # ... and one training item
    assert len(split_indices(10, 0.0, 0)[1]) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 1.0, 0)


def test_sampler_permutes_per_epoch_reproducibly() -> None:
    sampler = EpochShuffleSampler(30, seed=4)
    first = list(sampler)
    assert sorted(first) == list(range(30)) and first != list(range(30))
    assert list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    resumed = EpochShuffleSampler(30, seed=4)
    resumed.set_epoch(1)
    assert list(resumed) == second


def test_datamodule_loaders(store_dir: Path) -> None:
    dm = TileDataModule(store_dir, batch_size=4, val_fraction=0.25, seed=0)
    assert len(dm.train_indices) == 15 and len(dm.val_indices) == 5
    assert not set(dm.train_indices) & set(dm.val_indices)
    other = TileDataModule(store_dir, batch_size=4, val_fraction=0.25, seed=0)
    np.testing.assert_array_equal(dm.val_indices, other.val_indices)

    train = list(dm.train_dataloader())
    assert len(train) == 3 and all(b.shape == (4, 1, 8, 8) for b in train)  # 15 items: trailing 3 dropped
    val = dm.val_dataloader()
    assert not isinstance(val, list)
    np.testing.assert_array_equal(
        torch.cat(list(val)).numpy(), dm.store.tiles[dm.val_indices].astype(np.float32)
    )
    predicted = torch.cat(list(dm.predict_dataloader()))
    np.testing.assert_array_equal(predicted.numpy(), dm.store.tiles[:].astype(np.float32))
    assert TileDataModule(store_dir, val_fraction=0.0).val_dataloader() == []
