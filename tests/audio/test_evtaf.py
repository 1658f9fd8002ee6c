"""EvTAF recordings (.cbin samples + .rec header) with evsonganaly .not.mat annotations, as in a bfsongrepo day."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from quagga.audio import iter_audio_tiles
from quagga.audio.io import AudioReadError, audio_info, find_recordings, read_block
from quagga.params import AudioParams, SpectrogramParams
from quagga.report.interactive import CLIP_CONTEXT_S, CLIP_RATE, audio_clip_uri
from quagga.tiles.store import Skipped, TileItem
from tests.audio.test_annotations import _notmat

RATE = 32000


def write_evtaf(folder: Path, stem: str, samples: np.ndarray, rate: int = RATE, promised: int | None = None) -> Path:
    """``stem.cbin`` (big-endian int16, channels interleaved) and the ``stem.rec`` EvTAF writes beside it."""
    samples = np.asarray(samples, dtype=np.int16).reshape(len(samples), -1)
    folder.mkdir(parents=True, exist_ok=True)
    samples.astype(">i2").tofile(folder / f"{stem}.cbin")
    n = len(samples) if promised is None else promised
    (folder / f"{stem}.rec").write_text(
        "File created: Fri, Mar 23, 2012, 08:08:12\n\nbegin rec =      0 ms\ntrig time =      0 ms\n"
        f"rec end = {1000 * n // rate:6d} ms\n\nADFREQ =  {rate}\nSamples =  {n}\nChans =  {samples.shape[1]}\n"
        "T Before =  2.000\nT After =  2.000\nThresholds = \n   0.0000\n\nFeedback information:\n\n"
    )
    return folder / f"{stem}.cbin"


def _song(seconds: float, calls: list[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    """int16 samples: faint noise plus a tone per call (onset_s, duration_s, Hz)."""
    rng = np.random.default_rng(seed)
    y = 30 * rng.standard_normal(int(seconds * RATE))
    for onset, duration, freq in calls:
        t = np.arange(int(duration * RATE)) / RATE
        y[int(onset * RATE) : int(onset * RATE) + len(t)] += 8000 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))
    return np.round(y).astype(np.int16)


def test_cbin_samples_and_rate_are_what_was_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stereo = rng.integers(-32768, 32767, size=(RATE // 2, 2), dtype=np.int16)
    path = write_evtaf(tmp_path, "gy6or6_baseline_230312_0808.138", stereo, rate=RATE)
    info = audio_info(path)
    assert (info.sample_rate, info.frames, info.channels, info.truncated) == (RATE, RATE // 2, 2, False)
    for channel in ("0", "1"):
        block = read_block(info, 0.0, info.duration_s, RATE, channel)
        np.testing.assert_array_equal(block.samples, stereo[:, int(channel)] / np.float32(32768))
    mixed = read_block(info, 0.25, 0.375, RATE)  # a block reads only its own span
    assert mixed.start_s == 0.25 and len(mixed.samples) == RATE // 8
    np.testing.assert_allclose(mixed.samples, stereo[RATE // 4 : 3 * RATE // 8].mean(axis=1) / 32768, atol=1e-7)
    assert find_recordings(tmp_path) == [path]


def test_cbin_without_rec_or_cut_short_is_named(tmp_path: Path) -> None:
    path = write_evtaf(tmp_path, "a", np.ones(1000, np.int16), promised=4000)
    assert audio_info(path).truncated
    path.with_suffix(".rec").unlink()
    with pytest.raises(AudioReadError, match=r"no a\.rec next to it"):
        audio_info(path)


def test_a_bfsongrepo_day_is_tiled_straight_from_its_folder(tmp_path: Path) -> None:
    """.cbin + .rec + .cbin.not.mat per song, as evsonganaly leaves a day's folder; one song lacks its .rec."""
    day = tmp_path / "gy6or6" / "032312"
    songs = {"a": [(0.2, 0.08, 2000), (0.5, 0.1, 4000)], "b": [(0.3, 0.05, 3000)], "c": [(0.1, 0.05, 3000)]}
    for stem, calls in songs.items():
        write_evtaf(day, stem, _song(1.0, calls))
        _notmat(day / f"{stem}.cbin.not.mat", "ab"[: len(calls)],
                [1000 * on for on, _, _ in calls], [1000 * (on + d) for on, d, _ in calls])
    (day / "c.rec").unlink()
    spectrogram = SpectrogramParams(sample_rate=RATE, n_fft=512, hop_length=64, fmin=400.0, fmax=10000.0,
                                    tile_duration_s=0.16, tile_size=32, n_mels=32)
    params = AudioParams(recordings=str(day), annotations=str(day), annotation_format="notmat",
                         label_column="label", spectrogram=spectrogram)
    out = list(iter_audio_tiles(params, tmp_path))
    tiles = [o for o in out if isinstance(o, TileItem)]
    assert [(t.item_id, t.meta["label"]) for t in tiles] == [
        ("a.cbin#0.2000-0.2800", "a"), ("a.cbin#0.5000-0.6000", "b"), ("b.cbin#0.3000-0.3500", "a")]
    assert tiles[0].tile.max() > 0.5  # the call is in the tile
    skipped = [o for o in out if isinstance(o, Skipped)]
    assert [(s.source, s.reason) for s in skipped] == [
        ("c.cbin", "no c.rec next to it: an EvTAF .cbin's sampling rate is in its .rec file")]
    uri = audio_clip_uri(day / "a.cbin", 0.5, 0.6)  # the report plays .cbin calls too
    clip, rate = sf.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert rate == CLIP_RATE and len(clip) / rate == pytest.approx(0.1 + 2 * CLIP_CONTEXT_S, abs=0.01)
