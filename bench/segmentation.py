"""Energy segmentation against the human syllable boundaries of real Bengalese finch song (Koumura Bird0).

    .venv/bin/python bench/segmentation.py [--data ../shared/data/koumura-bird0] [--files 135] [--onset-db 12 ...]
    .venv/bin/python bench/segmentation.py --grid          # parameter search on the first 40 files only
    .venv/bin/python bench/segmentation.py --auto          # the settings `auto` finds from the recordings

The SegmentParams flags default to KOUMURA_BIRD0: the fallbacks of ``auto`` plus the values the grid chose on
files 0-39 (the full-data figures are therefore mostly on files the search did not see). ``--auto`` instead
uses what ``segment: auto`` (the workflow's default) finds from all the recordings, without labels. "seconds" is the
time of find_calls alone (reading the audio is not counted).

Detected and human segments are matched one to one, greedily by the smallest |onset diff| + |offset diff|;
a pair matches at tolerance t if both |onset diff| <= t and |offset diff| <= t (onset-only scores ask only
the first). Scores are given for two scopes: "all" (every detection) and "bouts" (only detections that
overlap an annotated song bout, first onset to last offset of a sequence +- 50 ms): the cage noise between
bouts is not labelled, so a detection there is not necessarily wrong. Recall is the same in both scopes.
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from quagga.audio.io import read_audio
from quagga.audio.segment import calls_from_trace, energy_trace, find_calls
from quagga.audio.settings import SEGMENT_FALLBACK, resolve_audio_settings
from quagga.params import AudioParams, SegmentParams, to_dict

RATE = 32000
TOLERANCES_S = (0.010, 0.020)
BOUT_PAD_S = 0.05
GRID_FILES = 40
# The grid searched by --grid (traces are computed once per (smooth_s, fmin), the thresholds reuse them).
GRID = {
    "smooth_s": [0.002, 0.005, 0.01],
    "fmin": [300.0, 500.0, 1000.0],
    "onset_db": [6.0, 9.0, 12.0, 15.0],
    "offset_db": [3.0, 5.0, 8.0, 11.0],
    "peak_db": [15.0, 20.0, 25.0],
    "min_gap_s": [0.002, 0.005, 0.01],
}
# Chosen by --grid on files 0-39 (F1 within bouts 0.992 at 10 ms; the dataclass defaults score 0.943 there).
# The decisive change is min_gap_s: Bengalese finch syllables can be under 5 ms apart.
KOUMURA_BIRD0 = {"fmin": 1000.0, "onset_db": 12.0, "offset_db": 11.0, "peak_db": 15.0, "min_gap_s": 0.002}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/koumura-bird0"


def load_human(data: Path, n_files: int) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """File names (Wave/k.wav, k < n_files), human segments [n, 2] and bout spans [m, 2] per file, in seconds."""
    table = pd.read_csv(data / "annotations.csv")
    files = [f"Wave/{k}.wav" for k in range(n_files) if (data / f"Wave/{k}.wav").is_file()]
    human, bouts = {}, {}
    for f in files:
        rows = table[table["wav_file"] == f]
        human[f] = rows[["onset_s", "offset_s"]].to_numpy(float).reshape(-1, 2)
        spans = rows.groupby("sequence").agg(start=("onset_s", "min"), stop=("offset_s", "max"))
        bouts[f] = spans.to_numpy(float).reshape(-1, 2) + [-BOUT_PAD_S, BOUT_PAD_S]
    return files, human, bouts


def match(det: np.ndarray, ref: np.ndarray, tol: float, onset_only: bool = False) -> int:
    """Number of one-to-one matches, taken greedily from the closest pair (|d onset| + |d offset|)."""
    if len(det) == 0 or len(ref) == 0:
        return 0
    d_on = np.abs(det[:, None, 0] - ref[None, :, 0])
    d_off = np.abs(det[:, None, 1] - ref[None, :, 1])
    ok = d_on <= tol if onset_only else (d_on <= tol) & (d_off <= tol)
    i, j = np.nonzero(ok)
    cost = d_on[i, j] if onset_only else d_on[i, j] + d_off[i, j]
    used_i, used_j, n = set(), set(), 0
    for k in np.argsort(cost, kind="stable"):
        if i[k] not in used_i and j[k] not in used_j:
            used_i.add(i[k])
            used_j.add(j[k])
            n += 1
    return n


def in_bouts(det: np.ndarray, bouts: np.ndarray) -> np.ndarray:
    """Detections that overlap any bout span."""
    if len(det) == 0 or len(bouts) == 0:
        return det[:0]
    hit = (det[:, None, 0] < bouts[None, :, 1]) & (det[:, None, 1] > bouts[None, :, 0])
    return det[hit.any(axis=1)]


def score(detected: dict[str, np.ndarray], human: dict[str, np.ndarray], bouts: dict[str, np.ndarray]) -> dict:
    """P/R/F1 (onset+offset and onset-only) per tolerance and scope, plus the median boundary errors."""
    out: dict = {"n_human": int(sum(len(h) for h in human.values()))}
    for scope in ("all", "bouts"):
        dets = {f: d if scope == "all" else in_bouts(d, bouts[f]) for f, d in detected.items()}
        n_det = sum(len(d) for d in dets.values())
        out[f"n_det_{scope}"] = n_det
        for tol in TOLERANCES_S:
            ms = f"{round(tol * 1000)}ms"
            for kind, onset_only in (("", False), ("onset_", True)):
                tp = sum(match(dets[f], human[f], tol, onset_only) for f in dets)
                p, r = tp / max(n_det, 1), tp / max(out["n_human"], 1)
                key = f"{kind}{{}}_{ms}" + ("" if scope == "all" else "_bouts")
                out[key.format("p")], out[key.format("r")] = round(p, 4), round(r, 4)
                out[key.format("f1")] = round(2 * p * r / max(p + r, 1e-12), 4)
    out.update(boundary_errors(detected, human))
    return out


def boundary_errors(detected: dict[str, np.ndarray], human: dict[str, np.ndarray]) -> dict:
    """Median signed onset/offset error (detected - human, ms) of the detections nearest each human onset.

    Only pairs within 30 ms on both boundaries count. Negative onset error: detections start early.
    """
    d_on, d_off = [], []
    for f, ref in human.items():
        det = detected[f]
        if len(det) == 0 or len(ref) == 0:
            continue
        k = np.abs(ref[:, None, 0] - det[None, :, 0]).argmin(axis=1)
        e = det[k] - ref
        ok = np.all(np.abs(e) <= 0.03, axis=1)
        d_on.extend(e[ok, 0])
        d_off.extend(e[ok, 1])
    return {"median_onset_err_ms": round(float(np.median(d_on)) * 1000, 2) if d_on else None,
            "median_offset_err_ms": round(float(np.median(d_off)) * 1000, 2) if d_off else None}


def read_all(data: Path, files: list[str]) -> dict[str, np.ndarray]:
    return {f: read_audio(data / f, RATE, "mix") for f in files}


def detect(audio: dict[str, np.ndarray], p: SegmentParams) -> dict[str, np.ndarray]:
    return {f: np.array(find_calls(y, RATE, p).calls, dtype=float).reshape(-1, 2) for f, y in audio.items()}


def print_table(result: dict) -> None:
    rows = []
    for scope, suffix in (("all", ""), ("bouts", "_bouts")):
        for tol in TOLERANCES_S:
            ms = f"{round(tol * 1000)}ms"
            rows.append({
                "scope": scope, "tolerance": ms, "human": result["n_human"], "detected": result[f"n_det_{scope}"],
                "P": result[f"p_{ms}{suffix}"], "R": result[f"r_{ms}{suffix}"], "F1": result[f"f1_{ms}{suffix}"],
                "onset P": result[f"onset_p_{ms}{suffix}"], "onset R": result[f"onset_r_{ms}{suffix}"],
                "onset F1": result[f"onset_f1_{ms}{suffix}"],
            })
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"median boundary error (detected - human): onset {result['median_onset_err_ms']} ms, "
          f"offset {result['median_offset_err_ms']} ms; {result['seconds']:.1f} s for {result['files']} files "
          f"({result['audio_s']:.0f} s of audio)")


def grid_search(data: Path, base: SegmentParams) -> None:
    """Search GRID on the first GRID_FILES files; prints the 10 best by bout-scope F1 (mean of 10 and 20 ms)."""
    files, human, bouts = load_human(data, GRID_FILES)
    audio = read_all(data, files)
    rows = []
    for smooth_s, fmin in itertools.product(GRID["smooth_s"], GRID["fmin"]):
        p0 = dataclasses.replace(base, smooth_s=smooth_s, fmin=fmin)
        traces = {f: energy_trace(y, RATE, p0) for f, y in audio.items()}
        for onset_db, offset_db, peak_db, gap in itertools.product(
            GRID["onset_db"], GRID["offset_db"], GRID["peak_db"], GRID["min_gap_s"]
        ):
            if offset_db > onset_db or onset_db > peak_db:
                continue
            p = dataclasses.replace(p0, onset_db=onset_db, offset_db=offset_db, peak_db=peak_db, min_gap_s=gap)
            det = {f: np.array(calls_from_trace(traces[f], RATE, p, len(audio[f]) / RATE).calls).reshape(-1, 2)
                   for f in files}
            s = score(det, human, bouts)
            rows.append({"smooth_s": smooth_s, "fmin": fmin, "onset_db": onset_db, "offset_db": offset_db,
                         "peak_db": peak_db, "min_gap_s": gap, "f1_10ms_bouts": s["f1_10ms_bouts"],
                         "f1_20ms_bouts": s["f1_20ms_bouts"], "f1_20ms": s["f1_20ms"],
                         "onset_f1_10ms_bouts": s["onset_f1_10ms_bouts"],
                         "mean": (s["f1_10ms_bouts"] + s["f1_20ms_bouts"]) / 2})
        print(f"smooth_s={smooth_s} fmin={fmin}: best so far {max(r['mean'] for r in rows):.4f}", file=sys.stderr)
    table = pd.DataFrame(rows).sort_values("mean", ascending=False)
    print(f"grid search on {len(files)} files, {len(table)} settings; 10 best by mean bout-scope F1 (10, 20 ms):")
    print(table.head(10).to_string(index=False))
    print(json.dumps({"bench": "segmentation-grid", "files": len(files), "settings": len(table),
                      "best": table.iloc[0].to_dict()}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the koumura-bird0 folder")
    parser.add_argument("--files", type=int, default=135, help="use Wave/0.wav .. Wave/{files-1}.wav")
    parser.add_argument("--grid", action="store_true", help=f"parameter search on the first {GRID_FILES} files")
    parser.add_argument("--auto", action="store_true", help="the settings `auto` finds (labels not used)")
    defaults = dataclasses.replace(SEGMENT_FALLBACK, **KOUMURA_BIRD0)
    for field in dataclasses.fields(SegmentParams):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name))
    args = parser.parse_args(argv)
    if not (args.data / "annotations.csv").is_file() or not (args.data / "Wave").is_dir():
        sys.exit(f"koumura-bird0 data not found at {args.data} (expected annotations.csv and Wave/); "
                 "pass --data /path/to/koumura-bird0")
    params = SegmentParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SegmentParams)})
    choices = None
    if args.auto:
        started = time.perf_counter()
        resolved, choices = resolve_audio_settings(
            AudioParams(recordings=str(args.data / "Wave"), annotations=None, segments="energy",
                        spectrogram=dataclasses.replace(AudioParams().spectrogram, sample_rate=RATE)), Path("."))
        params = resolved.segment
        print(f"auto settings ({time.perf_counter() - started:.1f} s):")
        for key, record in choices.records.items():
            if key.startswith("segment."):
                print(f"  {key} = {record['value']}  ({record['statistic']})")
    if args.grid:
        grid_search(args.data, params)
        return 0
    files, human, bouts = load_human(args.data, args.files)
    audio = read_all(args.data, files)
    start = time.perf_counter()
    detected = detect(audio, params)
    seconds = time.perf_counter() - start
    audio_s = round(sum(len(y) for y in audio.values()) / RATE, 1)
    result = {"bench": "segmentation", "files": len(files), "audio_s": audio_s, "seconds": round(seconds, 2)}
    result.update(score(detected, human, bouts))
    print_table(result)
    result["params"] = to_dict(params)
    result["settings"] = "auto" if args.auto else "flags"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
