"""Read a recording as one float32 channel at the dataset's sample rate.

soundfile reads WAV/FLAC/OGG (and MP3 with libsndfile >= 1.1); librosa resamples (soxr). Problems
that make a recording unusable raise AudioReadError with the reason, so callers can skip the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)


class AudioReadError(ValueError):
    """The file cannot be used as a recording (unreadable, empty, silent, non-finite)."""


def read_audio(path: str | Path, sample_rate: int, channel: str = "mix") -> np.ndarray:
    """Return mono float32 samples of ``path`` at ``sample_rate``.

    ``channel`` is "mix" (average of all channels) or a 0-based channel number as text.
    """
    path = Path(path)
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"cannot read audio: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioReadError("recording has no samples")
    if channel == "mix":
        mono = data.mean(axis=1)
    else:
        idx = int(channel)
        if idx >= data.shape[1]:
            raise AudioReadError(f"channel {idx} requested but the file has {data.shape[1]} channel(s)")
        mono = data[:, idx]
    if not np.all(np.isfinite(mono)):
        raise AudioReadError("recording contains NaN or Inf samples")
    if not np.any(mono):
        raise AudioReadError("recording is silent (all samples are zero)")
    if sr != sample_rate:
        log.info("%s: resampling %d Hz -> %d Hz", path.name, sr, sample_rate)
        mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)
