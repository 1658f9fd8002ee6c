"""Read recordings block by block as one float32 channel at the dataset's sample rate.

soundfile (libsndfile) reads WAV (8/16/24/32-bit int, float), FLAC, OGG, MP3 and more, and can seek, so
an hours-long recording is read one block at a time, never whole. EvTAF ``.cbin`` recordings (Bengalese
finch song from evsonganaly labs, the bfsongrepo) are headerless big-endian 16-bit samples, channels
interleaved; their sampling rate and channel count are in the ``.rec`` file of the same stem, read with
``evfuncs.readrecf`` (what vak uses). The samples are memory-mapped, so a block reads only its own bytes
(``evfuncs.load_cbin`` would read the whole file, one channel). librosa resamples (soxr). A problem that
makes the whole file unusable raises AudioReadError; sample-level problems (NaN/Inf, clipping) are
counted per sample so a caller can skip only the calls they touch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import evfuncs
import librosa
import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

# in order of preference when a recording is matched by its stem
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".w64", ".rf64", ".caf", ".cbin")
CBIN_DTYPE = np.dtype(">i2")  # EvTAF .cbin: big-endian 16-bit signed samples, channels interleaved
CLIP_LEVEL = 0.999  # |sample| at or above this (of full scale) counts as clipped


class AudioReadError(ValueError):
    """The file cannot be used as a recording (unreadable, empty, no such channel)."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: enough to plan blocks without reading samples."""

    path: Path
    sample_rate: int
    frames: int
    channels: int
    subtype: str
    truncated: bool = False  # the header promises more data than the file holds (an interrupted copy)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class AudioBlock:
    """A stretch of one recording, mono at the dataset rate, with per-sample problem counts.

    ``clipped`` and ``nonfinite`` are the sorted indices of such *native* samples (usually few), so the
    fraction of any time span is two binary searches. Non-finite samples are zero in ``samples``.
    """

    start_s: float
    samples: np.ndarray
    sample_rate: int
    native_rate: int
    native_frames: int
    clipped: np.ndarray
    nonfinite: np.ndarray

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def fraction(self, flagged: np.ndarray, onset_s: float, offset_s: float) -> float:
        """Fraction of the native samples in [onset_s, offset_s) (recording time) listed in ``flagged``."""
        if not len(flagged):
            return 0.0
        i = min(max(round((onset_s - self.start_s) * self.native_rate), 0), self.native_frames)
        j = min(max(round((offset_s - self.start_s) * self.native_rate), i), self.native_frames)
        return float(np.searchsorted(flagged, j) - np.searchsorted(flagged, i)) / max(j - i, 1)

    @property
    def is_silent(self) -> bool:
        return not np.any(self.samples)


def audio_info(path: str | Path) -> AudioInfo:
    """Header of ``path``; raises AudioReadError if it is unreadable or holds no samples."""
    path = Path(path)
    if path.suffix.lower() == ".cbin":
        return _cbin_info(path)
    try:
        info = sf.info(str(path), verbose=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"cannot read audio: {exc}") from exc
    if info.frames <= 0:
        raise AudioReadError("recording has no samples (zero length)")
    # libsndfile notes "data : 64000 (should be 31978)" when a file was cut short, and reads what is there
    truncated = "(should be" in info.extra_info
    if truncated:
        log.warning("%s: truncated file: only %.3f s of audio are present", path, info.frames / info.samplerate)
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels), str(info.subtype), truncated)


def _cbin_info(path: Path) -> AudioInfo:
    """An EvTAF recording's header: rate and channels from its ``.rec``, length from the file size."""
    rec = path.with_suffix(".rec")
    if not rec.is_file():
        raise AudioReadError(f"no {rec.name} next to it: an EvTAF .cbin's sampling rate is in its .rec file")
    try:
        header = evfuncs.readrecf(rec)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AudioReadError(f"cannot read {rec.name}: {exc}") from exc
    rate, channels = header.get("sample_freq"), header.get("num_channels")
    if not rate or not channels or rate <= 0 or channels <= 0:
        raise AudioReadError(f"{rec.name} gives no sampling rate (ADFREQ) or channel count (Chans)")
    frames = path.stat().st_size // (CBIN_DTYPE.itemsize * channels)
    if frames <= 0:
        raise AudioReadError("recording has no samples (zero length)")
    promised = header.get("num_samples", frames)  # EvTAF counts samples per channel
    truncated = promised > frames
    if truncated:
        log.warning("%s: truncated file: only %.3f s of audio are present", path, frames / rate)
    return AudioInfo(path, int(rate), int(frames), int(channels), "PCM_16", truncated)


def _read_frames(info: AudioInfo, first: int, last: int) -> np.ndarray:
    """Frames ``first:last`` as float32 ``[frames, channels]`` in [-1, 1), as soundfile returns them."""
    if info.path.suffix.lower() != ".cbin":
        with sf.SoundFile(str(info.path)) as fh:
            fh.seek(first)
            return fh.read(last - first, dtype="float32", always_2d=True)
    samples = np.memmap(info.path, dtype=CBIN_DTYPE, mode="r", shape=(info.frames, info.channels))
    return samples[first:last].astype(np.float32) / np.float32(32768)


def read_block(
    info: AudioInfo, start_s: float, stop_s: float, sample_rate: int, channel: str = "mix"
) -> AudioBlock:
    """Samples of ``info.path`` between ``start_s`` and ``stop_s`` (clamped to the file), mono, at ``sample_rate``.

    ``channel`` is "mix" (average of all channels) or a 0-based channel number as text.
    """
    if channel != "mix" and int(channel) >= info.channels:
        raise AudioReadError(f"channel {int(channel)} requested but the file has {info.channels} channel(s)")
    first = int(np.clip(round(start_s * info.sample_rate), 0, info.frames))
    last = int(np.clip(round(stop_s * info.sample_rate), first, info.frames))
    try:
        data = _read_frames(info, first, last)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"cannot read audio at {start_s:.3f}-{stop_s:.3f} s (corrupt or truncated file?): "
                             f"{exc}") from exc
    bad = ~np.isfinite(data)
    if bad.any():
        data = np.where(bad, np.float32(0), data)
    mono = data.mean(axis=1) if channel == "mix" else data[:, int(channel)]
    clipped = np.flatnonzero((np.abs(data) >= CLIP_LEVEL).any(axis=1))
    nonfinite = np.flatnonzero(bad.any(axis=1))
    if info.sample_rate != sample_rate and len(mono):
        mono = librosa.resample(mono, orig_sr=info.sample_rate, target_sr=sample_rate, res_type="soxr_hq")
    return AudioBlock(
        start_s=first / info.sample_rate,
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate=sample_rate,
        native_rate=info.sample_rate,
        native_frames=len(data),
        clipped=clipped,
        nonfinite=nonfinite,
    )


def read_audio(path: str | Path, sample_rate: int, channel: str = "mix") -> np.ndarray:
    """The whole of a (short) recording, mono at ``sample_rate``; raises AudioReadError if it is unusable."""
    info = audio_info(path)
    block = read_block(info, 0.0, info.duration_s, sample_rate, channel)
    if len(block.nonfinite):
        raise AudioReadError(f"recording contains {len(block.nonfinite)} NaN or Inf samples")
    if block.is_silent:
        raise AudioReadError("recording is silent (all samples are zero)")
    return block.samples


def recording_path(recordings: Path, name: str) -> Path:
    """The file of recording ``name`` (relative to the ``recordings`` folder, or that file itself)."""
    return recordings / name if recordings.is_dir() else recordings


def find_recordings(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted, by suffix."""
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
