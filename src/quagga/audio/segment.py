"""Find calls without annotations: the energy method of AVA and vocalseg.

The band power (fmin..fmax) of each STFT frame, in dB and smoothed, is compared with the noise floor of the
same stretch of audio (a low percentile of the trace). All thresholds are relative to that floor, so the
same recording at another gain segments alike. A call is a run of frames above ``floor + offset_db`` that
somewhere rises above ``floor + onset_db`` (hysteresis: it ends only when it falls below the lower
threshold, and its onset is where it first crossed that lower threshold, as AVA's th_1/th_2, so onsets
are not late). Calls closer than ``min_gap_s`` are merged, calls that never reach ``floor + peak_db`` are
dropped, too-short ones are dropped silently and too-long ones are returned as ``rejected`` with a reason.

Threshold crossings are interpolated linearly between frame centres (frame k is centred at
k * hop / sr with ``center=True``), so boundaries are where the trace crosses to a fraction of a hop. The
trace itself spreads an abrupt, loud onset by up to half the window plus half the smoothing (n_fft / 2 +
smooth_s / 2), so such calls come out wider by that much; raising offset_db narrows them. The floor assumes
calls fill less than (100 - noise_percentile) % of the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
from scipy.ndimage import uniform_filter1d

from quagga.params import SegmentParams

__all__ = ["Segments", "calls_from_trace", "energy_trace", "find_calls"]

REL_EPS = 1e-10  # power floor relative to the loudest frame (-100 dB): no log10(0), and exactly gain-invariant


@dataclass(frozen=True)
class Segments:
    """Calls found in one stretch of audio; times are seconds from its first sample."""

    calls: list[tuple[float, float]]  # (onset_s, offset_s), sorted
    rejected: list[tuple[float, float, str]]  # (onset_s, offset_s, reason), e.g. longer than max_duration_s
    noise_floor_db: float


def energy_trace(samples: np.ndarray, sample_rate: int, p: SegmentParams) -> np.ndarray:
    """Smoothed band power (dB) per STFT frame; frame k is centred at ``k * p.hop_length / sample_rate``.

    The STFT pads by reflection, so a block that starts mid-call (or a constant signal) shows no false
    step at its edges. The epsilon added before the log is relative to the loudest frame (all frequencies),
    so silence gives a flat trace and scaling the input only shifts the trace by a constant.
    """
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"energy_trace needs mono samples, got shape {y.shape}")
    if len(y) == 0:
        return np.zeros(0)
    if len(y) < p.n_fft:  # a snippet shorter than one window: pad it with silence so the STFT is defined
        y = np.pad(y, (0, p.n_fft - len(y)))
    spec = librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, window="hann", center=True, pad_mode="reflect")
    power = np.abs(spec).astype(np.float64) ** 2
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=p.n_fft)
    band = (freqs >= p.fmin) & (freqs <= p.fmax)
    band_power = power[band].sum(axis=0)
    eps = REL_EPS * max(float(power.sum(axis=0).max()), 1e-30)
    trace = 10.0 * np.log10(band_power + eps)
    width = 2 * int(p.smooth_s * sample_rate / p.hop_length / 2) + 1  # odd, so the average is centred on its frame
    if width > 1:
        trace = uniform_filter1d(trace, size=width, mode="nearest")
    return trace


def find_calls(samples: np.ndarray, sample_rate: int, p: SegmentParams) -> Segments:
    """Onsets and offsets of the calls in ``samples`` (see the module docstring for the method)."""
    trace = energy_trace(samples, sample_rate, p)
    duration = len(samples) / sample_rate
    return calls_from_trace(trace, sample_rate, p, duration)


def calls_from_trace(trace: np.ndarray, sample_rate: int, p: SegmentParams, duration_s: float) -> Segments:
    """The thresholding half of :func:`find_calls`, on a ready trace (lets a parameter search reuse traces)."""
    if len(trace) == 0:
        return Segments([], [], 0.0)
    floor = float(np.percentile(trace, p.noise_percentile))
    frame_s = p.hop_length / sample_rate
    low, high, peak = floor + p.offset_db, floor + p.onset_db, floor + p.peak_db

    # Runs of frames above the lower threshold: [starts[i], stops[i]) in frame indices.
    above = trace > low
    edges = np.diff(np.concatenate(([0], above.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return Segments([], [], floor)
    # Hysteresis: keep runs that rise above the onset threshold somewhere.
    run_max = np.maximum.reduceat(trace, starts)  # runs are contiguous and ordered, so reduceat over starts works
    hot = run_max > high
    starts, stops = starts[hot], stops[hot]
    if len(starts) == 0:
        return Segments([], [], floor)

    onsets = _crossing_times(trace, starts, low, frame_s, rising=True)
    offsets = _crossing_times(trace, stops - 1, low, frame_s, rising=False)
    offsets[stops == len(trace)] = duration_s  # a call still going at the end lasts to the last sample
    onsets, offsets = np.clip(onsets, 0.0, duration_s), np.clip(offsets, 0.0, duration_s)

    # Merge calls separated by less than min_gap_s.
    new_group = np.concatenate(([True], onsets[1:] - offsets[:-1] >= p.min_gap_s))
    first = np.flatnonzero(new_group)
    last = np.concatenate((first[1:], [len(starts)])) - 1
    onsets, offsets = onsets[first], offsets[last]
    f_start, f_stop = starts[first], stops[last]

    # Keep calls that reach the peak threshold, then sort them by duration into dropped / calls / rejected.
    call_max = np.array([trace[a:b].max() for a, b in zip(f_start, f_stop, strict=True)])
    keep = call_max >= peak
    onsets, offsets = onsets[keep], offsets[keep]
    durations = offsets - onsets
    calls: list[tuple[float, float]] = []
    rejected: list[tuple[float, float, str]] = []
    for on, off, dur in zip(onsets.tolist(), offsets.tolist(), durations.tolist(), strict=True):
        if dur < p.min_duration_s:
            continue
        if dur > p.max_duration_s:
            reason = f"segment lasts {dur:.3f} s, longer than max_duration_s = {p.max_duration_s:g} s"
            rejected.append((on, off, reason))
        else:
            calls.append((on, off))
    return Segments(calls, rejected, floor)


def _crossing_times(trace: np.ndarray, idx: np.ndarray, level: float, frame_s: float, rising: bool) -> np.ndarray:
    """Time where the trace crosses ``level`` next to frame ``idx`` (the first/last frame above it).

    Rising: between idx - 1 and idx; falling: between idx and idx + 1. Linear interpolation between frame
    centres; at the ends of the trace the crossing is taken at the first/last frame centre.
    """
    other = idx - 1 if rising else idx + 1
    valid = (other >= 0) & (other < len(trace))
    other = np.clip(other, 0, len(trace) - 1)
    inside, outside = trace[idx], trace[other]
    frac = np.where(valid, (inside - level) / np.maximum(inside - outside, 1e-12), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    pos = idx - frac if rising else idx + frac
    return pos * frame_s
