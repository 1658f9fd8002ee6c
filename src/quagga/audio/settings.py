"""Spectrogram and segmentation settings found from the recordings (``auto`` values), without labels.

What a new bird or a new recorder needs, measured once per dataset on an even sample of its calls:

- ``sample_rate``: the recordings' own rate (the most common one), so nothing is resampled away;
- ``tile_duration_s``: every call but rare outliers fits (1.1 x the 99th percentile of call durations,
  calls beyond Tukey's far-out fence ignored); with ``time_stretch: none`` durations stay visible and short
  calls are not specks, stretched it sets the time resolution (the hop);
- ``time_stretch``: ``full``, every call spans the tile's width. Renditions of one call type vary in length
  more than in shape (koumura-bird0: one syllable type spans 24-140 ms, in three clusters by duration
  without the stretch; V 0.852 -> 0.924, same VAE recipe); each call's duration stays in the tile index
  (``duration_s``) and the report. Set ``none`` where the length or the pulse rate is what tells types apart;
- ``fmin``/``fmax``: the band where the calls stand at least ``BAND_SNR_DB`` above the noise (75th-percentile
  level during calls against the median level between them, per frequency: a call type that owns a band
  is a minority of the call frames);
- ``db_min``/``db_max``: the noise floor (median level between calls, in the band) and the ceiling
  (99th percentile of the calls' bins in the band), so the background is black and loud calls do not
  saturate;
- ``n_fft``/``hop_length``: a tile holds about ``tile_size`` frames of ``tile_size`` frequency bins;
- for ``segments: energy``, the band, thresholds and minimum gap of the energy trace from the recordings'
  own trace (its quiet and loud modes), found before the calls whose durations and levels set the rest.

Levels are counted in fixed 0.5 dB histograms per frequency (memory does not grow with the data), over at
most ``MAX_CALLS`` calls chosen evenly (no random draws: the same data gives the same values).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagga.audio.annotations import read_annotations
from quagga.audio.io import AudioReadError, audio_info, find_recordings, read_block, recording_path
from quagga.audio.segment import energy_trace, find_calls
from quagga.audio.spectrogram import BlockSpectrogram
from quagga.params import AudioParams, SegmentParams, SpectrogramParams
from quagga.settings import MIN_ITEMS, Choices, SettingsError, is_auto

log = logging.getLogger(__name__)

__all__ = ["resolve_audio_settings"]

MAX_CALLS = 600  # calls measured (evenly spread over the dataset)
MAX_FILES = 400  # recordings whose headers are read for the sample rate
CONTEXT_S = 0.25  # audio read around a measured call: its frames outside every call are the noise
FRAMES_PER_CALL = 48  # at most this many call frames and as many noise frames counted per call
BAND_SNR_DB = 6.0  # the band: where the calls' loud frames (BAND_CALL_PERCENTILE) are this far above the noise
# a call type that owns a band is a minority of the frames: its level shows in an upper quartile, not the median
# (the 90th percentile also takes in the broadband clicks of call onsets)
BAND_CALL_PERCENTILE = 75
MIN_RANGE_DB = 20.0  # db_max - db_min below this is not a usable contrast (silence, a flat band)
DB_BINS = np.arange(-160.0, 40.5, 0.5)  # histogram edges: levels are clipped into this range
ENERGY_WINDOWS = 30  # energy segmentation: windows of the recordings segmented to find calls
ENERGY_WINDOW_S = 10.0
MIN_SPLIT_DB = 3.0  # an energy trace whose loud and quiet modes are closer than this has no calls to find
# what the tiler falls back to when the data cannot say (too few calls, silence, no band above the noise)
FALLBACK = {"sample_rate": 22050, "tile_duration_s": 1.0, "fmin": 200.0, "fmax": 10000.0, "db_min": -90.0,
            "db_max": -10.0}
SEGMENT_FALLBACK = SegmentParams(n_fft=512, hop_length=64, fmin=500.0, fmax=10000.0, onset_db=12.0, offset_db=8.0,
                                 peak_db=20.0, min_gap_s=0.005)


class LevelHistogram:
    """Counts of dB levels per frequency bin, in fixed 0.5 dB steps: percentiles without keeping frames."""

    def __init__(self, freqs: np.ndarray):
        self.freqs = freqs
        self.counts = np.zeros((len(freqs), len(DB_BINS) - 1), dtype=np.int64)

    def add(self, db: np.ndarray) -> None:
        """Add frames ``db`` [len(freqs), frames]."""
        if db.size == 0:
            return
        n_bins = len(DB_BINS) - 1
        idx = np.clip(np.searchsorted(DB_BINS, db, side="right") - 1, 0, n_bins - 1)
        flat = (np.arange(len(self.freqs))[:, None] * n_bins + idx).ravel()
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    @property
    def n_frames(self) -> int:
        return int(self.counts[0].sum()) if len(self.counts) else 0

    def percentile(self, q: float, band: np.ndarray | None = None) -> np.ndarray | float:
        """The ``q``-th percentile per frequency, or over all bins of the frequencies in ``band`` (a mask)."""
        counts = self.counts if band is None else self.counts[band].sum(axis=0, keepdims=True)
        cum = np.cumsum(counts, axis=1)
        total = cum[:, -1:]
        pos = np.argmax(cum >= np.maximum(q / 100.0 * total, 1), axis=1)
        values = DB_BINS[pos] + 0.25  # bin centre
        return float(values[0]) if band is not None else values


def resolve_audio_settings(params: AudioParams, base_dir: Path) -> tuple[AudioParams, Choices]:
    """``params`` with every ``auto`` value found from the recordings, and how each was chosen."""
    base_dir = Path(base_dir)
    recordings = (base_dir / params.recordings).resolve()
    table = None
    if params.annotations:
        table = read_annotations(base_dir / params.annotations, params.annotation_format, params.label_column)
    files = _recording_files(recordings, table, params.segments)
    choices = Choices()
    spec = params.spectrogram
    rate = choices.pick("spectrogram.sample_rate", spec.sample_rate, _native_rate(recordings, files),
                        FALLBACK["sample_rate"], "no readable recording")
    for key, value in (("spectrogram.fmax", spec.fmax), ("segment.fmax", params.segment.fmax)):
        if not is_auto(value) and value > rate / 2:
            raise SettingsError(f"{key}: {value} Hz is above half the sample rate ({rate} Hz, "
                                f"{choices.records['spectrogram.sample_rate']['statistic']})")
    if params.segments == "annotations":
        assert table is not None, "segments: annotations needs annotations (checked by the config)"
        segment = _concrete(params.segment, SEGMENT_FALLBACK)
        calls = table[["file", "onset_s", "offset_s"]].copy()
        calls = calls[np.isfinite(calls["onset_s"]) & np.isfinite(calls["offset_s"])
                      & (calls["offset_s"] > calls["onset_s"])]
        what = "annotated calls"
    else:
        blocks = _window_samples(recordings, files, rate, params.channel)
        segment = _resolve_segment(params.segment, rate, blocks, choices)
        found = _calls_in([b for b in blocks if len(b) >= int(segment.n_fft)], rate, segment)
        calls = pd.DataFrame([(k, on, off) for k, on, off in found], columns=["file", "onset_s", "offset_s"])
        what = "calls found by energy segmentation"
    durations = (calls["offset_s"] - calls["onset_s"]).to_numpy(float)
    tile_s = choices.pick("spectrogram.tile_duration_s", spec.tile_duration_s, _tile_duration(durations, what),
                          FALLBACK["tile_duration_s"], f"only {len(durations)} {what} (fewer than {MIN_ITEMS})")
    stretch = choices.pick("spectrogram.time_stretch", spec.time_stretch, _time_stretch(durations, what), "full",
                           f"only {len(durations)} {what} (fewer than {MIN_ITEMS}); every call spans the tile")
    if len(calls) < MIN_ITEMS:
        levels = None
    elif params.segments == "annotations":
        levels = _call_levels(recordings, calls, rate, params.channel)
    else:
        levels = _levels_of([b for b in blocks if len(b) >= int(segment.n_fft)], rate, found)
    band = _band(levels, rate)
    fmin = choices.pick("spectrogram.fmin", spec.fmin, None if band is None else band[0],
                        FALLBACK["fmin"], _band_problem(levels, len(calls), what))
    fmax = choices.pick("spectrogram.fmax", spec.fmax, None if band is None else band[1],
                        min(FALLBACK["fmax"], rate / 2), _band_problem(levels, len(calls), what))
    if fmax <= fmin:  # one bound explicit, the other found on the wrong side of it
        fmin, fmax = (choices.fallback("spectrogram.fmin", FALLBACK["fmin"], f"found fmin is not below fmax {fmax}"),
                      choices.fallback("spectrogram.fmax", min(FALLBACK["fmax"], rate / 2), "see fmin"))
    bounds = _db_bounds(levels, fmin, fmax)
    reason = "no usable levels: " + (_band_problem(levels, len(calls), what) if levels is None else
                                     f"the calls' 99th percentile is within {MIN_RANGE_DB:g} dB of the noise")
    db_min = choices.pick("spectrogram.db_min", spec.db_min, None if bounds is None else bounds[0],
                          FALLBACK["db_min"], reason)
    db_max = choices.pick("spectrogram.db_max", spec.db_max, None if bounds is None else bounds[1],
                          FALLBACK["db_max"], reason)
    if db_max <= db_min:
        db_min, db_max = (choices.fallback("spectrogram.db_min", FALLBACK["db_min"], "found bound not below db_max"),
                          choices.fallback("spectrogram.db_max", FALLBACK["db_max"], "see db_min"))
    hop, n_fft = _frames(rate, tile_s, fmin, fmax, spec.tile_size)
    hop = choices.pick("spectrogram.hop_length", spec.hop_length,
                       (hop, f"{spec.tile_size} frames per tile of {tile_s:g} s at {rate} Hz"), hop, "")
    n_fft = choices.pick("spectrogram.n_fft", spec.n_fft,
                         (max(n_fft, _pow2(hop)), f"about {spec.tile_size} bins over {fmin:g}-{fmax:g} Hz, "
                                                  "at least one hop"), n_fft, "")
    resolved_spec = dataclasses.replace(spec, sample_rate=rate, tile_duration_s=tile_s, fmin=fmin, fmax=fmax,
                                        db_min=db_min, db_max=db_max, hop_length=hop, n_fft=n_fft,
                                        time_stretch=stretch)
    resolved = dataclasses.replace(params, spectrogram=resolved_spec, segment=segment)
    return resolved, choices


# ------------------------------------------------------------------------------------- what is measured
def _recording_files(recordings: Path, table: pd.DataFrame | None, segments: str) -> list[str]:
    """Recordings (relative names as the tiler uses them) the settings are measured on."""
    if segments == "annotations" and table is not None:
        return [str(f) for f in pd.unique(table["file"])]
    root = recordings if recordings.is_dir() else recordings.parent
    return [p.relative_to(root).as_posix() for p in find_recordings(recordings)]


def _evenly(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` of ``items``, evenly spread, in order."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _native_rate(recordings: Path, files: list[str]) -> tuple[int, str] | None:
    rates: Counter[int] = Counter()
    for name in _evenly(files, MAX_FILES):
        try:
            rates[audio_info(recording_path(recordings, name)).sample_rate] += 1
        except (AudioReadError, OSError):
            continue
    if not rates:
        return None
    rate, n = max(rates.items(), key=lambda kv: (kv[1], kv[0]))
    mixed = f"; {len(rates)} rates: " + ", ".join(f"{r} Hz x{k}" for r, k in sorted(rates.items())) \
        if len(rates) > 1 else ""
    return rate, f"the recordings' own rate ({n} of {sum(rates.values())} headers read{mixed})"


def _tile_duration(durations: np.ndarray, what: str) -> tuple[float, str] | None:
    if len(durations) < MIN_ITEMS:
        return None
    q1, q3 = np.percentile(durations, [25, 75])
    fence = q3 + 3 * (q3 - q1)
    inliers = durations[durations <= fence]
    value = float(f"{1.1 * np.percentile(inliers, 99):.3g}")
    outliers = len(durations) - len(inliers)
    note = f"; {outliers} longer than {fence:.3g} s ignored (Tukey's far-out fence)" if outliers else ""
    return value, (f"1.1 x the 99th percentile of {len(durations)} {what}' durations "
                   f"(median {np.median(durations):.3g} s, max {durations.max():.3g} s){note}")


def _time_stretch(durations: np.ndarray, what: str) -> tuple[str, str] | None:
    """``full``, with the spread of durations it evens out (the statistic the run summary shows)."""
    if len(durations) < MIN_ITEMS:
        return None
    p5, p95 = np.percentile(durations, [5, 95])
    return "full", (f"every call spans the tile: {len(durations)} {what} last {p5:.3g}-{p95:.3g} s (5th-95th "
                    f"percentile, x{p95 / max(p5, 1e-9):.3g}); one type's renditions vary in length more than in "
                    "shape; durations stay in the index (duration_s). Set none where the length tells types apart")


def _stft_params(rate: int) -> SpectrogramParams:
    """A 16 ms analysis window over the whole band, for measuring levels."""
    n_fft = _pow2(0.016 * rate)
    return SpectrogramParams(sample_rate=rate, n_fft=n_fft, hop_length=max(n_fft // 4, 8), scale="linear", fmin=0.0,
                             fmax=rate / 2, tile_duration_s=1.0)


def _call_levels(recordings: Path, calls: pd.DataFrame, rate: int, channel: str) -> tuple[LevelHistogram, ...] | None:
    """Level histograms (calls, noise) over an even sample of ``calls``: frames inside any call vs outside."""
    p = _stft_params(rate)
    freqs = np.fft.rfftfreq(p.n_fft, 1.0 / rate)
    inside, outside = LevelHistogram(freqs), LevelHistogram(freqs)
    calls = calls.sort_values(["file", "onset_s"]).reset_index(drop=True)
    chosen = set(_evenly(range(len(calls)), MAX_CALLS))  # a range: no list of every index
    for name, rows in calls.groupby("file", sort=False):
        picked = rows[rows.index.isin(chosen)]
        if picked.empty:
            continue
        try:
            info = audio_info(recording_path(recordings, str(name)))
        except (AudioReadError, OSError):
            continue
        spans = rows[["onset_s", "offset_s"]].to_numpy(float)
        for call in picked.itertuples():
            start = max(call.onset_s - CONTEXT_S, 0.0)
            try:
                block = read_block(info, start, call.offset_s + CONTEXT_S, rate, channel)
            except AudioReadError:
                continue
            if block.is_silent or len(block.samples) < p.n_fft:
                continue
            spec = BlockSpectrogram(block.samples, p)
            times = block.start_s + np.arange(spec.n_frames) * p.hop_length / rate
            in_any = ((times[:, None] >= spans[:, 0]) & (times[:, None] <= spans[:, 1])).any(axis=1)
            this = (times >= call.onset_s) & (times <= call.offset_s)
            for hist, mask in ((inside, this), (outside, ~in_any)):
                idx = _evenly(list(np.flatnonzero(mask)), FRAMES_PER_CALL)
                if idx:
                    hist.add(spec.frames_db(np.asarray(idx)))
    return (inside, outside) if inside.n_frames else None


def _band(levels: tuple[LevelHistogram, ...] | None, rate: int) -> tuple[tuple[float, str], tuple[float, str]] | None:
    """(fmin, statistic), (fmax, statistic): where the calls' loud frames are BAND_SNR_DB above the noise."""
    if levels is None or not levels[1].n_frames:
        return None
    inside, outside = levels
    freqs = inside.freqs
    snr = np.asarray(inside.percentile(BAND_CALL_PERCENTILE)) - np.asarray(outside.percentile(50))
    width = max(1, int(round(250.0 / (freqs[1] - freqs[0]))) | 1)  # smooth over ~250 Hz: single bins flicker
    smooth = np.convolve(snr, np.ones(width) / width, mode="same")
    above = np.flatnonzero(smooth >= BAND_SNR_DB)
    if len(above) == 0:
        return None
    lo = float(np.floor(freqs[above[0]] / 50) * 50)
    hi = float(min(np.ceil(freqs[above[-1]] / 50) * 50, rate / 2))
    if hi <= lo:
        return None
    how = (f"the calls' {BAND_CALL_PERCENTILE}th-percentile level >= {BAND_SNR_DB:g} dB above the noise's median "
           f"(between calls), over {inside.n_frames} call and {outside.n_frames} noise frames; peak "
           f"{smooth.max():.0f} dB at {freqs[int(np.argmax(smooth))]:.0f} Hz")
    return (lo, how), (hi, how)


def _band_problem(levels: tuple[LevelHistogram, ...] | None, n_calls: int, what: str) -> str:
    if n_calls < MIN_ITEMS:
        return f"only {n_calls} {what} (fewer than {MIN_ITEMS})"
    if levels is None:
        return "the measured calls are silent or unreadable"
    if not levels[1].n_frames:
        return "no audio between calls to measure the noise"
    return f"no band where the calls stand {BAND_SNR_DB:g} dB above the noise"


def _db_bounds(levels: tuple[LevelHistogram, ...] | None, fmin: float, fmax: float
               ) -> tuple[tuple[float, str], tuple[float, str]] | None:
    if levels is None:
        return None
    inside, outside = levels
    band = (inside.freqs >= fmin) & (inside.freqs <= fmax)
    if not band.any():
        return None
    noise_source = outside if outside.n_frames else inside
    floor = float(noise_source.percentile(50 if outside.n_frames else 20, band))
    ceiling = float(inside.percentile(99, band))
    if ceiling - floor < MIN_RANGE_DB:
        return None
    where = f"{fmin:g}-{fmax:g} Hz"
    floor_how = (f"median level between calls, {where}" if outside.n_frames
                 else f"20th percentile of the calls' levels, {where} (no audio between calls)")
    return ((round(floor, 1), floor_how),
            (round(ceiling, 1), f"99th percentile of the calls' levels, {where}"))


def _pow2(x: float) -> int:
    return int(2 ** np.ceil(np.log2(max(x, 1.0))))


def _frames(rate: int, tile_s: float, fmin: float, fmax: float, tile_size: int) -> tuple[int, int]:
    """(hop_length, n_fft): ``tile_size`` frames per tile, about ``tile_size`` FFT bins over the band."""
    hop = int(np.clip(round(tile_s * rate / tile_size), 8, 8192))
    n_fft = int(np.clip(_pow2(rate * tile_size / max(fmax - fmin, 1.0)), 64, 16384))
    return hop, n_fft


def _concrete(requested: Any, fallback: Any) -> Any:
    """A params dataclass with its ``auto`` fields replaced by ``fallback``'s (for settings that go unused)."""
    values = {f.name: getattr(fallback, f.name) for f in dataclasses.fields(requested)
              if is_auto(getattr(requested, f.name))}
    return dataclasses.replace(requested, **values)


# ------------------------------------------------------------------------------- energy segmentation
def _windows(recordings: Path, files: list[str]) -> list[tuple[Any, float, float]]:
    """(AudioInfo, start_s, stop_s) of up to ENERGY_WINDOWS windows spread evenly over all recordings."""
    infos = []
    for name in files:
        try:
            infos.append(audio_info(recording_path(recordings, name)))
        except (AudioReadError, OSError):
            continue
    total = sum(i.duration_s for i in infos)
    if not infos or total <= 0:
        return []
    span = min(ENERGY_WINDOW_S, total / ENERGY_WINDOWS) if total > ENERGY_WINDOW_S * ENERGY_WINDOWS else 0.0
    if span == 0.0:  # little audio: every recording whole
        return [(i, 0.0, i.duration_s) for i in infos]
    starts = np.linspace(0, total - span, ENERGY_WINDOWS)
    out, offset, k = [], 0.0, 0
    for info in infos:
        while k < len(starts) and starts[k] < offset + info.duration_s:
            local = starts[k] - offset
            out.append((info, local, min(local + span, info.duration_s)))
            k += 1
        offset += info.duration_s
    return out


def _resolve_segment(p: SegmentParams, rate: int, blocks: list[np.ndarray], choices: Choices) -> SegmentParams:
    """Energy-trace settings from the recordings, in two passes: the band and thresholds of the loud frames
    find calls; the band where those calls stand above the noise, and thresholds from its trace, are kept."""
    default = SEGMENT_FALLBACK
    n_fft = choices.pick("segment.n_fft", p.n_fft, (_pow2(0.016 * rate), "16 ms at the recordings' rate"),
                         default.n_fft, "")
    hop = choices.pick("segment.hop_length", p.hop_length, (max(n_fft // 8, 8), "n_fft / 8"), default.hop_length, "")
    blocks = [b for b in blocks if len(b) >= n_fft]
    if not blocks:
        reason = "no audio to measure (no readable, non-silent recording)"
        return _segment_fallback(p, n_fft, hop, rate, choices, reason)
    base = dataclasses.replace(_concrete(p, default), n_fft=n_fft, hop_length=hop)
    band = _trace_band(blocks, rate, n_fft, hop)
    first = dataclasses.replace(base, **_explicit_or(p, band, ("fmin", "fmax"),
                                                     (default.fmin, min(default.fmax, rate / 2))))
    levels = _trace_levels(blocks, rate, first)
    if levels is not None:
        first = dataclasses.replace(first, **_explicit_or(p, levels, ("onset_db", "offset_db", "peak_db"),
                                                          (default.onset_db, default.offset_db, default.peak_db)))
    calls = _calls_in(blocks, rate, first)
    if len(calls) >= MIN_ITEMS:  # second pass: the band where the calls found stand above the noise
        found = _band(_levels_of(blocks, rate, calls), rate)
        if found is not None:
            how = f"{found[0][1].replace('calls', 'calls found in a first pass')}"
            band = ((found[0][0], how), (found[1][0], how))
    reason = "no frequency band whose loud frames stand 6 dB above the quiet ones"
    fmin = choices.pick("segment.fmin", p.fmin, None if band is None else band[0], default.fmin, reason)
    fmax = choices.pick("segment.fmax", p.fmax, None if band is None else band[1], min(default.fmax, rate / 2), reason)
    if fmax <= fmin:
        fmin, fmax = (choices.fallback("segment.fmin", default.fmin, "found fmin not below fmax"),
                      choices.fallback("segment.fmax", min(default.fmax, rate / 2), "see fmin"))
    base = dataclasses.replace(base, fmin=fmin, fmax=fmax)
    levels = _trace_levels(blocks, rate, base)
    values = {}
    for key, idx in (("onset_db", 0), ("offset_db", 1), ("peak_db", 2)):
        values[key] = choices.pick(f"segment.{key}", getattr(p, key), None if levels is None else levels[idx],
                                   getattr(default, key), "the energy trace has no quiet and loud modes to separate")
    if values["offset_db"] > values["onset_db"]:
        values["offset_db"] = choices.fallback("segment.offset_db", values["onset_db"], "found above onset_db")
    gap = choices.pick("segment.min_gap_s", p.min_gap_s,
                       (round(hop / rate, 4), "one frame of the trace: shorter gaps cannot be told from none"),
                       default.min_gap_s, "")
    return dataclasses.replace(base, min_gap_s=gap, **values)


def _segment_fallback(p: SegmentParams, n_fft: int, hop: int, rate: int, choices: Choices, reason: str
                      ) -> SegmentParams:
    """Every ``auto`` segmentation setting at its stated fallback, with ``reason``."""
    values = {}
    for f in dataclasses.fields(SegmentParams):
        if f.name in ("n_fft", "hop_length"):
            continue
        fallback = getattr(SEGMENT_FALLBACK, f.name)
        if f.name == "fmax":
            fallback = min(fallback, rate / 2)
        values[f.name] = choices.pick(f"segment.{f.name}", getattr(p, f.name), None, fallback, reason) \
            if is_auto(getattr(p, f.name)) else getattr(p, f.name)
    return dataclasses.replace(p, n_fft=n_fft, hop_length=hop, **values)


def _explicit_or(p: SegmentParams, found: tuple | None, keys: tuple[str, ...], fallback: tuple) -> dict[str, Any]:
    """A first-pass setting: the explicit value, else what was found, else the fallback (nothing recorded)."""
    out = {}
    for i, key in enumerate(keys):
        value = getattr(p, key)
        out[key] = value if not is_auto(value) else (found[i][0] if found is not None else fallback[i])
    return out


def _window_samples(recordings: Path, files: list[str], rate: int, channel: str) -> list[np.ndarray]:
    """Samples of the measured windows (evenly spread over the recordings), silent ones left out."""
    blocks = []
    for info, start, stop in _windows(recordings, files):
        try:
            block = read_block(info, start, stop, rate, channel)
        except AudioReadError:
            continue
        if not block.is_silent:
            blocks.append(block.samples)
    return blocks


def _trace_band(blocks: list[np.ndarray], rate: int, n_fft: int, hop: int
                ) -> tuple[tuple[float, str], tuple[float, str]] | None:
    """Band where the loudest tenth of the frames stands BAND_SNR_DB above the quietest half (median levels)."""
    p = dataclasses.replace(_stft_params(rate), n_fft=n_fft, hop_length=hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    loud, quiet = LevelHistogram(freqs), LevelHistogram(freqs)
    for samples in blocks:
        spec = BlockSpectrogram(samples, p)
        frames = np.asarray(_evenly(range(spec.n_frames), 4000))
        db = spec.frames_db(frames)
        total = 10 * np.log10(np.mean(10 ** (db / 10), axis=0))
        hi, lo = np.percentile(total, [90, 50])
        loud.add(db[:, total >= hi])
        quiet.add(db[:, total <= lo])
    band = _band((loud, quiet), rate)
    if band is None:
        return None
    how = band[0][1].replace("calls' median level", "loudest 10 % of frames' median level").replace(
        "the noise's (between calls)", "the quietest half's")
    return (band[0][0], how), (band[1][0], how)


def _levels_of(blocks: list[np.ndarray], rate: int, calls: list[tuple[int, float, float]]
               ) -> tuple[LevelHistogram, ...] | None:
    """Level histograms (inside found calls, between them) of the measured windows."""
    p = _stft_params(rate)
    freqs = np.fft.rfftfreq(p.n_fft, 1.0 / rate)
    inside, outside = LevelHistogram(freqs), LevelHistogram(freqs)
    for k, samples in enumerate(blocks):
        spans = np.array([(on, off) for j, on, off in calls if j == k]).reshape(-1, 2)
        spec = BlockSpectrogram(samples, p)
        times = np.arange(spec.n_frames) * p.hop_length / rate
        in_call = ((times[:, None] >= spans[:, 0]) & (times[:, None] <= spans[:, 1])).any(axis=1)
        for hist, mask in ((inside, in_call), (outside, ~in_call)):
            idx = np.asarray(_evenly(list(np.flatnonzero(mask)), 4000))
            if len(idx):
                hist.add(spec.frames_db(idx))
    return (inside, outside) if inside.n_frames and outside.n_frames else None


def _calls_in(blocks: list[np.ndarray], rate: int, p: SegmentParams) -> list[tuple[int, float, float]]:
    """(window, onset_s, offset_s) of the calls ``p`` finds in the measured windows."""
    return [(k, on, off) for k, samples in enumerate(blocks) for on, off in find_calls(samples, rate, p).calls]


def _trace_levels(blocks: list[np.ndarray], rate: int, p: SegmentParams
                  ) -> tuple[tuple[float, str], ...] | None:
    """onset/offset/peak thresholds (dB above the noise floor) that split the trace's quiet and loud modes.

    The trace of a recording with calls has two modes, the noise near its floor and the calls well above;
    Otsu's threshold between them is where a call must reach (``peak_db``); a call ends two thirds of the
    way up (``offset_db``), so its quiet tail stays in, and starts half-way between the two (``onset_db``).
    """
    from skimage.filters import threshold_otsu

    rel = []
    for samples in blocks:
        trace = energy_trace(samples, rate, p)
        rel.append(trace - np.percentile(trace, p.noise_percentile))
    values = np.concatenate(rel)
    if values.max() - values.min() < 1.0:
        return None
    split = float(threshold_otsu(values))
    if split < MIN_SPLIT_DB:
        return None
    peak, offset = round(split, 1), round(2 * split / 3, 1)
    how = (f"Otsu's threshold between the quiet and loud modes of the energy trace ({split:.1f} dB above its "
           f"{p.noise_percentile:g}th percentile, {len(values)} frames of {len(blocks)} windows)")
    return ((round((peak + offset) / 2, 1), f"half-way between offset_db and peak_db; {how}"),
            (offset, f"2/3 of {how}"), (peak, how))
