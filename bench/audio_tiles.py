"""Audio tiling speed and memory on real song: every annotated syllable of koumura-bird0 vs the STFT floor.

    .venv/bin/python bench/audio_tiles.py [--config config/koumura-bird0.yaml] [--long-minutes 60]

1. tiling: `iter_audio_tiles` + `write_store` for the dataset of the config (reading, spectrogram,
   one tile per syllable, the store on disk), in a fresh process so its peak RSS is its own;
2. the floor: the same recordings' plain STFT (librosa.stft, same n_fft/hop) in another fresh process,
   timed without and with reading the files; target: tiling <= 2x the STFT floor (1 and 2 are run
   ``--repeats`` times, interleaved, and the medians reported);
3. a long recording: the dataset's recordings concatenated into one ``--long-minutes`` file and tiled by
   energy segmentation, to show that memory stays bounded by the block, not the file (0 skips it).
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchutil import ROOT, median, peak_mib, run_fresh, tiles_section


def _warm_up(spec) -> None:  # noqa: ANN001 - SpectrogramParams
    """Load librosa's lazy modules and numba caches once, so both timings measure steady-state work."""
    import numpy as np

    from quagga.audio.spectrogram import spectrogram_db

    spectrogram_db(np.random.default_rng(0).standard_normal(spec.sample_rate).astype(np.float32), spec)


def _tile_job(section: dict, out: str, long_file: str | None, queue: mp.Queue) -> None:
    from quagga.audio import iter_audio_tiles
    from quagga.params import AudioParams, from_dict, to_dict
    from quagga.tiles.store import TileStore, write_store

    params = from_dict(AudioParams, section)
    _warm_up(params.spectrogram)
    if long_file:  # no annotations for the long file: find its calls by energy
        params = replace(params, segments="energy", annotations=None, recordings=long_file)
    t0 = time.perf_counter()
    n = write_store(out, iter_audio_tiles(params, ROOT), to_dict(params.spectrogram), "audio")
    seconds = time.perf_counter() - t0
    queue.put({"tiles": n, "skipped": len(TileStore(out).skipped), "seconds": seconds, "peak_mib": peak_mib()})


def _stft_job(section: dict, queue: mp.Queue) -> None:
    import librosa
    import soundfile as sf

    from quagga.audio.io import find_recordings
    from quagga.params import SpectrogramParams, from_dict

    _warm_up(from_dict(SpectrogramParams, section["spectrogram"]))
    spec = section["spectrogram"]
    files = find_recordings((ROOT / section["recordings"]).resolve())
    t0 = time.perf_counter()
    signals = [sf.read(f, dtype="float32")[0] for f in files]
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = sum(librosa.stft(y, n_fft=spec["n_fft"], hop_length=spec["hop_length"]).shape[1] for y in signals)
    stft_s = time.perf_counter() - t0
    queue.put({"files": len(files), "audio_s": sum(len(y) for y in signals) / spec["sample_rate"], "frames": frames,
               "read_s": read_s, "stft_s": stft_s, "peak_mib": peak_mib()})






def _write_long(section: dict, minutes: float, path: Path) -> float:
    """Concatenate the dataset's recordings (repeated) into one FLAC of ``minutes``, written in pieces."""
    import soundfile as sf

    from quagga.audio.io import find_recordings

    files = find_recordings((ROOT / section["recordings"]).resolve())
    rate = sf.info(str(files[0])).samplerate
    target, written = int(minutes * 60 * rate), 0
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        while written < target:
            for f in files:
                y = sf.read(f, dtype="float32")[0][: target - written]
                out.write(y)
                written += len(y)
                if written >= target:
                    break
    return written / rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "koumura-bird0.yaml")
    ap.add_argument("--dataset", help="dataset name in the config (default: its first audio dataset)")
    ap.add_argument("--long-minutes", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3, help="tiling and STFT runs (the median is reported)")
    args = ap.parse_args()
    name, section = tiles_section(args.config, args.dataset, "audio")
    if not (ROOT / section["recordings"]).exists():
        sys.exit(f"bench/audio_tiles.py: recordings of {name} not found at {section['recordings']} "
                 "(the shared data lives in ../shared/data)")
    with tempfile.TemporaryDirectory() as tmp:
        # interleaved repeats, median of each: a 2-core machine's timings wander by tens of percent
        runs = [(run_fresh(_tile_job, section, str(Path(tmp) / "tiles"), None), run_fresh(_stft_job, section))
                for _ in range(args.repeats)]
        tiling = median([r[0] for r in runs], "seconds")
        floor = median([r[1] for r in runs], "stft_s")
        long = None
        if args.long_minutes > 0:
            long_audio_s = _write_long(section, args.long_minutes, Path(tmp) / "long.flac")
            long = run_fresh(_tile_job, section, str(Path(tmp) / "long_tiles"), str(Path(tmp) / "long.flac"))
            long["audio_s"] = long_audio_s
    ratio = tiling["seconds"] / floor["stft_s"]
    ratio_read = tiling["seconds"] / (floor["stft_s"] + floor["read_s"])
    print(f"dataset {name}: {floor['files']} recordings, {floor['audio_s']:.1f} s of audio, "
          f"{floor['frames']} STFT frames")
    print(f"{'step':<34}{'items':>8}{'seconds':>9}{'items/s':>9}{'peak MiB':>10}")
    print(f"{'tiling (read+spectrogram+store)':<34}{tiling['tiles']:>8}{tiling['seconds']:>9.2f}"
          f"{tiling['tiles'] / tiling['seconds']:>9.0f}{tiling['peak_mib']:>10.0f}")
    print(f"{'floor: plain STFT':<34}{'':>8}{floor['stft_s']:>9.2f}{'':>9}{floor['peak_mib']:>10.0f}")
    print(f"{'floor: read files':<34}{'':>8}{floor['read_s']:>9.2f}")
    if long:
        print(f"{'long file, energy segmentation':<34}{long['tiles']:>8}{long['seconds']:>9.2f}"
              f"{long['tiles'] / long['seconds']:>9.0f}{long['peak_mib']:>10.0f}"
              f"   ({long['audio_s'] / 60:.0f} min in one file)")
    print(f"tiling / STFT = {ratio:.2f}x (target <= 2x); tiling / (read + STFT) = {ratio_read:.2f}x; "
          f"skipped {tiling['skipped']}")
    figures = {
        "bench": "audio_tiles", "dataset": name, "tiles": tiling["tiles"], "skipped": tiling["skipped"],
        "tiling_s": round(tiling["seconds"], 3), "tiles_per_s": round(tiling["tiles"] / tiling["seconds"], 1),
        "stft_s": round(floor["stft_s"], 3), "read_s": round(floor["read_s"], 3),
        "ratio_vs_stft": round(ratio, 3), "ratio_vs_read_stft": round(ratio_read, 3),
        "peak_mib_tiling": round(tiling["peak_mib"]), "peak_mib_stft": round(floor["peak_mib"]),
    }
    if long:
        figures.update({"long_audio_min": round(long["audio_s"] / 60, 1), "long_tiles": long["tiles"],
                        "long_s": round(long["seconds"], 2), "long_peak_mib": round(long["peak_mib"])})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
