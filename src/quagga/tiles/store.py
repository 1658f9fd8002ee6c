"""The tile store: one format for every modality.

A store is a folder holding
  tiles.bin     raw ``[N, C, S, S]`` array (float16 or float32, values in [0, 1]; C = 1 grey, 3 colour), read
                memory-mapped
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
_FLOAT16_SMALLEST_NORMAL = np.float32(2.0**-14)  # below it float16 holds multiples of 2 ** -24 (subnormals)
_FEW_SUBNORMALS = 1024  # fewer than this in a tile: numpy's own conversion costs less than working them out


class StoreError(RuntimeError):
    """A store is missing, incomplete, or made with other parameters than expected."""


@dataclass(frozen=True)
class TileItem:
    """One tile and its index row (``meta``: source, label, onset/offset or box, features...)."""

    item_id: str
    tile: np.ndarray  # [S, S] (one channel) or [C, S, S], float in [0, 1]
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
    allow_empty: bool = False,
    meta: dict[str, Any] | None = None,
) -> int:
    """Stream ``items`` into a new store at ``out_dir``; return the number of tiles written.

    ``meta`` adds entries to ``store.json`` (e.g. the settings as requested and how ``auto`` ones were found).
    ``extra(folder, index)`` may add files derived from the index; it runs before the store is moved
    into place, so they appear together with it or not at all. Raises StoreError if no tile at all
    could be made (the skipped reasons are in the message), unless ``allow_empty`` (a shard of a store,
    whose other shards may hold the tiles: see ``merge_stores``).
    """
    out_dir = Path(out_dir)
    return _atomically(out_dir, lambda tmp: _write_into(tmp, out_dir, items, tile_params, modality, dtype, extra,
                                                        allow_empty, meta or {}))


def _atomically(out_dir: Path, fill: Callable[[Path], int]) -> int:
    """Run ``fill`` on a temporary sibling of ``out_dir`` and rename it into place when it returns."""
    for stale in out_dir.parent.glob(f"{out_dir.name}.tmp-*"):  # left by a killed run
        log.warning("removing %s, the partial store of an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        n = fill(tmp)
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
    allow_empty: bool = False,
    more_meta: dict[str, Any] | None = None,
) -> int:
    """Everything of a store into the folder ``tmp``; returns the number of tiles."""
    index_rows = _IndexWriter(tmp / INDEX_FILE)
    skipped: list[Skipped] = []
    seen = _SeenIds()
    shape: tuple[int, ...] | None = None  # (C, S, S) of the first tile; every tile must match it
    with open(tmp / TILES_FILE, "wb") as fh:
        for item in items:
            if isinstance(item, Skipped):
                log.warning("skipped %s [%s]: %s", item.source, item.item, item.reason)
                skipped.append(item)
                continue
            tile = np.asarray(item.tile)
            tile = tile[None] if tile.ndim == 2 else tile
            if tile.ndim != 3 or tile.shape[1] != tile.shape[2]:
                raise StoreError(f"tile {item.item_id}: expected a square [S, S] or [C, S, S] array, got "
                                 f"{np.shape(item.tile)}")
            if shape is None:
                shape = tile.shape
            elif tile.shape != shape:
                raise StoreError(f"tile {item.item_id}: shape {tile.shape} (channels, size, size) differs from "
                                 f"{shape}")
            if not np.all(np.isfinite(tile)) or tile.min() < 0 or tile.max() > 1:
                raise StoreError(f"tile {item.item_id}: values must be finite and in [0, 1]")
            seen.add(item.item_id)
            fh.write((to_float16(tile) if dtype == "float16" else np.ascontiguousarray(tile, dtype=dtype)).tobytes())
            index_rows.add({"item_id": item.item_id, "modality": modality, **item.meta})
    skipped_df = pd.DataFrame([vars(s) for s in skipped], columns=SKIPPED_COLUMNS)
    skipped_df.to_csv(tmp / SKIPPED_FILE, index=False)
    n = index_rows.close()
    if n == 0 and not allow_empty:
        raise _no_items(out_dir, [(s.source, s.reason) for s in skipped])
    meta = {
        "shape": [n, *(shape or (1, 0, 0))],
        "dtype": dtype,
        "modality": modality,
        "tile_params": tile_params,
        "n_skipped": len(skipped),
        "quagga_version": __version__,
        **(more_meta or {}),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    if extra is not None and n > 0:
        extra(tmp, pd.read_parquet(tmp / INDEX_FILE))
    log.info("%d tiles, %d inputs skipped", n, len(skipped))
    return n


def to_float16(tile: np.ndarray) -> np.ndarray:
    """``tile.astype(np.float16)`` of values >= 0, bit for bit, without numpy's slow path for many results
    below float16's normal range (about 0.1 us each: 6 ms for a colour tile of faint absorbance against 0.3
    ms; torch converts at full speed but is not imported to tile): where there are many, they are rounded
    here as the conversion does, x * 2 ** 24 to the nearest integer, ties to even, which is their bit
    pattern (1024 when it rounds up to the smallest normal, whose bits are 1024 too)."""
    small = np.flatnonzero((tile < _FLOAT16_SMALLEST_NORMAL) & (tile != 0))  # zeros convert at full speed
    if small.size < _FEW_SUBNORMALS:
        return tile.astype(np.float16)
    flat = np.ravel(tile)
    out = np.where(flat < _FLOAT16_SMALLEST_NORMAL, np.float32(0), flat).astype(np.float16)
    out.view(np.uint16)[small] = np.rint(flat[small] * np.float32(2.0**24)).astype(np.uint16)
    return out.reshape(np.shape(tile))


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

    def add_frame(self, frame: pd.DataFrame) -> None:
        """Rows that are already a table (a part of another index), written as a part of their own."""
        self._flush()
        self._write_part(frame)

    def _flush(self) -> None:
        if not self.rows:
            return
        self._write_part(pd.DataFrame(self.rows))
        self.rows = []

    def _write_part(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        if "label" in frame:
            frame["label"] = frame["label"].astype("string")
        self.parts_dir.mkdir(exist_ok=True)
        part = self.parts_dir / f"{len(self.parts):06d}.parquet"
        frame.to_parquet(part, index=False)
        self.parts.append(part)
        self.n += len(frame)

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


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``: the K-th (0-based) of N shards."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise StoreError(f"shard {text!r}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise StoreError(f"shard {text!r}: need 0 <= K < N")
    return k, n


def shard_bounds(n_items: int, shard: tuple[int, int], weights: np.ndarray | None = None) -> tuple[int, int]:
    """``[start, stop)`` of the k-th of n contiguous blocks of ``n_items`` (as numpy.array_split cuts them).

    With ``weights`` (the work of each item, e.g. its particles or calls) the blocks hold about equal work
    instead of equal counts: an item belongs to the block in which the work before it starts.
    """
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k} of {n}: need 0 <= k < n")
    if weights is not None:
        work = np.asarray(weights, dtype=np.int64)
        before = np.cumsum(work) - work
        owner = np.minimum(before * n // max(int(work.sum()), 1), n - 1)
        return int(np.searchsorted(owner, k, side="left")), int(np.searchsorted(owner, k, side="right"))
    size, extra = divmod(n_items, n)  # the first ``extra`` blocks hold one item more
    start = k * size + min(k, extra)
    return start, start + size + (k < extra)


class _SeenIds:
    """The item ids a writer has taken, to refuse one twice: 64-bit digests (blake2b), the older ones in a
    sorted numpy array (8 bytes each) and only the latest in a Python set (about 70 bytes each, a set of all
    of them was 8 MiB of a 122,432-call store's 224 MiB peak)."""

    def __init__(self) -> None:
        self.older = np.empty(0, dtype=np.uint64)
        self.latest: set[int] = set()

    def add(self, item_id: str) -> None:
        digest = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big")
        at = int(np.searchsorted(self.older, np.uint64(digest)))
        if digest in self.latest or (at < len(self.older) and int(self.older[at]) == digest):
            raise StoreError(f"duplicate item_id {item_id!r}")
        self.latest.add(digest)
        if len(self.latest) >= max(4096, len(self.older) // 8):  # merges: O(log n), the set at most 1/8 of all
            self.older = np.union1d(self.older, np.fromiter(self.latest, dtype=np.uint64, count=len(self.latest)))
            self.latest = set()


def _no_items(out_dir: str | Path, skipped: list[tuple[str, str]]) -> StoreError:
    """The error for a store with no tile: the first skipped inputs and why."""
    reasons = "; ".join(f"{source}: {reason}" for source, reason in skipped[:10]) or "no inputs found"
    return StoreError(f"no usable items for {out_dir}: {reasons}")


def merge_stores(out_dir: str | Path, shard_dirs: list[str | Path], allow_empty: bool = False,
                 consume: bool = False) -> int:
    """Concatenate shard stores, in the order given, into one new store at ``out_dir``.

    Tiles are appended, index rows streamed one row group at a time, ``skipped.csv`` and the other CSV
    files the shards hold (e.g. ``found_boxes.csv``) concatenated. Refuses (StoreError) shards made with
    other tile parameters, dtype, tile size or modality, and shards that hold no tile at all unless
    ``allow_empty`` (the merged store is itself one shard of a dataset, as ``write_store``'s flag).
    Written atomically like ``write_store``. ``consume``: the shards are scratch stores on the same file
    system, so the first one's tiles file is moved, not copied (bccd's first half: 240 MB).
    """
    if not shard_dirs:
        raise StoreError("merge: no shard stores given")
    metas = []
    for shard in map(Path, shard_dirs):
        meta_path = shard / META_FILE
        if not meta_path.is_file():
            raise StoreError(f"{shard} is not a tile store (no {META_FILE})")
        metas.append(json.loads(meta_path.read_text()))
    first = metas[0]
    sizes = {tuple(m["shape"][1:]) for m in metas if m["shape"][0] > 0}
    for shard, meta in zip(shard_dirs, metas, strict=True):
        for key in ("tile_params", "dtype", "modality"):
            if meta[key] != first[key]:
                raise StoreError(f"merge: {shard} has another {key} than {shard_dirs[0]}: "
                                 f"{meta[key]!r} vs {first[key]!r}")
    if len(sizes) > 1:
        raise StoreError(f"merge: the shards hold tiles of different sizes {sorted(sizes)}")
    n = sum(m["shape"][0] for m in metas)
    if n == 0 and not allow_empty:
        raise _no_items(out_dir, [(r.source, r.reason) for s in shard_dirs if (Path(s) / SKIPPED_FILE).is_file()
                                  for r in pd.read_csv(Path(s) / SKIPPED_FILE, dtype=str,
                                                       keep_default_na=False).itertuples()])
    out_dir = Path(out_dir)
    shards = [Path(s) for s in shard_dirs]

    def fill(tmp: Path) -> int:
        if consume:
            os.replace(shards[0] / TILES_FILE, tmp / TILES_FILE)
        with open(tmp / TILES_FILE, "ab" if consume else "wb") as fh:
            for shard in shards[1:] if consume else shards:
                with open(shard / TILES_FILE, "rb") as src:
                    shutil.copyfileobj(src, fh, 16 << 20)
        index_rows = _IndexWriter(tmp / INDEX_FILE)
        seen = _SeenIds()  # as one write_store refuses an item twice, so does the merge (across shards)
        for shard in shards:
            if (shard / INDEX_FILE).is_file():
                part = pq.ParquetFile(shard / INDEX_FILE)
                for group in range(part.num_row_groups):
                    frame = part.read_row_group(group).to_pandas()
                    for item_id in frame["item_id"].astype(str):
                        seen.add(item_id)
                    index_rows.add_frame(frame)
        if index_rows.close() != n:
            raise StoreError(f"merge: the shards' indexes do not hold {n} rows as their {META_FILE} say")
        for name in sorted({p.name for shard in shards for p in shard.glob("*.csv")}):
            _concat_csv([shard / name for shard in shards if (shard / name).is_file()], tmp / name)
        size = sorted(sizes)[0] if sizes else first["shape"][1:]  # every shard empty: an empty shard's shape
        meta = {**first, "shape": [n, *size], "n_skipped": sum(m["n_skipped"] for m in metas)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return n

    return _atomically(out_dir, fill)


def _concat_csv(parts: list[Path], out: Path) -> None:
    """CSV files with one header line each -> one file with the first header."""
    with open(out, "wb") as fh:
        for i, path in enumerate(parts):
            with open(path, "rb") as src:
                header = src.readline()
                if i == 0:
                    fh.write(header)
                shutil.copyfileobj(src, fh, 16 << 20)


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
        """``[N, C, S, S]`` read-only memory map (opened lazily, so each worker opens its own)."""
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
    def channels(self) -> int:
        """Channels per tile: 1 (grey, spectrogram) or 3 (colour)."""
        return int(self.shape[1])

    @property
    def skipped(self) -> pd.DataFrame:
        return pd.read_csv(self.path / SKIPPED_FILE, dtype=str, keep_default_na=False)

    def __len__(self) -> int:
        return int(self.shape[0])

    def require_params(self, expected: dict[str, Any], requested: bool = False) -> None:
        """Refuse a store whose tiles were made with other parameters than ``expected``.

        ``requested``: compare with the parameters as the config gave them (``auto`` included), not as
        resolved, so a config whose ``auto`` values are unchanged accepts the store it made.
        """
        made = self.meta.get("requested_tile_params", self.tile_params) if requested else self.tile_params
        if made != expected:
            diff = {k: (made.get(k), expected.get(k))
                    for k in set(made) | set(expected) if made.get(k) != expected.get(k)}
            what = "requested" if requested else "made"
            raise StoreError(f"{self.path}: tiles were {what} with other parameters (store, expected): {diff}")

    def __getstate__(self) -> dict[str, Any]:
        # Dataloader workers re-open the memory map instead of pickling it.
        state = dict(self.__dict__)
        state["_tiles"] = None
        return state
