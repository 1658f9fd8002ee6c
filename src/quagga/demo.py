"""Deterministic demo data with known labels: zebra-like calls in field noise and ice-core particles.

Audio is modelled on the plains-zebra repertoire. Five 60 s recordings (22050 Hz, mono, 16-bit) hold
about 55 calls each of four types, annotated in a multi-file Raven selection table:

- ``snort``: loud broadband exhalation (noise ~500-8000 Hz), fast attack, decaying, with nostril flutter;
- ``soft_snort``: quieter, shorter, lower and narrower noise band, soft attack;
- ``squeal``: harmonic frequency-modulated tone, rising-falling or falling;
- ``whinny``: a train of short harmonic pulses whose pitch descends across the train, with vibrato.

Images are modelled on insoluble particles in ice cores seen by flow microscopy: dark-ish particles on a
bright, unevenly lit field. ``dust`` grains are small solid angular polygons, ``pollen`` grains are round
with a dark rim and a granular or spiny surface, ``tephra`` shards are irregular with bright vesicles and
``fibre`` strands are long, thin and curved. There are single-particle crops (one per image, margin drawn
at random) with a label table and larger field images with a bounding-box table.

What makes it realistic: the background is pink/brown noise whose level drifts, with gusts of wind rumble
and unlabeled clicks and hoof thumps; particles sit on an illumination gradient with smooth blotches,
sensor noise and per-particle defocus blur; shapes are anti-aliased by supersampling.

What makes it hard: every call type varies in duration, pitch and loudness (about +-8 dB), so the SNR
varies by more than 15 dB and the duration ranges of snort/soft snort and squeal/whinny overlap; faint
soft snorts sit close to the noise floor. Particle sizes overlap (large dust vs small tephra, tephra vs
pollen), contrast varies, blur hides pollen texture and small tephra vesicles, and a tightly bent fibre
can look like a shard. The classes remain separable by shape and texture, so a good unsupervised
pipeline should recover them.

Covariates: ``audio/metadata.csv`` gives each recording's individual (A-C), day and site; the call-type
mix does not depend on them. ``images/particles/metadata.csv`` gives each particle's depth in core A
(0-100 m), like an ice-core stratigraphy: dust concentrates in a glacial section (40-65 m), tephra in a
thin ash layer, pollen and fibres are spread over the core. ``images/particles-core-b/`` is a held-back
second core (0-60 m, its own dusty section and ash layer) to project onto the model of core A: 30 new
particles of each class plus 20 air bubbles, a class core A never has (dark ring, bright centre).

All randomness flows from one ``numpy.random.Generator`` per modality, metadata table and core, spawned
from the seed: the same seed gives byte-identical files. Label tables are written last and atomically, so
an interrupted run never leaves a table that points at missing files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import signal
from skimage import draw, filters, io, transform

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
N_RECORDINGS = 5
RECORDING_S = 60.0
CALLS_PER_RECORDING = (50, 60)  # inclusive range
MIN_GAP_S = 0.25  # calls are <= 1.5 s: a whinny lasts <= 1.4 s, plus <= 60 ms of box padding
EDGE_S = 0.4  # no call closer than this to either end of a recording
RAVEN_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Begin File",
    "File Offset (s)",
    "call_type",
]

PARTICLES_PER_CLASS = 120
N_FIELDS = 6
FIELD_SHAPE = (768, 1024)  # rows, columns
PARTICLES_PER_FIELD = (25, 35)  # inclusive range
SUPERSAMPLE = 4  # shapes are drawn at 4x and averaged down: anti-aliased edges
COVERAGE_THRESHOLD = 0.5  # a pixel belongs to a particle's box when at least half of it is covered
MAX_BLUR_SIGMA = 1.5
MIN_PEAK_ABSORBANCE = 0.15  # the imager's trigger: the darkest pixel is at least 15 % below the background

INDIVIDUALS = ("A", "B", "C")
SITES = ("north", "south")
SEASON_START = date(2024, 3, 4)
SEASON_DAYS = 14
CORE_B_PER_CLASS = 30
CORE_B_NOVEL = {"bubble": 20}  # a class the reference core never has: the projection should flag it as novel
LAYER_SHARE = 0.9  # share of a layered class inside its layer; the rest is scattered over the rest of the core


# ----------------------------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class Call:
    """One synthesized call at unit RMS, with the frequency band an annotator would box."""

    label: str
    samples: np.ndarray
    low_hz: float
    high_hz: float


def _seconds(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2))


def _band_noise(rng: np.random.Generator, n: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Band-limited noise at unit RMS; 50 ms extra are filtered and dropped so the onset has no transient."""
    lead = int(0.05 * SAMPLE_RATE)
    sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return _unit_rms(signal.sosfilt(sos, rng.standard_normal(n + lead))[lead:])


def _ramps(n: int, attack_s: float, release_s: float) -> np.ndarray:
    """Raised-cosine on/off ramps: no clicks at call edges."""
    t = _seconds(n)
    on = np.clip(t / attack_s, 0, 1)
    off = np.clip((t[-1] - t) / release_s, 0, 1)
    return np.sin(0.5 * np.pi * on) ** 2 * np.sin(0.5 * np.pi * off) ** 2


def _harmonic_tone(rng: np.random.Generator, f0: np.ndarray, n_harmonics: int) -> np.ndarray:
    """Harmonics of a time-varying f0 with a random spectral roll-off; none above 0.45 x sample rate."""
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    rolloff = rng.uniform(0.7, 1.5)
    tone = np.zeros_like(f0)
    for k in range(1, n_harmonics + 1):
        audible = f0 * k < 0.45 * SAMPLE_RATE
        tone += audible * k**-rolloff * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return tone


def _snort(rng: np.random.Generator) -> Call:
    """Forceful exhalation through the nostrils: loud broadband burst, fast attack, fluttering decay."""
    n = int(rng.uniform(0.2, 0.6) * SAMPLE_RATE)
    low, high = rng.uniform(400, 700), rng.uniform(6000, 9000)
    t = _seconds(n)
    decay = np.exp(-t / (t[-1] * rng.uniform(0.3, 0.7)))
    flutter = 1 + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(20, 45) * t)
    envelope = _ramps(n, rng.uniform(0.004, 0.015), 0.02) * decay * flutter
    return Call("snort", _band_noise(rng, n, low, high) * envelope, low, high)


def _soft_snort(rng: np.random.Generator) -> Call:
    """Relaxed exhalation: quieter (set by its level range), shorter, narrower low band, soft attack."""
    n = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
    low, high = rng.uniform(250, 400), rng.uniform(2200, 3500)
    duration = n / SAMPLE_RATE
    envelope = _ramps(n, duration * rng.uniform(0.25, 0.45), duration * rng.uniform(0.3, 0.5))
    return Call("soft_snort", _band_noise(rng, n, low, high) * envelope, low, high)


def _squeal(rng: np.random.Generator) -> Call:
    """High-pitched harmonic squeal: rising-falling or falling f0 contour, 3-6 decaying harmonics."""
    n = int(rng.uniform(0.4, 1.2) * SAMPLE_RATE)
    x = np.linspace(0, 1, n)
    peak = rng.uniform(1000, 1600)
    end = peak * rng.uniform(0.6, 0.85)
    if rng.random() < 0.6:  # rising-falling: cosine rise to a peak, then a cosine fall
        start, apex = peak * rng.uniform(0.7, 0.92), rng.uniform(0.2, 0.5)
        rise = start + (peak - start) * 0.5 * (1 - np.cos(np.pi * np.clip(x / apex, 0, 1)))
        fall = peak + (end - peak) * 0.5 * (1 - np.cos(np.pi * np.clip((x - apex) / (1 - apex), 0, 1)))
        f0 = np.where(x < apex, rise, fall)
    else:
        f0 = peak + (end - peak) * x ** rng.uniform(0.6, 1.6)
    f0 *= 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 9) * _seconds(n))  # slight jitter
    n_harmonics = int(rng.integers(3, 7))
    tone = _harmonic_tone(rng, f0, n_harmonics) + 0.05 * rng.standard_normal(n)  # a little breath noise
    envelope = _ramps(n, rng.uniform(0.02, 0.06), rng.uniform(0.05, 0.15))
    return Call("squeal", tone * envelope, 0.9 * f0.min(), min(1.1 * n_harmonics * f0.max(), 10000))


def _whinny(rng: np.random.Generator) -> Call:
    """Whinny: 4-10 short harmonic pulses, pitch descending across the train, vibrato, fading amplitude."""
    period = rng.uniform(0.09, 0.18)
    n_pulses = int(rng.integers(max(4, int(np.ceil(0.6 / period))), min(10, int(1.4 / period)) + 1))
    start_f0 = rng.uniform(550, 800)
    end_f0 = start_f0 * rng.uniform(0.55, 0.8)
    n_harmonics = int(rng.integers(4, 8))
    vibrato_hz, vibrato_depth = rng.uniform(5, 9), rng.uniform(0.015, 0.04)
    pitches = np.linspace(start_f0, end_f0, n_pulses)
    pulses = []
    for i, pitch in enumerate(pitches):
        n_on = int(period * rng.uniform(0.55, 0.8) * SAMPLE_RATE)
        n_off = int(period * SAMPLE_RATE) - n_on if i < n_pulses - 1 else 0
        t = _seconds(n_on) + i * period
        f0 = pitch * (1 + vibrato_depth * np.sin(2 * np.pi * vibrato_hz * t))
        loudness = rng.uniform(0.7, 1.0) * (1 - 0.4 * i / n_pulses)
        pulse = loudness * _harmonic_tone(rng, f0, n_harmonics) * _ramps(n_on, 0.012, 0.02)
        pulses.extend([pulse, np.zeros(n_off)])
    return Call("whinny", np.concatenate(pulses), 0.9 * end_f0, min(1.1 * n_harmonics * start_f0, 10000))


@dataclass(frozen=True)
class CallType:
    """How a call type is made, how common it is and how loud (RMS over the call) it may be."""

    synthesize: Callable[[np.random.Generator], Call]
    share: float  # relative frequency in the repertoire
    level_dbfs: tuple[float, float]


CALL_TYPES = {
    "snort": CallType(_snort, 0.3, (-35.0, -19.0)),
    "soft_snort": CallType(_soft_snort, 0.25, (-46.0, -32.0)),
    "squeal": CallType(_squeal, 0.22, (-34.0, -18.0)),
    "whinny": CallType(_whinny, 0.23, (-34.0, -18.0)),
}


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent above 20 Hz (1: pink, 2: brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= np.where(freqs > 20, np.maximum(freqs, 1) ** (-exponent / 2), 0)
    return _unit_rms(np.fft.irfft(spectrum, n))


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Field noise: pink + brown noise whose level drifts by a few dB, plus gusts of low wind rumble."""
    t = _seconds(n)
    depth_db, period_s = rng.uniform(0.5, 1.8, (3, 1)), rng.uniform(8, 40, (3, 1))
    drift_db = (depth_db * np.sin(2 * np.pi * t / period_s + rng.uniform(0, 7, (3, 1)))).sum(axis=0)
    level = 10 ** ((rng.uniform(-55, -50) + drift_db) / 20)
    noise = _unit_rms(_coloured_noise(rng, n, 1.0) + 0.6 * _coloured_noise(rng, n, 2.0))
    sos = signal.butter(2, rng.uniform(120, 300), btype="lowpass", fs=SAMPLE_RATE, output="sos")
    rumble = _unit_rms(signal.sosfilt(sos, rng.standard_normal(n)))
    gusts = np.zeros(n)
    for _ in range(rng.integers(2, 6)):
        length = int(rng.uniform(2, 8) * SAMPLE_RATE)
        start = int(rng.integers(0, n - length))
        gusts[start : start + length] += rng.uniform(0.5, 1.5) * np.hanning(length)
    return level * (noise + rumble * gusts)


def _transient(rng: np.random.Generator) -> np.ndarray:
    """Unlabeled distractor: a sharp click (twig, insect) or a low hoof thump."""
    if rng.random() < 0.5:
        n = int(rng.uniform(0.002, 0.006) * SAMPLE_RATE)
        burst = rng.standard_normal(n) * np.exp(-_seconds(n) / rng.uniform(0.0005, 0.002))
    else:
        n = int(rng.uniform(0.03, 0.08) * SAMPLE_RATE)
        decay = np.exp(-_seconds(n) / rng.uniform(0.01, 0.03))
        burst = _band_noise(rng, n, 40, rng.uniform(200, 500)) * decay
    return 10 ** (rng.uniform(-42, -26) / 20) * burst / np.abs(burst).max()


def _schedule(rng: np.random.Generator, lengths_s: np.ndarray) -> np.ndarray:
    """Onsets of back-to-back annotated calls: random gaps >= MIN_GAP_S, calls drawn in order until full."""
    fits = np.cumsum(lengths_s + MIN_GAP_S) <= RECORDING_S - 2 * EDGE_S + MIN_GAP_S
    lengths_s = lengths_s[fits]
    slack = RECORDING_S - 2 * EDGE_S - lengths_s.sum() - MIN_GAP_S * (len(lengths_s) - 1)
    extra = np.cumsum(rng.dirichlet(np.ones(len(lengths_s) + 1))[:-1] * slack)  # last share: after the end
    before = np.concatenate([[0.0], np.cumsum(lengths_s)[:-1]])
    return EDGE_S + MIN_GAP_S * np.arange(len(lengths_s)) + before + extra


def _recording(rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """One recording and its calls in time order: file offset, duration, frequency band and label."""
    n = int(RECORDING_S * SAMPLE_RATE)
    types = list(CALL_TYPES.values())
    shares = np.array([t.share for t in types])
    n_calls = int(rng.integers(CALLS_PER_RECORDING[0], CALLS_PER_RECORDING[1] + 1))
    calls = [types[i].synthesize(rng) for i in rng.choice(len(types), n_calls, p=shares / shares.sum())]
    pads = rng.uniform(0.005, 0.03, size=(n_calls, 2))  # annotators box a little generously
    lengths = np.array([len(c.samples) / SAMPLE_RATE for c in calls]) + pads.sum(axis=1)
    onsets = _schedule(rng, lengths)
    calls, pads, lengths = calls[: len(onsets)], pads[: len(onsets)], lengths[: len(onsets)]
    audio = _background(rng, n)
    for call, pad, onset in zip(calls, pads, onsets, strict=True):
        low_db, high_db = CALL_TYPES[call.label].level_dbfs
        start = int(round((onset + pad[0]) * SAMPLE_RATE))
        audio[start : start + len(call.samples)] += 10 ** (rng.uniform(low_db, high_db) / 20) * call.samples
    placed, n_distractors = 0, rng.integers(6, 13)
    while placed < n_distractors:  # distractors stay out of calls and the 0.3 s before them
        at = rng.uniform(0.1, RECORDING_S - 0.2)
        if not np.any((onsets - 0.3 <= at) & (at <= onsets + lengths + 0.05)):
            burst = _transient(rng)
            start = int(at * SAMPLE_RATE)
            audio[start : start + len(burst)] += burst
            placed += 1
    if np.abs(audio).max() >= 1:
        log.warning("demo recording clips (peak %.2f)", np.abs(audio).max())
    table = pd.DataFrame({"offset": onsets, "duration": lengths, "label": [c.label for c in calls]})
    table["low"], table["high"] = [c.low_hz for c in calls], [c.high_hz for c in calls]
    return np.clip(audio, -1, 1), table


def _raven_table(calls: pd.DataFrame) -> pd.DataFrame:
    """Raven multi-file selection table: Begin/End Time run on across the files (file k starts at 60 k s)."""
    begin = calls["file_index"] * RECORDING_S + calls["offset"]
    return pd.DataFrame(
        {
            "Selection": np.arange(1, len(calls) + 1),
            "View": "Spectrogram 1",
            "Channel": 1,
            "Begin Time (s)": begin.map("{:.4f}".format),
            "End Time (s)": (begin + calls["duration"]).map("{:.4f}".format),
            "Low Freq (Hz)": calls["low"].map("{:.1f}".format),
            "High Freq (Hz)": calls["high"].map("{:.1f}".format),
            "Begin File": calls["file"],
            "File Offset (s)": calls["offset"].map("{:.4f}".format),
            "call_type": calls["label"],
        },
        columns=RAVEN_COLUMNS,
    )


def _recording_name(k: int) -> str:
    return f"rec_{k:02d}.wav"


def write_audio(out_dir: Path, rng: np.random.Generator) -> int:
    """Write rec_00.wav .. and the Raven selection table (cumulative times across files); return #calls."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = []
    for k in range(N_RECORDINGS):
        name = _recording_name(k)
        audio, calls = _recording(rng)
        sf.write(out_dir / name, audio, SAMPLE_RATE, subtype="PCM_16")
        tables.append(calls.assign(file=name, file_index=k))
    calls = pd.concat(tables, ignore_index=True)
    _write_table(_raven_table(calls), out_dir / "selections.txt", sep="\t")
    log.info("wrote %d recordings with %d calls to %s", N_RECORDINGS, len(calls), out_dir)
    return len(calls)


def write_recording_metadata(out_dir: Path, rng: np.random.Generator) -> int:
    """Write metadata.csv (file, individual, day, site): covariates to group and compare calls by.

    They are assigned to the finished recordings, so the call-type mix does not depend on them (drawing it
    per individual would change the audio): a covariate analysis of the demo should find no effect.
    """
    days = np.sort(rng.choice(SEASON_DAYS, N_RECORDINGS, replace=False))
    table = pd.DataFrame(
        {
            "file": [_recording_name(k) for k in range(N_RECORDINGS)],
            "individual": rng.permutation(np.resize(INDIVIDUALS, N_RECORDINGS)),
            "day": [(SEASON_START + timedelta(days=int(d))).isoformat() for d in days],
            "site": rng.permutation(np.resize(SITES, N_RECORDINGS)),
        }
    )
    _write_table(table, out_dir / "metadata.csv")
    log.info("wrote the individual, day and site of %d recordings to %s", len(table), out_dir)
    return len(table)


# ---------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Particle:
    """A particle patch before blur: absorbance (0 = transparent, 1 = opaque) and area coverage (0-1)."""

    label: str
    absorbance: np.ndarray
    coverage: np.ndarray


class _Sketch:
    """Supersampled square drawing surface; coordinates are output pixels relative to the patch centre."""

    def __init__(self, label: str, radius_px: float) -> None:
        self.label = label
        self.half = int(np.ceil(radius_px)) + 2
        size = 2 * self.half * SUPERSAMPLE
        self.absorbance = np.zeros((size, size))
        self.body = np.zeros((size, size))

    def _fill(self, rr: np.ndarray, cc: np.ndarray, value: float, body: bool) -> None:
        self.absorbance[rr, cc] = value
        if body:
            self.body[rr, cc] = 1.0

    def _hi(self, v: np.ndarray | float) -> np.ndarray:
        return (np.asarray(v, dtype=float) + self.half) * SUPERSAMPLE - 0.5

    def polygon(self, y: np.ndarray, x: np.ndarray, value: float, body: bool = True) -> None:
        self._fill(*draw.polygon(self._hi(y), self._hi(x), self.body.shape), value, body)

    def ellipse(self, y: float, x: float, ry: float, rx: float, angle: float, value: float) -> None:
        hi_r = [max(r * SUPERSAMPLE, 1.0) for r in (ry, rx)]
        rr, cc = draw.ellipse(self._hi(y), self._hi(x), *hi_r, shape=self.body.shape, rotation=angle)
        self._fill(rr, cc, value, True)

    def inside(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Which points lie on the particle body drawn so far."""
        rows = np.clip(self._hi(y).round().astype(int), 0, self.body.shape[0] - 1)
        cols = np.clip(self._hi(x).round().astype(int), 0, self.body.shape[1] - 1)
        return self.body[rows, cols] > 0

    def turn(self, degrees: float) -> None:
        """Rotate what was drawn (for shapes drawn axis-aligned)."""
        self.absorbance = transform.rotate(self.absorbance, degrees, order=1)
        self.body = transform.rotate(self.body, degrees, order=1)

    def particle(self) -> Particle:
        """Average down to output pixels and trim empty borders (keeping 2 px for the blur)."""
        factors = (SUPERSAMPLE, SUPERSAMPLE)
        absorbance = transform.downscale_local_mean(self.absorbance, factors)
        coverage = transform.downscale_local_mean(self.body, factors)
        rows, cols = np.nonzero(coverage > 0)
        r0, c0 = max(rows.min() - 2, 0), max(cols.min() - 2, 0)
        crop = (slice(r0, rows.max() + 3), slice(c0, cols.max() + 3))
        return Particle(self.label, absorbance[crop], coverage[crop])


def _irregular_polygon(
    rng: np.random.Generator, n: int, radius: float, min_radius: float, elongation: float
) -> tuple[np.ndarray, np.ndarray]:
    """Star-shaped polygon with random vertex angles and radii, stretched and rotated at random."""
    angles = 2 * np.pi * (np.arange(n) + rng.uniform(-0.4, 0.4, n)) / n  # irregular, never degenerate
    radii = radius * rng.uniform(min_radius, 1.0, n)
    y, x = radii * np.sin(angles) / elongation, radii * np.cos(angles)
    turn = rng.uniform(0, 2 * np.pi)
    return x * np.sin(turn) + y * np.cos(turn), x * np.cos(turn) - y * np.sin(turn)


def _dust(rng: np.random.Generator) -> Particle:
    """Mineral dust: a small, solid, dark angular grain (4-12 px)."""
    radius = rng.uniform(2, 6)
    sketch = _Sketch("dust", radius)
    y, x = _irregular_polygon(rng, int(rng.integers(3, 8)), radius, 0.55, rng.uniform(1.0, 1.8))
    sketch.polygon(y, x, rng.uniform(0.7, 0.95))
    return sketch.particle()


def _pollen(rng: np.random.Generator) -> Particle:
    """Pollen: round grain (20-40 px) with a dark exine rim, lighter interior, granules or spines."""
    radius = rng.uniform(10, 20)
    ry = radius * rng.uniform(0.85, 1.0)
    rim, rim_dark, inner = rng.uniform(1.5, 3.5), rng.uniform(0.5, 0.75), rng.uniform(0.12, 0.3)
    sketch = _Sketch("pollen", radius + 3)
    if rng.random() < 0.5:  # echinate: short spines around the rim
        for theta in np.linspace(0, 2 * np.pi, int(rng.integers(14, 30)), endpoint=False):
            length, width = rng.uniform(1.5, 3), rng.uniform(0.04, 0.08)
            ends = np.array([theta - width, theta, theta + width])
            reach = np.array([radius - 1, radius + length, radius - 1])
            sketch.polygon(reach * np.sin(ends) * ry / radius, reach * np.cos(ends), rim_dark)
    sketch.ellipse(0, 0, ry, radius, 0, rim_dark)
    sketch.ellipse(0, 0, ry - rim, radius - rim, 0, inner)
    for _ in range(int(rng.integers(12, 40))):  # granules on the surface
        r, theta = (radius - rim) * np.sqrt(rng.uniform(0, 0.8)), rng.uniform(0, 2 * np.pi)
        size = rng.uniform(0.6, 1.6)
        granule = inner + rng.uniform(0.1, 0.3)
        sketch.ellipse(r * np.sin(theta) * ry / radius, r * np.cos(theta), size, size, 0, granule)
    sketch.turn(rng.uniform(0, 360))
    return sketch.particle()


def _tephra(rng: np.random.Generator) -> Particle:
    """Volcanic glass shard (18-45 px): irregular, partly concave, translucent, dark edge, bright vesicles."""
    radius = rng.uniform(9, 22.5)
    sketch = _Sketch("tephra", radius)
    y, x = _irregular_polygon(rng, int(rng.integers(4, 9)), radius, 0.35, rng.uniform(1.0, 2.2))
    glass = rng.uniform(0.2, 0.4)
    sketch.polygon(y, x, glass + rng.uniform(0.2, 0.35))  # refraction darkens the edge
    inset = 1 - 1.5 / radius
    sketch.polygon(y * inset, x * inset, glass)
    stretch, along = rng.uniform(1.0, 3.0), rng.uniform(0, np.pi)  # vesicles share one stretch direction
    cy, cx = rng.uniform(-radius, radius, size=(2, 60)) * inset
    inside = sketch.inside(cy, cx)
    for vy, vx in list(zip(cy[inside], cx[inside], strict=True))[: int(rng.integers(3, 4 + radius / 1.5))]:
        r = rng.uniform(1.2, max(1.5, 0.22 * radius))
        sketch.ellipse(vy, vx, r / stretch + 0.8, r + 0.8, along, min(glass + 0.3, 0.95))  # dark wall
        sketch.ellipse(vy, vx, r / stretch, r, along, rng.uniform(-0.08, 0.05))  # bright bubble
    return sketch.particle()


def _fibre(rng: np.random.Generator) -> Particle:
    """Fibre: a long (40-120 px), thin (2-4 px), slightly curved strand, often with a lighter lumen."""
    length, width = rng.uniform(40, 120), rng.uniform(2, 4)
    s = np.linspace(0, length, 40)
    bend = rng.uniform(-0.9, 0.9) * s / length
    wiggle = rng.uniform(0, 0.15) * np.sin(2 * np.pi * s / rng.uniform(20, 60) + rng.uniform(0, 2 * np.pi))
    heading = rng.uniform(0, 2 * np.pi) + bend + wiggle
    step = length / (len(s) - 1)
    y, x = np.cumsum(step * np.sin(heading)), np.cumsum(step * np.cos(heading))
    y, x = y - (y.min() + y.max()) / 2, x - (x.min() + x.max()) / 2
    sketch = _Sketch("fibre", max(np.abs(y).max(), np.abs(x).max()) + width)
    half = width / 2 * (1 + 0.15 * np.sin(2 * np.pi * s / rng.uniform(15, 50)))
    dark = rng.uniform(0.3, 0.7)
    side = np.array([1, 1, -1, -1])  # left edge forward, right edge back
    for w, value in [(half, dark), (half * 0.35, dark * rng.uniform(0.5, 1.0))]:
        ny, nx = np.cos(heading) * w, -np.sin(heading) * w
        for i in range(len(s) - 1):  # one quad per segment: small polygons draw much faster than one long one
            corner = [i, i + 1, i + 1, i]
            sketch.polygon(y[corner] + side * ny[corner], x[corner] + side * nx[corner], value)
    return sketch.particle()


def _bubble(rng: np.random.Generator) -> Particle:
    """Air bubble (12-30 px): a smooth circle whose thick dark rim bends light away and whose centre focuses
    it, brighter than the background; no texture, unlike pollen."""
    radius = rng.uniform(6, 15)
    squash = rng.uniform(0.92, 1.0)  # nearly round
    centre = radius * rng.uniform(0.45, 0.65)
    sketch = _Sketch("bubble", radius)
    sketch.ellipse(0, 0, radius * squash, radius, 0, rng.uniform(0.6, 0.85))
    sketch.ellipse(0, 0, (radius + centre) / 2 * squash, (radius + centre) / 2, 0, rng.uniform(0.35, 0.5))
    sketch.ellipse(0, 0, centre * squash, centre, 0, -0.1)
    sketch.turn(rng.uniform(0, 360))
    return sketch.particle()


PARTICLE_TYPES: dict[str, Callable[[np.random.Generator], Particle]] = {
    "dust": _dust,
    "pollen": _pollen,
    "tephra": _tephra,
    "fibre": _fibre,
}
# Only in the held-back core B; not in PARTICLE_TYPES, from which the fields draw (their files stay as they were).
NOVEL_PARTICLE_TYPES: dict[str, Callable[[np.random.Generator], Particle]] = {"bubble": _bubble}


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Bright, uneven field: brightness level, a linear gradient (per pixel) and smooth blotches."""
    rows, cols = np.ogrid[0 : shape[0], 0 : shape[1]]
    rows, cols = rows - shape[0] / 2, cols - shape[1] / 2
    slope_y, slope_x = rng.uniform(-0.08, 0.08, 2) / 1000
    blotches = sum(  # a few long-wavelength ripples (200-800 px), so small crops see a near-flat field
        rng.uniform(0, 0.012) * np.cos(2 * np.pi * (ky * rows + kx * cols) + rng.uniform(0, 2 * np.pi))
        for ky, kx in rng.uniform(-1 / 200, 1 / 200, size=(4, 2))
    )
    return rng.uniform(0.72, 0.9) * (1 + slope_y * rows + slope_x * cols + blotches)


def _paste(rng: np.random.Generator, canvas: np.ndarray, particle: Particle, top: int, left: int) -> None:
    """Add a particle's absorbance to the canvas with a random contrast and defocus blur (sigma 0-1.5).

    A flow imager only captures particles that cross its contrast trigger, so a faint, blurred grain is
    brought up to ``MIN_PEAK_ABSORBANCE`` rather than left invisible in the noise.
    """
    pad = 4
    patch = np.pad(particle.absorbance * rng.uniform(0.7, 1.15), pad)
    patch = filters.gaussian(patch, sigma=rng.uniform(0, MAX_BLUR_SIGMA))
    patch *= max(1.0, MIN_PEAK_ABSORBANCE / patch.max())
    top, left = top - pad, left - pad
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + patch.shape[0], canvas.shape[0]), min(left + patch.shape[1], canvas.shape[1])
    canvas[r0:r1, c0:c1] += patch[r0 - top : r1 - top, c0 - left : c1 - left]


def _expose(rng: np.random.Generator, absorbance: np.ndarray) -> np.ndarray:
    """Transmitted light on an uneven field plus sensor noise, as 8-bit grayscale."""
    light = _illumination(rng, absorbance.shape) * (1 - np.clip(absorbance, -0.1, 1))
    light += rng.normal(0, rng.uniform(0.006, 0.02), absorbance.shape)
    return np.clip(np.round(light * 255), 0, 255).astype(np.uint8)


def _box(particle: Particle) -> tuple[int, int, int, int]:
    """Tight box (row0, col0, row1, col1; ends exclusive) of the pixels at least half covered."""
    rows, cols = np.nonzero(particle.coverage >= min(COVERAGE_THRESHOLD, particle.coverage.max()))
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def write_particles(out_dir: Path, rng: np.random.Generator, counts: Mapping[str, int]) -> int:
    """Write ``counts[label]`` cropped images per class (<label>_<nnnn>.png) and labels.csv; return #particles."""
    out_dir.mkdir(parents=True, exist_ok=True)
    makers = PARTICLE_TYPES | NOVEL_PARTICLE_TYPES
    rows = []
    for label, n in counts.items():
        for i in range(n):
            particle = makers[label](rng)
            r0, c0, r1, c1 = _box(particle)
            top, bottom, left, right = rng.integers(4, 17, size=4)  # random margin around the box
            canvas = np.zeros((r1 - r0 + top + bottom, c1 - c0 + left + right))
            _paste(rng, canvas, particle, top - r0, left - c0)
            name = f"{label}_{i:04d}.png"
            io.imsave(out_dir / name, _expose(rng, canvas), check_contrast=False)
            rows.append({"file": name, "label": label})
    _write_table(pd.DataFrame(rows), out_dir / "labels.csv")
    log.info("wrote %d single-particle images to %s", len(rows), out_dir)
    return len(rows)


@dataclass(frozen=True)
class Core:
    """An ice core's stratigraphy: where a class concentrates, so that the class mix changes with depth."""

    name: str
    depth_m: tuple[float, float]  # top, bottom
    layers: dict[str, tuple[float, float]]  # label -> (top, bottom) of the section holding LAYER_SHARE of it


# Dust-rich glacial sections (a drier, windier climate) and a thin volcanic ash layer, which lies higher in the
# shorter core B; classes without a layer are spread evenly over the core.
CORE_A = Core("A", (0.0, 100.0), {"dust": (40.0, 65.0), "tephra": (28.2, 28.7)})
CORE_B = Core("B", (0.0, 60.0), {"dust": (22.0, 36.0), "tephra": (15.4, 15.8)})


def _depths(rng: np.random.Generator, labels: np.ndarray, core: Core) -> np.ndarray:
    """A depth per particle: a layered class mostly inside its layer, the rest uniform outside it."""
    depths = np.empty(len(labels))
    top, bottom = core.depth_m
    for label in dict.fromkeys(labels):
        at = np.flatnonzero(labels == label)
        low, high = core.layers.get(label, (top, top))  # no layer: an empty one at the top
        n_inside = round(LAYER_SHARE * len(at)) if label in core.layers else 0
        outside = rng.uniform(top, bottom - (high - low), len(at) - n_inside)
        outside += (outside >= low) * (high - low)  # skip over the layer
        depths[rng.permutation(at)] = np.concatenate([rng.uniform(low, high, n_inside), outside])
    return depths


def write_depths(folder: Path, core: Core, rng: np.random.Generator) -> int:
    """Write metadata.csv (file, core, depth_m) for the particles in ``folder``'s labels.csv; return #rows."""
    labels = pd.read_csv(folder / "labels.csv")
    depths = _depths(rng, labels["label"].to_numpy(), core)
    table = pd.DataFrame({"file": labels["file"], "core": core.name, "depth_m": [f"{d:.2f}" for d in depths]})
    _write_table(table, folder / "metadata.csv")
    log.info("wrote the depths of %d particles in core %s to %s", len(table), core.name, folder)
    return len(table)


def _field(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, int, int, int, int]]]:
    """One field of mixed particles, boxes >= 6 px apart; each box as (label, x0, y0, x1, y1)."""
    canvas = np.zeros(FIELD_SHAPE)
    taken = np.zeros(FIELD_SHAPE, dtype=bool)
    labels = list(PARTICLE_TYPES)
    boxes = []
    for _ in range(int(rng.integers(PARTICLES_PER_FIELD[0], PARTICLES_PER_FIELD[1] + 1))):
        particle = PARTICLE_TYPES[labels[rng.integers(len(labels))]](rng)
        r0, c0, r1, c1 = _box(particle)
        for _attempt in range(100):
            top = int(rng.integers(6, FIELD_SHAPE[0] - (r1 - r0) - 6))
            left = int(rng.integers(6, FIELD_SHAPE[1] - (c1 - c0) - 6))
            footprint = (slice(top - 6, top + r1 - r0 + 6), slice(left - 6, left + c1 - c0 + 6))
            if not taken[footprint].any():
                taken[footprint] = True
                _paste(rng, canvas, particle, top - r0, left - c0)
                boxes.append((particle.label, left, top, left + c1 - c0, top + r1 - r0))
                break
    return _expose(rng, canvas), boxes


def write_fields(out_dir: Path, rng: np.random.Generator) -> int:
    """Write field_00.png .. with mixed particles and boxes.csv; return #particles in all fields."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(N_FIELDS):
        name = f"field_{k:02d}.png"
        image, boxes = _field(rng)
        io.imsave(out_dir / name, image, check_contrast=False)
        rows += [(name, *box) for box in boxes]
    table = pd.DataFrame(rows, columns=["image", "label", "xmin", "ymin", "xmax", "ymax"])
    _write_table(table, out_dir / "boxes.csv")
    log.info("wrote %d field images with %d particles to %s", N_FIELDS, len(rows), out_dir)
    return len(rows)


# ------------------------------------------------------------------------------------------------- all


def _write_table(table: pd.DataFrame, path: Path, sep: str = ",") -> None:
    """Write a table atomically: a reader never sees half a table."""
    partial = path.with_name(path.name + ".partial")
    table.to_csv(partial, sep=sep, index=False, lineterminator="\n")
    os.replace(partial, path)


def generate_demo_data(out_dir: str | Path, seed: int = 0) -> dict[str, int]:
    """Write the demo audio and images with their label and metadata tables under ``out_dir``; return counts.

    The same seed gives byte-identical files. Each modality, metadata table and core draws from its own
    generator spawned from ``seed``, so changing how one uses randomness leaves the others' files unchanged.
    Spawning more children leaves the first ones as they were: new parts are appended at the end.
    """
    out = Path(out_dir)
    audio_rng, particle_rng, field_rng, recording_rng, depth_rng, core_b_rng = np.random.default_rng(seed).spawn(6)
    particles, core_b = out / "images" / "particles", out / "images" / "particles-core-b"
    counts = {
        "calls": write_audio(out / "audio", audio_rng),
        "particles": write_particles(particles, particle_rng, dict.fromkeys(PARTICLE_TYPES, PARTICLES_PER_CLASS)),
        "field_particles": write_fields(out / "images" / "fields", field_rng),
        "particles_core_b": write_particles(
            core_b, core_b_rng, dict.fromkeys(PARTICLE_TYPES, CORE_B_PER_CLASS) | CORE_B_NOVEL
        ),
    }
    write_recording_metadata(out / "audio", recording_rng)
    write_depths(particles, CORE_A, depth_rng)
    write_depths(core_b, CORE_B, core_b_rng)
    return counts
