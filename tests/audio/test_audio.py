"""Audio front end: reading, annotation tables, call tiles, and bad input that is skipped, not fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from quagga.audio import iter_audio_tiles
from quagga.audio.annotations import AnnotationError, read_annotations
from quagga.audio.io import AudioReadError, read_audio
from quagga.audio.spectrogram import background_profile, call_tile, mel_db
from quagga.params import AudioParams, SpectrogramParams
from quagga.tiles.store import Skipped, TileItem

SR = 16000
SPEC = SpectrogramParams(sample_rate=SR, n_fft=512, hop_length=128, fmin=100.0, fmax=7000.0,
                         tile_duration_s=1.0, tile_size=64, n_mels=64)


def _tone(freq: float, dur: float, amp: float) -> np.ndarray:
    t = np.arange(int(dur * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))).astype(np.float32)


def _recording(calls: list[tuple[float, float, float, float]], length_s: float = 4.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (0.003 * rng.standard_normal(int(length_s * SR))).astype(np.float32)
    for onset, dur, freq, amp in calls:
        i = int(onset * SR)
        y[i : i + int(dur * SR)] += _tone(freq, dur, amp)
    return y


def _raven(path: Path, rows: list[tuple[str, float, float, str]]) -> None:
    header = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tBegin File\tFile Offset (s)\tcall_type\n"
    lines = [f"{i}\tSpectrogram 1\t1\t{on + 100}\t{off + 100}\t{f}\t{on}\t{lab}\n"
             for i, (f, on, off, lab) in enumerate(rows, 1)]
    path.write_text(header + "".join(lines))


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """Two good recordings and one of every kind of bad input."""
    sf.write(tmp_path / "a.wav", _recording([(0.5, 0.3, 1000, 0.5), (2.0, 0.6, 3000, 0.05)]), SR,
             subtype="PCM_16")
    stereo = np.stack([_recording([(1.0, 0.4, 2000, 0.3)]), np.zeros(4 * SR, np.float32)], axis=1)
    sf.write(tmp_path / "b.flac", stereo, SR)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    bad = _recording([(0.5, 0.2, 1000, 0.5)], length_s=1.0)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    _raven(tmp_path / "table.txt", [
        ("a.wav", 0.5, 0.8, "low"),
        ("a.wav", 2.0, 2.6, "high"),
        ("b.flac", 1.0, 1.4, "mid"),
        ("a.wav", 3.0, 2.9, "low"),       # offset <= onset
        ("a.wav", 3.5, 9.0, "low"),       # beyond the end of the file
        ("missing.wav", 0.1, 0.2, "low"),
        ("corrupt.wav", 0.1, 0.2, "low"),
        ("silent.wav", 0.1, 0.2, "low"),
        ("nan.wav", 0.5, 0.7, "low"),
    ])
    return tmp_path


def _params(**kw: object) -> AudioParams:
    return AudioParams(recordings=".", annotations="table.txt", annotation_format="raven",
                       label_column="call_type", spectrogram=SPEC, **kw)  # type: ignore[arg-type]


def test_good_calls_become_tiles_and_bad_input_is_skipped_with_reasons(dataset: Path) -> None:
    out = list(iter_audio_tiles(_params(), dataset))
    tiles = [o for o in out if isinstance(o, TileItem)]
    skipped = {o.item: o for o in out if isinstance(o, Skipped)}
    assert [t.meta["label"] for t in tiles] == ["low", "high", "mid"]
    for t in tiles:
        assert t.tile.shape == (64, 64) and t.tile.dtype == np.float32
        assert t.tile.min() >= 0.0 and t.tile.max() <= 1.0
    assert tiles[0].item_id == "a.wav#0.5000-0.8000"
    reasons = {k: v.reason for k, v in skipped.items()}
    assert "offset 2.9 s <= onset 3 s" in reasons["row 5"]
    assert "outside the recording" in reasons["row 6"]
    assert "recording not found" in reasons["row 7"] and skipped["row 7"].source == "missing.wav"
    assert "cannot read audio" in reasons["row 8"]
    assert "silent" in reasons["row 9"]
    assert "NaN or Inf" in reasons["row 10"]
    assert len(out) == 9


def test_tile_keeps_duration_pitch_and_loudness(dataset: Path) -> None:
    tiles = [o for o in iter_audio_tiles(_params(), dataset) if isinstance(o, TileItem)]
    low, high = tiles[0].tile, tiles[1].tile
    # duration: a 0.3 s call covers 0.3 of a 1 s tile; the rest is background padding
    active = (low - low[:, :3].mean(axis=1, keepdims=True)).max(axis=0) > 0.1
    assert abs(active.sum() / 64 - 0.3) < 0.08
    # pitch: the 3 kHz call's energy sits in higher mel rows than the 1 kHz call's
    assert np.argmax(high.sum(axis=1)) > np.argmax(low.sum(axis=1)) + 5
    # loudness survives the fixed dB bounds: the 0.5-amplitude call is brighter at its peak
    assert low.max() > high.max()


def test_padding_is_background_not_zero() -> None:
    y = _recording([(1.0, 0.2, 1500, 0.5)])
    spec = mel_db(y, SPEC)
    bg = background_profile(spec)
    tile = call_tile(spec, bg, 1.0, 1.2, SPEC)
    expected = np.clip((bg - SPEC.db_min) / (SPEC.db_max - SPEC.db_min), 0, 1)
    np.testing.assert_allclose(tile[:, 0], np.interp(np.linspace(0, 63, 64), np.arange(64), expected), atol=1e-5)
    assert tile[:, 0].mean() > 0.05


def test_full_scale_sine_is_near_zero_db() -> None:
    t = np.arange(SR) / SR
    spec = mel_db(np.sin(2 * np.pi * 1000 * t).astype(np.float32), SPEC)
    assert -6 < spec[:, 10:-10].max() < 1


def test_read_audio_mixes_selects_and_resamples(tmp_path: Path) -> None:
    stereo = np.stack([np.full(8000, 0.5, np.float32), np.full(8000, -0.1, np.float32)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav", 8000, "mix")[:10], 0.2, atol=1e-6)
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav", 8000, "1")[:10], -0.1, atol=1e-6)
    assert len(read_audio(tmp_path / "s.wav", 16000, "0")) == 16000
    with pytest.raises(AudioReadError, match="channel 2 requested"):
        read_audio(tmp_path / "s.wav", 8000, "2")


def test_csv_annotations_and_table_errors(tmp_path: Path) -> None:
    (tmp_path / "ann.csv").write_text("wav_file,onset_s,offset_s,label\nWave/0.wav,1.07,1.154,0\n")
    table = read_annotations(tmp_path / "ann.csv", "csv", "label")
    assert table.iloc[0].to_dict() == {"file": "Wave/0.wav", "onset_s": 1.07, "offset_s": 1.154, "label": "0",
                                       "row": 2}
    with pytest.raises(AnnotationError, match="label column 'call_type' not found"):
        read_annotations(tmp_path / "ann.csv", "csv", "call_type")
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations(tmp_path / "nope.csv", "csv", "label")
    assert isinstance(table, pd.DataFrame)
