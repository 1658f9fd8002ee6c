"""Shared fixtures: a tiny synthetic tile store (blobs vs bars) and a small, fast training recipe."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from quagga.params import TrainParams
from quagga.tiles.store import TileItem, write_store

TILE_SIZE = 32
N_TILES = 64
TILE_PARAMS = {"tile_size": TILE_SIZE, "kind": "synthetic", "version": 1}


def synthetic_items(n: int = N_TILES, size: int = TILE_SIZE, seed: int = 0) -> list[TileItem]:
    """Half round Gaussian blobs, half horizontal bars, at random places on a faint noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    items = []
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, size=2)
        if i % 2 == 0:
            shape = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2.0, 4.0) ** 2))
            label = "blob"
        else:
            shape = ((np.abs(yy - cy) < 1.5) & (np.abs(xx - cx) < size / 3)).astype(np.float32)
            label = "bar"
        tile = np.clip(0.05 + 0.9 * shape + rng.normal(0, 0.02, (size, size)), 0, 1)
        items.append(TileItem(f"item{i:03d}", tile.astype(np.float32), {"label": label}))
    return items


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy machine spin-waiting threads cost 5x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "tiles"
    write_store(path, synthetic_items(), TILE_PARAMS, "synthetic")
    return path


@pytest.fixture(scope="session")
def large_store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten times the tiles: epochs long enough (about a second) to interrupt one."""
    path = tmp_path_factory.mktemp("large") / "tiles"
    write_store(path, synthetic_items(n=10 * N_TILES), TILE_PARAMS, "synthetic")
    return path


@pytest.fixture(scope="session")
def other_store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiles made with other tile parameters."""
    path = tmp_path_factory.mktemp("other") / "tiles"
    write_store(path, synthetic_items(), {**TILE_PARAMS, "version": 2}, "synthetic")
    return path


@pytest.fixture(scope="session")
def small_params() -> TrainParams:
    """A recipe that trains in about a second per epoch on 64 tiles of 32 x 32."""
    return dataclasses.replace(
        TrainParams(),
        latent_dim=4,
        base_channels=8,
        depth=3,
        batch_size=16,
        max_epochs=2,
        min_steps=0,
        val_fraction=0.25,
        accelerator="cpu",
        seed=3,
    )
