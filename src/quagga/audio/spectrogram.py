"""Spectrograms in dB full scale and 128x128 call tiles.

A block's spectrogram is computed only at the STFT frames its tiles need (plus an even sample of frames
for the noise floor), not at every frame: calls usually cover a fraction of a recording, so tiling costs
less than one plain STFT of the audio. Each call is resampled onto a fixed time grid
(``tile_duration_s`` per tile), so its duration stays visible in its tile (or, with ``time_stretch:
sqrt``, its square root, as AVA does so short calls are not a few pixels wide; ``full`` stretches every
call over the whole tile, for call types whose renditions vary in length but not in shape). Columns not
covered by the call are filled with the block's background (per-band noise floor), not zeros, and dB
values are mapped to [0, 1] with fixed bounds, so loudness differences between calls survive
(``normalize: per_tile`` stretches each tile to its own range instead).
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
import scipy.fft

from quagga.params import SpectrogramParams

_EPS = 1e-12
NOISE_FLOOR_PERCENTILE = 20
NOISE_FLOOR_FRAMES = 1000  # the floor is estimated from at most this many evenly spread frames


@lru_cache(maxsize=8)
def _mel_filters(p: SpectrogramParams) -> np.ndarray:
    return librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax,
                               norm=None).astype(np.float32)


@lru_cache(maxsize=8)
def _linear_bins(p: SpectrogramParams) -> np.ndarray:
    freqs = librosa.fft_frequencies(sr=p.sample_rate, n_fft=p.n_fft)
    return np.flatnonzero((freqs >= p.fmin) & (freqs <= p.fmax))


@lru_cache(maxsize=8)
def _row_interpolation(rows: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour rows and weights that linearly interpolate ``rows`` frequency rows onto ``size`` rows."""
    pos = np.linspace(0, rows - 1, size)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, rows - 1)
    return lo, hi, (pos - lo).astype(np.float32)[:, None]


class BlockSpectrogram:
    """Power spectrogram of one block in dB re a full-scale sine, computed on demand per frame.

    Frames are those of ``librosa.stft(center=True)`` (zero padding, Hann window); rows are mel bands or
    the linear bins in [fmin, fmax], low frequencies first.
    """

    def __init__(self, samples: np.ndarray, p: SpectrogramParams):
        if p.noise_reduce:
            import noisereduce  # only when asked: it is slow to import

            samples = noisereduce.reduce_noise(y=samples, sr=p.sample_rate, stationary=True, n_fft=p.n_fft,
                                               hop_length=p.hop_length)
        self.p = p
        padded = np.pad(np.asarray(samples, dtype=np.float32), p.n_fft // 2)
        self._frames = np.lib.stride_tricks.sliding_window_view(padded, p.n_fft)[:: p.hop_length]
        window = librosa.filters.get_window("hann", p.n_fft)
        self._window = window.astype(np.float32)
        self._scale = np.float32(1.0 / (window.sum() / 2) ** 2)

    @property
    def n_frames(self) -> int:
        return len(self._frames)

    def frames_db(self, idx: np.ndarray) -> np.ndarray:
        """[rows, len(idx)] dB values of the frames ``idx``."""
        spec = scipy.fft.rfft(self._frames[idx] * self._window, axis=1)
        power = np.square(spec.real) + np.square(spec.imag)
        power *= self._scale
        rows = power @ _mel_filters(self.p).T if self.p.scale == "mel" else power[:, _linear_bins(self.p)]
        return (10.0 * np.log10(rows.T + np.float32(_EPS))).astype(np.float32)

    def background(self) -> np.ndarray:
        """Per-band noise floor of the block: the padding value of its tiles."""
        idx = np.unique(np.linspace(0, self.n_frames - 1, min(self.n_frames, NOISE_FLOOR_FRAMES)).astype(int))
        return np.percentile(self.frames_db(idx), NOISE_FLOOR_PERCENTILE, axis=1).astype(np.float32)


def spectrogram_db(samples: np.ndarray, p: SpectrogramParams) -> np.ndarray:
    """The whole spectrogram of ``samples`` in dB, [rows, frames]."""
    spec = BlockSpectrogram(samples, p)
    return spec.frames_db(np.arange(spec.n_frames))


def call_tile(
    spec: BlockSpectrogram, background: np.ndarray, onset_s: float, offset_s: float, p: SpectrogramParams
) -> np.ndarray:
    """Tile of one call: [tile_size, tile_size] in [0, 1], rows = frequency (low first), call centred.

    ``onset_s``/``offset_s`` are relative to the start of the block. Time is resampled so one tile spans
    ``tile_duration_s`` (see ``time_stretch``); a longer call is compressed to fit.
    """
    size, last = p.tile_size, spec.n_frames - 1
    duration = offset_s - onset_s
    if p.time_stretch == "full":
        width = size
    else:
        shown = np.sqrt(duration * p.tile_duration_s) if p.time_stretch == "sqrt" else duration
        width = min(max(round(shown / p.tile_duration_s * size), 1), size)
    frames = (onset_s + (np.arange(width) + 0.5) * (duration / width)) * (p.sample_rate / p.hop_length)
    frames = np.minimum(np.maximum(frames, 0.0), last)
    lo = frames.astype(int)
    hi = np.minimum(lo + 1, last)
    frac = (frames - lo).astype(np.float32)
    first = lo[0]
    part = spec.frames_db(np.arange(first, hi[-1] + 1))
    call = part[:, lo - first] * (1 - frac) + part[:, hi - first] * frac
    if call.shape[0] != size:  # rows != tile_size: resample the frequency axis too
        r0, r1, w = _row_interpolation(call.shape[0], size)
        call = call[r0] * (1 - w) + call[r1] * w
        background = background[r0] * (1 - w[:, 0]) + background[r1] * w[:, 0]
    tile = np.repeat(np.asarray(background, dtype=np.float32)[:, None], size, axis=1)
    start = (size - width) // 2
    tile[:, start : start + width] = call
    if p.normalize == "per_tile":
        lo_db, hi_db = float(tile.min()), float(tile.max())
        return ((tile - lo_db) / max(hi_db - lo_db, 1e-6)).astype(np.float32)
    tile = (tile - np.float32(p.db_min)) * np.float32(1.0 / (p.db_max - p.db_min))
    return np.minimum(np.maximum(tile, np.float32(0.0)), np.float32(1.0))
