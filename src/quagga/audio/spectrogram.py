"""Mel spectrograms in dB full scale and fixed-scale 128x128 call tiles.

The recording's spectrogram is computed once; each call is a slice of it resampled onto a fixed time
grid (``tile_duration_s`` per tile), so a call's duration stays visible in its tile. Columns not covered
by the call are filled with the recording's background (per-band noise floor), not with zeros, and dB
values are mapped to [0, 1] with fixed bounds, so loudness differences between calls survive.
"""

from __future__ import annotations

import librosa
import numpy as np

from quagga.params import SpectrogramParams

_EPS = 1e-12
NOISE_FLOOR_PERCENTILE = 20


def mel_db(samples: np.ndarray, p: SpectrogramParams) -> np.ndarray:
    """Mel power spectrogram in dB relative to a full-scale sine, shape [n_mels, frames], low bands first."""
    window = librosa.filters.get_window("hann", p.n_fft)
    stft = librosa.stft(samples, n_fft=p.n_fft, hop_length=p.hop_length, window=window, center=True)
    power = np.abs(stft) ** 2 / (window.sum() / 2) ** 2
    mel_fb = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax,
                                 norm=None)
    return (10.0 * np.log10(mel_fb @ power + _EPS)).astype(np.float32)


def background_profile(spec_db: np.ndarray) -> np.ndarray:
    """Per-band noise floor of a recording: the padding value of its tiles."""
    return np.percentile(spec_db, NOISE_FLOOR_PERCENTILE, axis=1).astype(np.float32)


def call_tile(
    spec_db: np.ndarray, background: np.ndarray, onset_s: float, offset_s: float, p: SpectrogramParams
) -> np.ndarray:
    """Tile of one call: [tile_size, tile_size] in [0, 1], rows = mel bands (low first), call centred.

    Time is resampled so one tile spans ``tile_duration_s``; a longer call is compressed to fit.
    """
    size = p.tile_size
    duration = offset_s - onset_s
    width = int(np.clip(round(duration / p.tile_duration_s * size), 1, size))
    step_s = duration / width
    times = onset_s + (np.arange(width) + 0.5) * step_s
    frames = np.clip(times * p.sample_rate / p.hop_length, 0, spec_db.shape[1] - 1)
    lo = np.floor(frames).astype(int)
    hi = np.minimum(lo + 1, spec_db.shape[1] - 1)
    frac = (frames - lo).astype(np.float32)
    call = spec_db[:, lo] * (1 - frac) + spec_db[:, hi] * frac
    if call.shape[0] != size:  # n_mels != tile_size: resample the frequency axis too
        rows = np.linspace(0, call.shape[0] - 1, size)
        call = np.stack([np.interp(rows, np.arange(call.shape[0]), col) for col in call.T], axis=1)
        background = np.interp(rows, np.arange(len(background)), background)
    tile = np.repeat(np.asarray(background, dtype=np.float32)[:, None], size, axis=1)
    start = (size - width) // 2
    tile[:, start : start + width] = call
    return np.clip((tile - p.db_min) / (p.db_max - p.db_min), 0.0, 1.0).astype(np.float32)
