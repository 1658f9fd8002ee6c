"""Audio front end: recordings + annotation table -> one spectrogram tile per call."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from quagga.audio.annotations import read_annotations
from quagga.audio.io import AudioReadError, read_audio
from quagga.audio.spectrogram import background_profile, call_tile, mel_db
from quagga.params import AudioParams
from quagga.tiles.store import Skipped, TileItem

log = logging.getLogger(__name__)

__all__ = ["iter_audio_tiles"]


def iter_audio_tiles(params: AudioParams, base_dir: Path) -> Iterator[TileItem | Skipped]:
    """Yield a tile per annotated call; per-file and per-row problems become Skipped items.

    Relative paths in ``params`` are resolved against ``base_dir``; file names in the annotation
    table are resolved against the ``recordings`` folder.
    """
    recordings = (base_dir / params.recordings).resolve()
    table = read_annotations(base_dir / params.annotations, params.annotation_format, params.label_column)
    p = params.spectrogram
    for file_name, rows in table.groupby("file", sort=False):
        path = recordings / str(file_name)
        source = str(file_name)  # relative to the recordings folder: stable item ids across machines
        if not path.is_file():
            yield from _skip_rows(source, rows, f"recording not found: {path}")
            continue
        try:
            samples = read_audio(path, p.sample_rate, params.channel)
        except AudioReadError as exc:
            yield from _skip_rows(source, rows, str(exc))
            continue
        duration = len(samples) / p.sample_rate
        spec = mel_db(samples, p)
        background = background_profile(spec)
        for row in rows.itertuples(index=False):
            item = f"row {row.row}"
            if not (np.isfinite(row.onset_s) and np.isfinite(row.offset_s)):
                yield Skipped(source, item, "onset or offset is not a number")
            elif row.offset_s <= row.onset_s:
                yield Skipped(source, item, f"offset {row.offset_s:g} s <= onset {row.onset_s:g} s")
            elif row.onset_s < 0 or row.offset_s > duration + 1e-6:
                reason = f"call {row.onset_s:g}-{row.offset_s:g} s outside the recording (0-{duration:.3f} s)"
                yield Skipped(source, item, reason)
            else:
                tile = call_tile(spec, background, row.onset_s, row.offset_s, p)
                yield TileItem(
                    item_id=f"{source}#{row.onset_s:.4f}-{row.offset_s:.4f}",
                    tile=tile,
                    meta={
                        "source": source,
                        "label": None if pd.isna(row.label) else str(row.label),
                        "onset_s": float(row.onset_s),
                        "offset_s": float(row.offset_s),
                        "duration_s": float(row.offset_s - row.onset_s),
                        "annotation_row": int(row.row),
                    },
                )


def _skip_rows(source: str, rows: pd.DataFrame, reason: str) -> Iterator[Skipped]:
    log.warning("%s: %s (%d annotated calls skipped)", source, reason, len(rows))
    for row in rows.itertuples(index=False):
        yield Skipped(source, f"row {row.row}", reason)

