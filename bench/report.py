"""Report size and load time: a synthetic audio dataset of 1k and 10k items, opened in headless Chromium.

    .venv/bin/python bench/report.py [--sizes 1000 10000] [--threads N] [--chromium /usr/bin/chromium]

Items are spectrogram-like tiles (a few smooth harmonic stripes plus noise, so JPEG sizes are realistic)
and 0.05-0.5 s calls in a noisy recording (so clip sizes are realistic: noise barely compresses). Load
time is from navigation to the map being drawn (Bokeh's plot view exists), the median of 3 loads. The
thumbnails and clips are made by ``--threads`` worker processes (default: every CPU this process may use,
as the workflow's report rule gets ``workflow.cores``; 1: no worker process). ``cpu_s`` is the build's
CPU time, workers included: on a shared machine it says more than the wall time.
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from quagga.params import ReportParams
from quagga.report import build_report
from quagga.tables import write_json, write_table
from quagga.tiles.store import TileItem, write_store

READY = "() => window.Bokeh && [...Bokeh.index.all_views()].some(v => v.model.name === 'map')"
RATE = 32000
RECORDING_S = 600.0


def _tile(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    rows = np.arange(size)[:, None]
    f0 = rng.uniform(5, 30)
    tile = sum(np.exp(-((rows - k * f0) ** 2) / 8) / k for k in range(1, 5))
    start, stop = sorted(rng.integers(0, size, 2))
    mask = np.zeros((1, size))
    mask[0, start : stop + 8] = 1
    return np.clip(0.2 + 0.6 * tile * mask + 0.05 * rng.standard_normal((size, size)), 0, 1).astype(np.float32)


def make_dataset(root: Path, n: int, seed: int = 0) -> dict:
    """Tile store, latents, embedding, clusters and metrics of ``n`` synthetic calls in 10-minute recordings."""
    rng = np.random.default_rng(seed)
    n_rec = max(1, int(np.ceil(n * 0.6 / RECORDING_S)))  # about one call per 0.6 s
    (root / "audio").mkdir(parents=True)
    for k in range(n_rec):
        sf.write(root / "audio" / f"rec{k}.flac", 0.05 * rng.standard_normal(int(RECORDING_S * RATE)), RATE)
    onsets = rng.uniform(0.2, RECORDING_S - 1, n)
    durations = rng.uniform(0.05, 0.5, n)
    labels = rng.integers(0, 8, n)
    items = [
        TileItem(f"i{i}", _tile(rng), {"label": f"type{labels[i]}", "source": f"rec{i % n_rec}.flac",
                                       "onset_s": onsets[i], "offset_s": onsets[i] + durations[i]})
        for i in range(n)
    ]
    write_store(root / "tiles", items, {"bench": True}, "audio")
    ids = [f"i{i}" for i in range(n)]
    xy = rng.normal(size=(n, 2)) + 6 * rng.normal(size=(8, 2))[labels]
    write_table(pd.DataFrame({"item_id": ids, "z_0": xy[:, 0], "recon_error": rng.random(n)}),
                root / "latents.parquet")
    write_table(pd.DataFrame({"item_id": ids, "x": xy[:, 0], "y": xy[:, 1]}), root / "embedding.parquet")
    write_table(pd.DataFrame({"item_id": ids, "cluster": labels, "probability": rng.random(n),
                              "outlier_score": rng.random(n)}), root / "clusters.parquet")
    write_json({"v_measure": 1.0, "n_items": n}, root / "metrics.json")
    return {"dataset": f"bench-{n}", "tiles_dir": root / "tiles", "latents_path": root / "latents.parquet",
            "embedding_path": root / "embedding.parquet", "clusters_path": root / "clusters.parquet",
            "metrics_path": root / "metrics.json", "examples_path": None, "training_curve_path": None,
            "params": ReportParams(max_points=10000), "out_dir": root / "report", "source_root": root / "audio"}


def load_seconds(path: Path, chromium: str, repeats: int = 3) -> float:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(repeats):
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_function(READY, timeout=60000)
            times.append(time.perf_counter() - started)
            page.close()
        browser.close()
    return statistics.median(times)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the report's workers), user and system."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF,
                                                                           resource.RUSAGE_CHILDREN)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        sys.exit("no Chromium found: apt-get install chromium, or pass --chromium PATH")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            kwargs = make_dataset(Path(tmp), n)
            started, cpu = time.perf_counter(), _cpu_s()
            path = build_report(**kwargs, workers=args.threads)
            build_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu
            rows.append({"items": n, "threads": args.threads, "build_s": round(build_s, 1), "cpu_s": round(cpu_s, 1),
                         "size_mb": round(path.stat().st_size / 1e6, 1),
                         "load_s": round(load_seconds(path, args.chromium), 2)})
    print(pd.DataFrame(rows).to_string(index=False))
    print(json.dumps({"report": rows}))


if __name__ == "__main__":
    main()
