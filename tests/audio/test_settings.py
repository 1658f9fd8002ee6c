"""`auto` audio settings: found from recordings with known durations, band and levels; explicit values win;
too few calls, silence, a band with no energy and an outlier call fall back or are ignored, never crash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import signal

from quagga.audio import iter_audio_tiles
from quagga.audio.settings import resolve_audio_settings
from quagga.audio.spectrogram import BlockSpectrogram
from quagga.params import AudioParams, SpectrogramParams
from quagga.settings import SettingsError, unresolved
from quagga.tiles.store import TileItem

SR = 16000
BAND = (2000.0, 4000.0)
NOISE_AMP = 0.001
CALL_AMP = 0.2


def _band_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    sos = signal.butter(8, BAND, btype="bandpass", fs=SR, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n))
    return (CALL_AMP * x / np.std(x)).astype(np.float32)


def write_recordings(folder: Path, durations: list[float], n_files: int = 4, seed: int = 0,
                     silent: bool = False) -> pd.DataFrame:
    """``n_files`` recordings of white noise with band-limited calls of the given durations, and their table."""
    rng = np.random.default_rng(seed)
    per_file = np.array_split(np.asarray(durations), n_files)
    rows = []
    for k, chunk in enumerate(per_file):
        length = float(np.sum(chunk) + 0.3 * len(chunk) + 0.5)
        y = np.zeros(int(length * SR), np.float32) if silent else \
            (NOISE_AMP * rng.standard_normal(int(length * SR))).astype(np.float32)
        t = 0.3
        for d in chunk:
            i, n = int(t * SR), int(d * SR)
            if not silent:
                y[i:i + n] += _band_noise(n, rng) * np.hanning(n).astype(np.float32) ** 0.1
            rows.append((f"rec{k}.wav", t, t + d, "call"))
            t += d + 0.3
        sf.write(folder / f"rec{k}.wav", y, SR, subtype="FLOAT")
    table = pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "label"])
    table.to_csv(folder / "calls.csv", index=False)
    return table


def _params(**spectrogram: object) -> AudioParams:
    return AudioParams(recordings=".", annotations="calls.csv", annotation_format="csv", label_column="label",
                       spectrogram=SpectrogramParams(tile_size=64, **spectrogram))  # type: ignore[arg-type]


def _noise_floor_db() -> float:
    """Median dB of white noise at NOISE_AMP per FFT bin, as the tiles measure it (16 ms window)."""
    p = SpectrogramParams(sample_rate=SR, n_fft=256, hop_length=64, fmin=0.0, fmax=SR / 2, scale="linear",
                          tile_duration_s=1.0, db_min=-100.0, db_max=0.0)
    noise = NOISE_AMP * np.random.default_rng(1).standard_normal(SR * 5)
    return float(np.median(BlockSpectrogram(noise.astype(np.float32), p).frames_db(np.arange(100, 1000))))


@pytest.fixture()
def calls(tmp_path: Path) -> pd.DataFrame:
    durations = list(np.random.default_rng(3).uniform(0.04, 0.12, 100))
    return write_recordings(tmp_path, durations)


def test_settings_are_found_from_known_calls(tmp_path: Path, calls: pd.DataFrame) -> None:
    resolved, choices = resolve_audio_settings(_params(), tmp_path)
    spec = resolved.spectrogram
    durations = (calls["offset_s"] - calls["onset_s"]).to_numpy()
    assert spec.sample_rate == SR and choices.records["spectrogram.sample_rate"]["source"] == "data"
    assert spec.tile_duration_s == pytest.approx(1.1 * np.percentile(durations, 99), rel=0.01)
    # the band holds the calls' pass band and the filter skirts where the loud calls still stand 6 dB above the noise
    assert 1000 <= spec.fmin <= BAND[0] and BAND[1] <= spec.fmax <= 5500
    assert spec.db_min == pytest.approx(_noise_floor_db(), abs=1.5)  # the noise floor between calls
    assert spec.db_max > spec.db_min + 30  # the calls are 40+ dB above it
    # a tile holds about tile_size frames and bins: hop from the duration, n_fft from the band
    assert spec.hop_length == round(spec.tile_duration_s * SR / 64)
    assert spec.n_fft == 2 ** int(np.ceil(np.log2(SR * 64 / (spec.fmax - spec.fmin))))
    # every call spans the tile; the statistic names the spread of durations it evens out
    p5, p95 = np.percentile(durations, [5, 95])
    assert spec.time_stretch == "full"
    assert f"last {p5:.3g}-{p95:.3g} s" in choices.records["spectrogram.time_stretch"]["statistic"]
    assert not unresolved(dataclasses.asdict(resolved))
    assert {r["source"] for r in choices.records.values()} == {"data"}
    assert all(r["statistic"] for r in choices.records.values())
    again, _ = resolve_audio_settings(_params(), tmp_path)
    assert again == resolved  # no random draw: the same data give the same values


def test_explicit_values_win(tmp_path: Path, calls: pd.DataFrame) -> None:
    resolved, choices = resolve_audio_settings(_params(tile_duration_s=0.5, db_min=-80.0, sample_rate=8000,
                                                       time_stretch="none"), tmp_path)
    spec = resolved.spectrogram
    assert (spec.tile_duration_s, spec.db_min, spec.sample_rate, spec.time_stretch) == (0.5, -80.0, 8000, "none")
    assert choices.records["spectrogram.db_min"] == {"value": -80.0, "source": "config",
                                                     "statistic": "set in the config"}
    assert choices.records["spectrogram.db_max"]["source"] == "data"
    assert spec.hop_length == round(0.5 * 8000 / 64)  # derived from the explicit duration and rate
    with pytest.raises(SettingsError, match=r"spectrogram.fmax: 9000.0 Hz is above half the sample rate \(16000"):
        resolve_audio_settings(_params(fmax=9000.0), tmp_path)


def test_one_huge_outlier_call_is_ignored(tmp_path: Path) -> None:
    write_recordings(tmp_path, [0.05] * 60 + [0.1] * 59 + [4.0])
    resolved, choices = resolve_audio_settings(_params(), tmp_path)
    assert resolved.spectrogram.tile_duration_s == pytest.approx(0.11, abs=0.005)
    assert "1 longer than" in choices.records["spectrogram.tile_duration_s"]["statistic"]


def test_too_few_calls_fall_back_with_a_reason(tmp_path: Path) -> None:
    write_recordings(tmp_path, [0.05, 0.08, 0.1], n_files=1)
    resolved, choices = resolve_audio_settings(_params(), tmp_path)
    record = choices.records["spectrogram.tile_duration_s"]
    assert record["source"] == "fallback" and "only 3 annotated calls" in record["statistic"]
    assert resolved.spectrogram.tile_duration_s == 1.0
    assert choices.records["spectrogram.db_min"]["source"] == "fallback"
    assert resolved.spectrogram.time_stretch == "full"
    assert choices.records["spectrogram.time_stretch"]["source"] == "fallback"
    assert resolved.spectrogram.sample_rate == SR  # the rate is still the recordings' own


def test_silent_recordings_fall_back_and_tiles_are_not_degenerate(tmp_path: Path) -> None:
    write_recordings(tmp_path, [0.05] * 30, n_files=2, silent=True)
    resolved, choices = resolve_audio_settings(_params(), tmp_path)
    for key in ("spectrogram.fmin", "spectrogram.fmax", "spectrogram.db_min", "spectrogram.db_max"):
        assert choices.records[key]["source"] == "fallback", key
    assert resolved.spectrogram.db_max - resolved.spectrogram.db_min >= 20
    items = list(iter_audio_tiles(resolved, tmp_path))
    assert not [i for i in items if isinstance(i, TileItem)]  # silent audio is skipped, not tiled black


def test_a_band_with_no_energy_above_the_noise_falls_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(2):  # "calls" annotated on plain noise: nothing stands above it
        sf.write(tmp_path / f"rec{k}.wav", (NOISE_AMP * rng.standard_normal(SR * 6)).astype(np.float32), SR)
        rows += [(f"rec{k}.wav", 0.2 + 0.25 * i, 0.3 + 0.25 * i, "x") for i in range(20)]
    pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "label"]).to_csv(tmp_path / "calls.csv", index=False)
    resolved, choices = resolve_audio_settings(_params(), tmp_path)
    assert choices.records["spectrogram.fmin"]["source"] == "fallback"
    assert "no band where the calls stand" in choices.records["spectrogram.fmin"]["statistic"]
    tiles = [i.tile for i in iter_audio_tiles(resolved, tmp_path) if isinstance(i, TileItem)]
    assert len(tiles) == 40 and all(0 <= t.min() < t.max() <= 1 for t in tiles)


def test_energy_segmentation_settings_find_the_calls(tmp_path: Path) -> None:
    durations = list(np.random.default_rng(5).uniform(0.05, 0.15, 60))
    table = write_recordings(tmp_path, durations, n_files=3)
    params = dataclasses.replace(_params(), annotations=None, segments="energy")
    resolved, choices = resolve_audio_settings(params, tmp_path)
    seg = resolved.segment
    assert 1000 <= seg.fmin <= BAND[0] and BAND[1] <= seg.fmax <= 5500
    assert seg.offset_db <= seg.onset_db <= seg.peak_db
    assert choices.records["segment.peak_db"]["source"] == "data"
    found = [i for i in iter_audio_tiles(resolved, tmp_path) if isinstance(i, TileItem)]
    assert len(found) == len(table)  # every call found once: none merged, none split
    got = np.sort([i.meta["duration_s"] for i in found])
    np.testing.assert_allclose(got, np.sort(table["offset_s"] - table["onset_s"]), atol=0.015)
