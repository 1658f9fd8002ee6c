"""How time and memory grow with the data: tiling, training and encoding on 1x, 4x and 16x copies of a data set.

    nice -n 10 .venv/bin/python bench/scaling.py [--config config/koumura-bird0.yaml] [--scales 1,4,16]

The copies are made without copying audio: a temporary folder of symbolic links to the recordings, each
copy renamed (``c03_Wave_17.wav``), and the annotation table repeated with the new names (koumura-bird0
16x: 2,160 recordings, 122,432 syllables). For each scale, each stage runs in a fresh process (so its
peak memory is its own) on quagga's own code paths:

1. settings: ``resolve_audio_settings`` (every ``auto`` tile setting found from the copy; streamed, so its
   memory should stay flat and its time a small fraction of the tiling's);
2. tiling: ``iter_audio_tiles`` + ``write_store`` (read, spectrogram, one tile per call, float16 store);
3. training: ``train_model`` (the config's model, batch size and precision) for one epoch cut to a
   fixed ``--train-steps`` optimizer steps and ``--val-batches`` validation batches at every scale
   (Lightning's ``limit_train_batches`` / ``limit_val_batches``). The batches are still drawn at random
   from the whole store, so what grows with the data is only where in the memory-mapped file they come
   from: time per step should stay flat, and an epoch is (tiles / batch size) steps, linear by definition.
   (A full epoch at 16x is ~1,900 steps, over an hour on 2 busy cores; the table prints the projection.)
4. encoding: ``encode_store`` (latents table for every tile, streamed through the model in batches).

ParametricUMAP (the ``embed`` rule) is not run: its kNN graph is not what this benchmark is about.

Memory is reported two ways: ``peak RSS`` (ru_maxrss: everything resident, including the pages of the
memory-mapped tile store that the kernel has cached, which it can drop at any time) and ``peak anon``
(the highest RssAnon sampled every 50 ms: the process's own heap, what must fit in the job's memory).
Targets: time at most linear in the tiles, peak anon at most 1.2x from 1x to 16x.
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

from benchutil import ROOT, peak_mib, run_fresh, tiles_section

STAGES = ("settings", "tiling", "training", "encoding")


class AnonPeak:
    """The highest RssAnon of this process (from /proc/self/status), sampled in a thread."""

    def __init__(self, every_s: float = 0.05):
        self.every_s, self.peak_kib, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.now_kib())
            self._stop.wait(self.every_s)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, self.now_kib())


def _replicate(section: dict, copies: int, folder: Path) -> dict:
    """``copies`` renamed copies of the dataset: links to the recordings and a repeated annotation table."""
    import pandas as pd

    recordings = (ROOT / section["recordings"]).resolve()
    table = pd.read_csv(ROOT / section["annotations"])
    column = "wav_file" if "wav_file" in table.columns else "file"
    folder.mkdir(parents=True)
    parts = []
    for c in range(copies):
        names = {f: f"c{c:02d}_{f.replace('/', '_')}" for f in table[column].unique()}
        for original, link in names.items():
            (folder / link).symlink_to(recordings / original)
        parts.append(table.assign(**{column: table[column].map(names)}))
    pd.concat(parts, ignore_index=True).to_csv(folder / "annotations.csv", index=False)
    return {**section, "recordings": str(folder), "annotations": str(folder / "annotations.csv")}


def _warm_up(spec) -> None:  # noqa: ANN001 - SpectrogramParams
    """Load librosa's lazy modules and numba caches before the clock starts (as bench/audio_tiles.py)."""
    import numpy as np

    from quagga.audio.spectrogram import spectrogram_db

    spectrogram_db(np.random.default_rng(0).standard_normal(spec.sample_rate).astype(np.float32), spec)


def _settings(section: dict, queue: mp.Queue) -> None:
    import pandas as pd

    from quagga.audio.settings import resolve_audio_settings
    from quagga.params import AudioParams, from_dict, to_dict

    with AnonPeak() as anon:
        t0 = time.perf_counter()
        resolved, choices = resolve_audio_settings(from_dict(AudioParams, section), ROOT)
        seconds = time.perf_counter() - t0
    n = len(pd.read_csv(ROOT / section["annotations"])) if section.get("annotations") else 0
    queue.put({"items": n, "seconds": seconds, "peak_mib": peak_mib(), "anon_mib": anon.peak_kib / 1024,
               "section": to_dict(resolved), "choices": choices.records})


def _tiling(section: dict, out: str, queue: mp.Queue) -> None:
    from quagga.audio import iter_audio_tiles
    from quagga.params import AudioParams, from_dict, to_dict
    from quagga.tiles.store import write_store

    params = from_dict(AudioParams, section)
    _warm_up(params.spectrogram)
    with AnonPeak() as anon:
        t0 = time.perf_counter()
        n = write_store(out, iter_audio_tiles(params, ROOT), to_dict(params.spectrogram), "audio")
        seconds = time.perf_counter() - t0
    queue.put({"items": n, "seconds": seconds, "peak_mib": peak_mib(), "anon_mib": anon.peak_kib / 1024})


def _training(store: str, train: dict, out: str, steps: int, val_batches: int, queue: mp.Queue) -> None:
    import functools
    import logging

    from quagga.models import train as train_module
    from quagga.params import TrainParams, from_dict

    logging.getLogger("lightning").setLevel(logging.ERROR)
    params = replace(from_dict(TrainParams, train), max_epochs=1, max_time_s=None)
    # the same Trainer, its one epoch cut to a fixed number of batches (this is a throwaway process)
    limited = functools.partial(train_module.L.Trainer, limit_train_batches=steps, limit_val_batches=val_batches)
    with mock.patch.object(train_module.L, "Trainer", limited), AnonPeak() as anon:
        t0 = time.perf_counter()
        train_module.train_model(Path(store), params, Path(out))
        seconds = time.perf_counter() - t0
    written = json.loads((Path(out) / "params.json").read_text())
    batch = written["train"]["batch_size"]  # the resolved value (the config may say auto)
    queue.put({"items": steps * batch, "seconds": seconds, "peak_mib": peak_mib(),
               "anon_mib": anon.peak_kib / 1024, "precision": written["precision"],
               "epoch_steps": -(-written["n_train"] // batch), "batch_size": batch})


def _encoding(store: str, checkpoint: str, out: str, queue: mp.Queue) -> None:
    import pandas as pd

    from quagga.models.encode import encode_store

    with AnonPeak() as anon:
        t0 = time.perf_counter()
        encode_store(Path(store), Path(checkpoint), Path(out))
        seconds = time.perf_counter() - t0
    queue.put({"items": len(pd.read_parquet(out, columns=["item_id"])), "seconds": seconds,
               "peak_mib": peak_mib(), "anon_mib": anon.peak_kib / 1024})


def _train_section(config_path: Path, name: str, seed: int) -> dict:
    from quagga.config import load_config, stage_section

    return {**stage_section(load_config(config_path), name, "train"), "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "koumura-bird0.yaml")
    ap.add_argument("--dataset", help="dataset name in the config (default: its first audio dataset)")
    ap.add_argument("--scales", default="1,4,16", help="comma-separated numbers of copies")
    ap.add_argument("--until", choices=STAGES, default="encoding", help="last stage to run (each needs the one before)")
    ap.add_argument("--train-steps", type=int, default=60, help="optimizer steps of training at every scale")
    ap.add_argument("--val-batches", type=int, default=10, help="validation batches at every scale")
    ap.add_argument("--tmp", type=Path, default=None, help="where the copies and stores go (default: system temp)")
    args = ap.parse_args()
    name, section = tiles_section(args.config, args.dataset, "audio", resolve=False)  # resolved per copy
    if not (ROOT / section["recordings"]).exists():
        sys.exit(f"bench/scaling.py: recordings of {name} not found at {section['recordings']} "
                 "(the shared data lives in ../shared/data)")
    train = _train_section(args.config, name, seed=0)
    scales = [int(s) for s in args.scales.split(",")]
    stages = STAGES[: STAGES.index(args.until) + 1]
    rows: dict[int, dict[str, dict]] = {}
    print(f"dataset {name}; training: {args.train_steps} steps of batch {train['batch_size']} + {args.val_batches} "
          f"validation batches at every scale; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for k in scales:
            work = Path(tmp) / f"x{k}"
            copy = _replicate(section, k, work / "data")
            store, model = str(work / "tiles"), work / "model"
            rows[k] = {"settings": run_fresh(_settings, copy)}
            resolved = rows[k]["settings"].pop("section")
            choices = rows[k]["settings"].pop("choices")
            if k == scales[0]:
                print("  settings: " + ", ".join(f"{key} {c['value']}" for key, c in choices.items()), flush=True)
            rows[k]["tiling"] = run_fresh(_tiling, resolved, store)
            if "training" in stages:
                rows[k]["training"] = run_fresh(_training, store, train, str(model), args.train_steps,
                                                args.val_batches)
            if "encoding" in stages:
                rows[k]["encoding"] = run_fresh(_encoding, store, str(model / "vae.ckpt"),
                                                str(work / "latents.parquet"))
            rows[k]["store_mib"] = (Path(store) / "tiles.bin").stat().st_size / 2**20
            for stage in stages:
                r = rows[k][stage]
                print(f"  {k:>3}x {stage:<9} {r['items']:>7} items {r['seconds']:>8.1f} s "
                      f"peak RSS {r['peak_mib']:>6.0f} MiB anon {r['anon_mib']:>6.0f} MiB", flush=True)
            shutil.rmtree(work)  # free the disk for the next scale (rmtree removes links, not their targets)

    base = scales[0]
    print(f"\n{'scale':>5} {'stage':<9}{'items':>8}{'seconds':>9}{'items/s':>9}{'time/1x':>8}"
          f"{'peak RSS MiB':>13}{'peak anon MiB':>14}{'anon/1x':>8}")
    for k in scales:
        for stage in stages:
            r, b = rows[k][stage], rows[base][stage]
            print(f"{k:>4}x {stage:<9}{r['items']:>8}{r['seconds']:>9.1f}{r['items'] / r['seconds']:>9.0f}"
                  f"{r['seconds'] / b['seconds']:>8.2f}{r['peak_mib']:>13.0f}{r['anon_mib']:>14.0f}"
                  f"{r['anon_mib'] / b['anon_mib']:>8.2f}")
    top = scales[-1]
    if "training" in stages:
        epoch_min = {k: rows[k]["training"]["seconds"] / args.train_steps * rows[k]["training"]["epoch_steps"] / 60
                     for k in scales}
        print("one full training epoch, projected from the time per step: "
              + ", ".join(f"{k}x {rows[k]['training']['epoch_steps']} steps ~{epoch_min[k]:.0f} min" for k in scales)
              + f"; training precision {rows[base]['training']['precision']}")
    print("tile store on disk: " + ", ".join(f"{k}x {rows[k]['store_mib']:.0f} MiB" for k in scales))
    anon_growth = {s: rows[top][s]["anon_mib"] / rows[base][s]["anon_mib"] for s in stages}
    time_per_item = {s: (rows[top][s]["seconds"] / rows[top][s]["items"])
                     / (rows[base][s]["seconds"] / rows[base][s]["items"]) for s in stages}
    print(f"{top}x vs {base}x: time per item " + ", ".join(f"{s} {v:.2f}x" for s, v in time_per_item.items())
          + " (<= 1 is at most linear); peak anon " + ", ".join(f"{s} {v:.2f}x" for s, v in anon_growth.items())
          + " (target <= 1.2x)")
    figures = {"bench": "scaling", "dataset": name, "scales": scales,
               "rows": {str(k): {s: {key: round(v, 2) if isinstance(v, float) else v for key, v in rows[k][s].items()}
                                 for s in stages} for k in scales},
               "time_per_item_ratio": {s: round(v, 3) for s, v in time_per_item.items()},
               "anon_ratio": {s: round(v, 3) for s, v in anon_growth.items()}}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
