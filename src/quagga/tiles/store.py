"""The tile store: one format for every modality.

A store is a folder holding
  tiles.bin     raw ``[N, 1, S, S]`` array (float16 or float32, values in [0, 1]), read memory-mapped
  index.parquet one row per tile, in tile order, keyed by a stable ``item_id``
  store.json    shape, dtype, the parameters that made the tiles, versions
  skipped.csv   inputs that could not be tiled: source, item, reason
The folder is written under a temporary name and renamed when complete, so a half-written store is
never mistaken for a finished one. Tiles are streamed to disk, so memory does not grow with N.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quagga import __version__

log = logging.getLogger(__name__)

TILES_FILE = "tiles.bin"
INDEX_FILE = "index.parquet"
META_FILE = "store.json"
SKIPPED_FILE = "skipped.csv"
SKIPPED_COLUMNS = ["source", "item", "reason"]


class StoreError(RuntimeError):
    """A store is missing, incomplete, or made with other parameters than expected."""


@dataclass(frozen=True)
class TileItem:
    """One tile and its index row (``meta``: source, label, onset/offset or box, features...)."""

    item_id: str
    tile: np.ndarray  # [S, S] float in [0, 1]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """An input that could not become a tile, and why (shown in the report)."""

    source: str
    item: str
    reason: str


def write_store(
    out_dir: str | Path,
    items: Iterable[TileItem | Skipped],
    tile_params: dict[str, Any],
    modality: str,
    dtype: str = "float16",
    extra: Callable[[Path, pd.DataFrame], None] | None = None,
) -> int:
    """Stream ``items`` into a new store at ``out_dir``; return the number of tiles written.

    ``extra(folder, index)`` may add files derived from the index; it runs before the store is moved
    into place, so they appear together with it or not at all. Raises StoreError if no tile at all
    could be made (the skipped reasons are in the message).
    """
    out_dir = Path(out_dir)
    for stale in out_dir.parent.glob(f"{out_dir.name}.tmp-*"):  # left by a killed run
        log.warning("removing %s, the partial store of an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        n = _write_into(tmp, out_dir, items, tile_params, modality, dtype, extra)
    except BaseException:  # a full disk, a bad tile, Ctrl-C: no partial store is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("wrote %d tiles to %s", n, out_dir)
    return n


def _write_into(
    tmp: Path,
    out_dir: Path,
    items: Iterable[TileItem | Skipped],
    tile_params: dict[str, Any],
    modality: str,
    dtype: str,
    extra: Callable[[Path, pd.DataFrame], None] | None,
) -> int:
    """Everything of a store into the folder ``tmp``; returns the number of tiles."""
    index_rows = _IndexWriter(tmp / INDEX_FILE)
    skipped: list[Skipped] = []
    seen: set[int] = set()  # 64-bit digests of the item ids: a third of the memory of the ids themselves
    size: int | None = None
    with open(tmp / TILES_FILE, "wb") as fh:
        for item in items:
            if isinstance(item, Skipped):
                log.warning("skipped %s [%s]: %s", item.source, item.item, item.reason)
                skipped.append(item)
                continue
            tile = np.asarray(item.tile)
            if tile.ndim != 2 or tile.shape[0] != tile.shape[1]:
                raise StoreError(f"tile {item.item_id}: expected a square 2-D array, got {tile.shape}")
            if size is None:
                size = tile.shape[0]
            elif tile.shape[0] != size:
                raise StoreError(f"tile {item.item_id}: size {tile.shape[0]} differs from {size}")
            if not np.all(np.isfinite(tile)) or tile.min() < 0 or tile.max() > 1:
                raise StoreError(f"tile {item.item_id}: values must be finite and in [0, 1]")
            digest = int.from_bytes(hashlib.blake2b(item.item_id.encode(), digest_size=8).digest(), "big")
            if digest in seen:
                raise StoreError(f"duplicate item_id {item.item_id!r}")
            seen.add(digest)
            fh.write(np.ascontiguousarray(tile, dtype=dtype).tobytes())
            index_rows.add({"item_id": item.item_id, "modality": modality, **item.meta})
    skipped_df = pd.DataFrame([vars(s) for s in skipped], columns=SKIPPED_COLUMNS)
    skipped_df.to_csv(tmp / SKIPPED_FILE, index=False)
    n = index_rows.close()
    if n == 0:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:10]) or "no inputs found"
        raise StoreError(f"no usable items for {out_dir}: {reasons}")
    meta = {
        "shape": [n, 1, size, size],
        "dtype": dtype,
        "modality": modality,
        "tile_params": tile_params,
        "n_skipped": len(skipped),
        "quagga_version": __version__,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    if extra is not None:
        extra(tmp, pd.read_parquet(tmp / INDEX_FILE))
    log.info("%d tiles, %d inputs skipped", n, len(skipped))
    return n


class _IndexWriter:
    """Index rows to one parquet file, holding at most ``chunk`` rows in memory (millions of tiles fit).

    Each chunk is written as its own part first; the parts are joined at the end under one schema that
    every part's types promote to (an integer column that later holds a NaN becomes float, a column with
    no value in the first chunk takes the type of a later one), one part at a time.
    """

    def __init__(self, path: Path, chunk: int = 4096):
        self.path, self.chunk = path, chunk
        self.parts_dir = path.with_name(path.name + ".parts")
        self.rows: list[dict[str, Any]] = []
        self.parts: list[Path] = []
        self.n = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        frame = pd.DataFrame(self.rows)
        if "label" in frame:
            frame["label"] = frame["label"].astype("string")
        self.parts_dir.mkdir(exist_ok=True)
        part = self.parts_dir / f"{len(self.parts):06d}.parquet"
        frame.to_parquet(part, index=False)
        self.parts.append(part)
        self.n += len(frame)
        self.rows = []

    def close(self) -> int:
        """Write the index file (nothing when there are no rows); the number of rows."""
        self._flush()
        if self.parts:
            schemas = [pq.read_schema(p) for p in self.parts]
            schema = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
            if schema.equals(schemas[0], check_metadata=False):
                schema = schemas[0]  # keep pandas' metadata (e.g. the label column's string dtype)
            with pq.ParquetWriter(self.path, schema) as writer:
                for part in self.parts:
                    writer.write_table(_conform(pq.read_table(part), schema))
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.n


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly the columns of ``schema``, cast to its types (absent columns are null)."""
    columns = [
        table.column(field.name).cast(field.type) if field.name in table.column_names
        else pa.nulls(len(table), field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class TileStore:
    """Read side of a store: memory-mapped tiles, the index table, parameters, skipped inputs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise StoreError(f"{self.path} is not a tile store (no {META_FILE})")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.shape = tuple(self.meta["shape"])
        self.dtype = np.dtype(self.meta["dtype"])
        self._tiles: np.memmap | None = None
        self._index: pd.DataFrame | None = None

    @property
    def tiles(self) -> np.memmap:
        """``[N, 1, S, S]`` read-only memory map (opened lazily, so each worker opens its own)."""
        if self._tiles is None:
            self._tiles = np.memmap(self.path / TILES_FILE, dtype=self.dtype, mode="r", shape=self.shape)
        return self._tiles

    @property
    def index(self) -> pd.DataFrame:
        if self._index is None:
            self._index = pd.read_parquet(self.path / INDEX_FILE)
        return self._index

    @property
    def tile_params(self) -> dict[str, Any]:
        return self.meta["tile_params"]

    @property
    def tile_size(self) -> int:
        return int(self.shape[-1])

    @property
    def skipped(self) -> pd.DataFrame:
        return pd.read_csv(self.path / SKIPPED_FILE, dtype=str, keep_default_na=False)

    def __len__(self) -> int:
        return int(self.shape[0])

    def require_params(self, expected: dict[str, Any]) -> None:
        """Refuse a store whose tiles were made with other parameters than ``expected``."""
        if self.tile_params != expected:
            diff = {
                k: (self.tile_params.get(k), expected.get(k))
                for k in set(self.tile_params) | set(expected)
                if self.tile_params.get(k) != expected.get(k)
            }
            raise StoreError(f"{self.path}: tiles were made with other parameters (store, expected): {diff}")

    def __getstate__(self) -> dict[str, Any]:
        # Dataloader workers re-open the memory map instead of pickling it.
        state = dict(self.__dict__)
        state["_tiles"] = None
        return state
