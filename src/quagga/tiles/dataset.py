"""Torch access to a tile store: a Dataset over chosen tiles and a Lightning DataModule.

Tiles are read from the store's memory map one item at a time, so memory does not grow with the
store; each dataloader worker opens its own map (the store drops it when pickled).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from quagga.tiles.split import split_indices
from quagga.tiles.store import TileStore


class TileDataset(Dataset[torch.Tensor]):
    """Tiles ``indices`` of ``store`` (all, in store order, if None) as float32 tensors ``[1, S, S]``."""

    def __init__(self, store: TileStore, indices: Sequence[int] | np.ndarray | None = None):
        self.store = store
        self.indices = np.arange(len(store)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        # torch widens float16 at full speed; numpy takes a slow path on the subnormal values that faint
        # tiles hold (a colour absorbance tile: 1 ms against 0.07 ms), the same values either way
        return torch.from_numpy(np.array(self.store.tiles[self.indices[i]])).float()


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation each epoch drawn from ``(seed, epoch)``.

    Lightning calls ``set_epoch``, so a run resumed from a checkpoint sees the same order of items
    as one that was never interrupted.
    """

    def __init__(self, n: int, seed: int):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class TileDataModule(L.LightningDataModule):
    """Train/validation/predict loaders over one tile store, split reproducibly from ``seed``."""

    def __init__(
        self,
        store_dir: str | Path,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.store = TileStore(store_dir)
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.train_indices, self.val_indices = split_indices(len(self.store), val_fraction, seed)

    def _loader(self, indices: np.ndarray | None, **kwargs: object) -> DataLoader[torch.Tensor]:
        return DataLoader(
            TileDataset(self.store, indices),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,  # type: ignore[arg-type]
        )

    def train_dataloader(self) -> DataLoader[torch.Tensor]:
        # A trailing batch of one item would break BatchNorm; the epoch permutation varies what is left out.
        return self._loader(
            self.train_indices,
            sampler=EpochShuffleSampler(len(self.train_indices), self.seed),
            drop_last=len(self.train_indices) > self.batch_size,
        )

    def val_dataloader(self) -> DataLoader[torch.Tensor] | list[DataLoader[torch.Tensor]]:
        """Validation tiles in store order; no loader at all when the split has none."""
        return self._loader(self.val_indices) if len(self.val_indices) else []

    def predict_dataloader(self) -> DataLoader[torch.Tensor]:
        """Every tile, in store (index table) order."""
        return self._loader(None)
