"""Audio front end: recordings (+ annotations) -> one spectrogram tile per call.

Calls come from the annotations (``segments: annotations``) or are found by energy segmentation
(``segments: energy``; annotated labels, when given, are attached to the found calls they overlap).
Recordings are read in blocks of ``block_s`` seconds, so an hours-long file never sits in memory whole.
Every problem with one file, block or call becomes a Skipped item and the rest goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from quagga.audio.annotations import read_annotations
from quagga.audio.io import (
    AudioBlock,
    AudioInfo,
    AudioReadError,
    audio_info,
    find_recordings,
    read_block,
    recording_path,
)
from quagga.audio.segment import find_calls
from quagga.audio.spectrogram import BlockSpectrogram, call_tile
from quagga.params import AudioParams, to_dict
from quagga.settings import unresolved
from quagga.tiles.store import Skipped, TileItem, shard_bounds

log = logging.getLogger(__name__)

__all__ = ["iter_audio_tiles"]

BLOCK_PAD_S = 0.1  # context read around a block: resampling and STFT edges fall outside the calls


@dataclass(frozen=True)
class _Call:
    onset_s: float
    offset_s: float
    label: str | None
    row: str  # where the call came from: an annotation row, or "segment N"


def iter_audio_tiles(
    params: AudioParams, base_dir: Path, shard: tuple[int, int] = (0, 1)
) -> Iterator[TileItem | Skipped]:
    """Yield a tile per call; per-file, per-block and per-call problems become Skipped items.

    Relative paths in ``params`` are resolved against ``base_dir``; file names in the annotations are
    resolved against the ``recordings`` folder. ``shard=(k, n)`` tiles only the k-th of n contiguous
    blocks of the recordings (their usual order), and only shard 0 reports the table-level problems, so
    shards 0..n-1 together yield exactly the items of the whole run, in its order. ``auto`` settings
    left in ``params`` are found from the recordings first (``quagga tiles`` passes them resolved, so
    every shard uses the same values).
    """
    if unresolved(to_dict(params)):
        from quagga.audio.settings import resolve_audio_settings

        params, _ = resolve_audio_settings(params, base_dir)
    recordings = (base_dir / params.recordings).resolve()
    first = shard[0] == 0
    table = None
    if params.annotations:
        table = read_annotations(base_dir / params.annotations, params.annotation_format, params.label_column)
        for annotation_file, reason in table.attrs.get("unreadable", []) if first else []:
            yield Skipped(str(annotation_file), "annotation file", reason)
    # one recording's rows at a time: a table of millions of calls is not split into thousands of frames
    if params.segments == "annotations":
        assert table is not None, "segments: annotations needs an annotation table (checked by the config)"
        grouped = table.groupby("file", sort=False)
        start, stop = shard_bounds(grouped.ngroups, shard, grouped.size().to_numpy())  # blocks of about equal calls
        groups: Iterator[tuple[str, pd.DataFrame]] = (
            (str(f), rows) for f, rows in islice(grouped, start, stop))
    else:
        root = recordings if recordings.is_dir() else recordings.parent
        found = [p.relative_to(root).as_posix() for p in find_recordings(recordings)]
        positions = {} if table is None else {
            str(f): rows for f, rows in table.groupby("file", sort=False).indices.items()}
        if not found and first:
            yield Skipped(str(recordings), "recordings", "no audio files found")
        for missing in sorted(set(positions) - set(found)) if first else []:
            yield from _skip_rows(missing, table.iloc[positions[missing]], f"recording not found under {recordings}")
        start, stop = shard_bounds(len(found), shard)
        groups = ((f, table.iloc[positions[f]] if f in positions else _empty_rows()) for f in found[start:stop])
    for source, rows in groups:
        yield from _tiles_of_recording(recording_path(recordings, source), source, rows, params)


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({"onset_s": [], "offset_s": [], "label": [], "row": []})


def _tiles_of_recording(
    path: Path, source: str, rows: pd.DataFrame, params: AudioParams
) -> Iterator[TileItem | Skipped]:
    if not path.is_file():
        yield from _skip_rows(source, rows, f"recording not found: {path}")
        return
    try:
        info = audio_info(path)
    except AudioReadError as exc:
        yield from _skip_rows(source, rows, str(exc))
        return
    if params.channel != "mix" and int(params.channel) >= info.channels:
        reason = f"channel {params.channel} requested but the file has {info.channels} channel(s)"
        yield from _skip_rows(source, rows, reason)
        return
    if params.segments == "annotations":
        calls, problems = _annotated_calls(rows, info)
        yield from (Skipped(source, item, reason) for item, reason in problems)
        blocks = _blocks_of(calls, info, params.block_s)
    else:
        blocks = _energy_blocks(info, params.block_s, params.segment.max_duration_s)
    n_yielded = 0
    for start_s, stop_s, block_calls in blocks:
        block_name = f"block {start_s:.0f}-{stop_s:.0f} s"
        try:
            block = read_block(info, start_s - BLOCK_PAD_S, stop_s + BLOCK_PAD_S, params.spectrogram.sample_rate,
                               params.channel)
        except AudioReadError as exc:
            problem = str(exc)
        else:
            problem = f"audio is silent (all samples zero) in {start_s:.1f}-{stop_s:.1f} s" if block.is_silent else ""
        if problem:
            for item in [c.row for c in block_calls] if block_calls is not None else [block_name]:
                n_yielded += 1
                yield Skipped(source, item, problem)
            continue
        if block_calls is None:  # energy segmentation of this block
            found = list(_segment_block(block, start_s, stop_s, rows, params, source))
            for item in found:
                if isinstance(item, Skipped):
                    n_yielded += 1
                    yield item
            block_calls = [c for c in found if isinstance(c, _Call)]
        for item in _tiles_of_block(block, block_calls, source, params):
            n_yielded += 1
            yield item
    if params.segments == "energy" and n_yielded == 0:
        yield Skipped(source, "recording", "no calls found by energy segmentation")


def _annotated_calls(rows: pd.DataFrame, info: AudioInfo) -> tuple[list[_Call], list[tuple[str, str]]]:
    """The usable annotated calls of one recording, and (row, reason) for the unusable ones."""
    calls, problems = [], []
    duration = info.duration_s
    truncated = "; the file is truncated, its header promises more" if info.truncated else ""
    first_row: dict[str, str] = {}  # a call's id -> the row that made it, to name duplicates
    for row in rows.itertuples(index=False):
        key = f"{row.onset_s:.4f}-{row.offset_s:.4f}"  # as in the item id
        if key in first_row:
            problems.append((row.row, f"same call as {first_row[key]} (duplicated row)"))
        elif not (np.isfinite(row.onset_s) and np.isfinite(row.offset_s)):
            problems.append((row.row, "onset or offset is not a number"))
        elif row.offset_s <= row.onset_s:
            problems.append((row.row, f"offset {row.offset_s:g} s <= onset {row.onset_s:g} s"))
        elif row.onset_s < 0 or row.offset_s > duration + 1e-6:
            problems.append((row.row, f"call {row.onset_s:g}-{row.offset_s:g} s outside the recording "
                                      f"(0-{duration:.3f} s{truncated})"))
        else:
            label = None if pd.isna(row.label) else str(row.label)
            calls.append(_Call(float(row.onset_s), float(row.offset_s), label, row.row))
            first_row[key] = row.row
    return calls, problems


def _blocks_of(calls: list[_Call], info: AudioInfo, block_s: float) -> Iterator[tuple[float, float, list[_Call]]]:
    """Group calls by the block their onset falls in; a block stretches to cover its last call."""
    by_block: dict[int, list[_Call]] = {}
    for call in calls:
        by_block.setdefault(int(call.onset_s // block_s), []).append(call)
    for k in sorted(by_block):
        group = by_block[k]
        stop = max((k + 1) * block_s, max(c.offset_s for c in group))
        yield k * block_s, min(stop, info.duration_s), group


def _energy_blocks(info: AudioInfo, block_s: float, max_call_s: float) -> Iterator[tuple[float, float, None]]:
    """Consecutive blocks to segment; each is read ``max_call_s`` longer so a call crossing its end is whole."""
    n = max(int(np.ceil(info.duration_s / block_s)), 1)
    for k in range(n):
        yield k * block_s, min((k + 1) * block_s + max_call_s, info.duration_s), None


def _segment_block(
    block: AudioBlock, start_s: float, stop_s: float, rows: pd.DataFrame, params: AudioParams, source: str
) -> Iterator[_Call | Skipped]:
    """Calls found in a block whose onsets fall in [start_s, start_s + block_s), labelled by overlap."""
    found = find_calls(block.samples, block.sample_rate, params.segment)
    end = start_s + params.block_s
    for onset, offset, reason in found.rejected:
        onset, offset = onset + block.start_s, offset + block.start_s
        if start_s <= onset < end:
            yield Skipped(source, f"segment {onset:.3f}-{offset:.3f} s", reason)
    for onset, offset in found.calls:
        onset, offset = onset + block.start_s, offset + block.start_s
        if start_s <= onset < end and offset <= stop_s + 1e-6:
            label, row = _label_by_overlap(onset, offset, rows)
            yield _Call(onset, offset, label, row or f"segment {onset:.3f}-{offset:.3f} s")


def _label_by_overlap(onset: float, offset: float, rows: pd.DataFrame) -> tuple[str | None, str | None]:
    """Label of the annotated call that overlaps a found call most, if it covers half of either."""
    if rows.empty:
        return None, None
    overlap = (np.minimum(offset, rows["offset_s"]) - np.maximum(onset, rows["onset_s"])).to_numpy(float)
    shorter = np.minimum(offset - onset, (rows["offset_s"] - rows["onset_s"]).to_numpy(float))
    best = int(np.nanargmax(np.where(np.isfinite(overlap), overlap, -np.inf)))
    if not overlap[best] >= 0.5 * shorter[best]:
        return None, None
    label = rows["label"].iloc[best]
    return (None if pd.isna(label) else str(label)), str(rows["row"].iloc[best])


def _tiles_of_block(
    block: AudioBlock, calls: list[_Call], source: str, params: AudioParams
) -> Iterator[TileItem | Skipped]:
    p = params.spectrogram
    spec = BlockSpectrogram(block.samples, p)
    background = spec.background()
    for call in calls:
        bad = block.fraction(block.nonfinite, call.onset_s, call.offset_s)
        clipped = block.fraction(block.clipped, call.onset_s, call.offset_s)
        if bad > 0:
            yield Skipped(source, call.row, f"{bad:.1%} of the call's samples are NaN or Inf")
            continue
        if clipped > params.max_clipped_fraction:
            yield Skipped(source, call.row, f"clipped: {clipped:.1%} of the call's samples at full scale "
                                            f"(max_clipped_fraction {params.max_clipped_fraction:g})")
            continue
        tile = call_tile(spec, background, call.onset_s - block.start_s, call.offset_s - block.start_s, p)
        yield TileItem(
            item_id=f"{source}#{call.onset_s:.4f}-{call.offset_s:.4f}",
            tile=tile,
            meta={
                "source": source,
                "label": call.label,
                "onset_s": call.onset_s,
                "offset_s": call.offset_s,
                "duration_s": call.offset_s - call.onset_s,
                "annotation_row": call.row,
                "clipped_fraction": clipped,
            },
        )


def _skip_rows(source: str, rows: pd.DataFrame, reason: str) -> Iterator[Skipped]:
    log.warning("%s: %s (%d annotated calls skipped)", source, reason, len(rows))
    if rows.empty:
        yield Skipped(source, "recording", reason)
    for row in rows.itertuples(index=False):
        yield Skipped(source, row.row, reason)
