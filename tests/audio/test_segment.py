"""Energy segmentation: calls found at their times, at any gain, with the merge/drop/reject rules applied."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from quagga.audio.segment import Segments, calls_from_trace, energy_trace, find_calls
from quagga.audio.settings import SEGMENT_FALLBACK

SR = 16000
HOP_S = 64 / SR  # 4 ms
# A 16 ms window (as the default 512 samples at 32 kHz); the trace spreads an abrupt onset by up to half of it.
P = dataclasses.replace(SEGMENT_FALLBACK, n_fft=256, hop_length=64, fmin=500.0, fmax=7000.0, smooth_s=0.008)


def _recording(calls: list[tuple[float, float, float, float]], length_s: float = 3.0, seed: int = 0) -> np.ndarray:
    """White noise (0.003 rms) plus tone bursts (onset_s, duration_s, freq_hz, amplitude)."""
    rng = np.random.default_rng(seed)
    y = 0.003 * rng.standard_normal(int(length_s * SR))
    for onset, dur, freq, amp in calls:
        t = np.arange(int(round(dur * SR))) / SR
        i = int(round(onset * SR))
        y[i : i + len(t)] += amp * np.sin(2 * np.pi * freq * t)
    return y.astype(np.float32)


BURSTS = [(0.4, 0.08, 2000.0, 0.1), (1.1, 0.05, 3000.0, 0.15), (2.0, 0.15, 4000.0, 0.05)]


def test_tone_bursts_are_found_within_two_hops() -> None:
    found = find_calls(_recording(BURSTS), SR, P)
    assert isinstance(found, Segments)
    assert len(found.calls) == 3 and found.rejected == []
    for (onset, offset), (t_on, dur, _, _) in zip(found.calls, BURSTS, strict=True):
        assert abs(onset - t_on) <= 2 * HOP_S
        assert abs(offset - (t_on + dur)) <= 2 * HOP_S
    assert found.calls == sorted(found.calls)


def test_energy_trace_has_one_value_per_centred_frame_and_peaks_in_the_call() -> None:
    y = _recording(BURSTS)
    trace = energy_trace(y, SR, P)
    assert trace.shape == (1 + len(y) // P.hop_length,)
    times = np.arange(len(trace)) * HOP_S
    inside = (times > 1.11) & (times < 1.14)
    quiet = (times > 0.6) & (times < 1.0)
    assert trace[inside].min() - np.median(trace[quiet]) > 30  # a 0.15-amplitude tone over 0.003 noise


def test_same_segments_at_any_gain() -> None:
    y = _recording(BURSTS)
    loud, quiet = find_calls(y, SR, P), find_calls(np.float32(0.01) * y, SR, P)
    assert len(loud.calls) == 3
    np.testing.assert_allclose(quiet.calls, loud.calls, atol=1e-6)
    assert quiet.noise_floor_db - loud.noise_floor_db == pytest.approx(-40.0, abs=0.01)


def test_a_gap_shorter_than_min_gap_merges() -> None:
    y = _recording([(0.5, 0.06, 3000.0, 0.1), (0.59, 0.06, 3000.0, 0.1)])  # 30 ms of silence in between
    apart = find_calls(y, SR, dataclasses.replace(P, min_gap_s=0.005)).calls
    merged = find_calls(y, SR, dataclasses.replace(P, min_gap_s=0.03)).calls
    assert len(apart) == 2
    assert apart[1][0] - apart[0][1] == pytest.approx(0.017, abs=2 * HOP_S)  # narrowed by the trace's spread
    assert merged == [(apart[0][0], apart[1][1])]


def test_a_blip_shorter_than_min_duration_is_dropped_silently() -> None:
    y = _recording([(0.5, 0.005, 3000.0, 0.3), (1.5, 0.06, 3000.0, 0.1)])
    everything = find_calls(y, SR, dataclasses.replace(P, min_duration_s=0.005))
    assert len(everything.calls) == 2 and everything.calls[0][0] == pytest.approx(0.5, abs=3 * HOP_S)
    found = find_calls(y, SR, dataclasses.replace(P, min_duration_s=0.04))
    assert found.calls == everything.calls[1:]
    assert found.rejected == []


def test_a_call_longer_than_max_duration_is_rejected_with_a_reason() -> None:
    y = _recording([(0.5, 0.8, 3000.0, 0.1), (2.0, 0.1, 3000.0, 0.1)])
    found = find_calls(y, SR, dataclasses.replace(P, max_duration_s=0.5))
    assert [round(on, 1) for on, _ in found.calls] == [2.0]
    assert len(found.rejected) == 1
    onset, offset, reason = found.rejected[0]
    assert onset == pytest.approx(0.5, abs=2 * HOP_S) and offset == pytest.approx(1.3, abs=2 * HOP_S)
    assert "0.8" in reason and "max_duration_s = 0.5 s" in reason


@pytest.mark.parametrize("samples", [np.zeros(SR, np.float32), np.full(SR, 0.5, np.float32), np.zeros(10, np.float32),
                                     np.zeros(0, np.float32)], ids=["silence", "constant", "tiny", "empty"])
def test_silent_or_constant_input_has_no_calls_and_no_warnings(samples: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = find_calls(samples, SR, P)
    assert found.calls == [] and found.rejected == []
    assert np.isfinite(found.noise_floor_db)


def test_energy_below_fmin_is_ignored() -> None:
    low = _recording([(1.0, 0.1, 200.0, 0.5)])
    assert find_calls(low, SR, P).calls == []
    high = _recording([(1.0, 0.1, 2000.0, 0.5)])
    assert len(find_calls(high, SR, P).calls) == 1


# The thresholding on a hand-made trace: 10 ms frames, noise floor 0 dB.
TRACE_P = dataclasses.replace(SEGMENT_FALLBACK, hop_length=64, onset_db=12.0, offset_db=8.0, peak_db=20.0,
                              min_gap_s=0.0, min_duration_s=0.0, max_duration_s=10.0)
TRACE_SR = 6400


def _trace(bumps: dict[int, list[float]], n: int = 100) -> np.ndarray:
    trace = np.zeros(n)
    for start, values in bumps.items():
        trace[start : start + len(values)] = values
    return trace


def test_hysteresis_onset_is_where_the_lower_threshold_was_crossed() -> None:
    trace = _trace({
        30: [4, 10, 16, 22, 30, 30, 22, 16, 10, 4],  # a call
        60: [10, 10, 10],  # above offset_db only: never starts
        80: [15] * 5,  # starts, but never reaches peak_db
    })
    found = calls_from_trace(trace, TRACE_SR, TRACE_P, duration_s=1.0)
    assert found.noise_floor_db == 0.0
    assert len(found.calls) == 1
    onset, offset = found.calls[0]
    assert onset == pytest.approx((31 - 1 / 3) * 0.01)  # 8 dB crossed a third of the way from frame 30 to 31
    assert offset == pytest.approx((38 + 1 / 3) * 0.01)


def test_merging_and_the_ends_of_the_trace() -> None:
    trace = _trace({0: [30] * 5, 20: [30] * 5, 28: [30] * 5, 95: [30] * 5})  # gaps of 3 frames between 24 and 28
    found = calls_from_trace(trace, TRACE_SR, TRACE_P, duration_s=1.0)
    assert found.calls[0][0] == 0.0 and found.calls[-1][1] == 1.0  # still going at the end: lasts to the end
    assert len(found.calls) == 4
    merged = calls_from_trace(trace, TRACE_SR, dataclasses.replace(TRACE_P, min_gap_s=0.04), duration_s=1.0)
    assert len(merged.calls) == 3
    assert merged.calls[1] == pytest.approx((found.calls[1][0], found.calls[2][1]))
