"""Image tiling speed and memory on real micrographs: every bccd box vs decoding the images alone.

    .venv/bin/python bench/image_tiles.py [--config config/bccd.yaml] [--repeats 3]

1. tiling: `quagga tiles --threads N` for the images dataset of the config (decoding, cropping,
   normalising, morphology features, the store on disk; N worker processes tile blocks of the images side
   by side, as the workflow's rule does with its threads; the `auto` values found once before, by `quagga
   settings`), in a fresh process so its peak RSS is its own (the largest of it and its workers);
2. the floor: decoding the same source images once each, in another fresh process.
Both run ``--repeats`` times, interleaved; the medians are reported. Prints a table and ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

from benchutil import ROOT, median, peak_mib, run_fresh, tiles_section


def _tile_job(section: dict, settings: str, out: str, threads: int, queue: mp.Queue) -> None:
    from quagga.cli import main
    from quagga.tiles.store import TileStore

    t0 = time.perf_counter()
    rc = main(["tiles", "--modality", "images", "--params", json.dumps(section), "--settings", settings,
               "--base-dir", str(ROOT), "--threads", str(threads), "--out", out])
    seconds = time.perf_counter() - t0
    if rc:
        sys.exit(f"bench/image_tiles.py: quagga tiles failed (exit {rc})")
    store = TileStore(out)
    queue.put({
        "tiles": store.shape[0], "skipped": len(store.skipped), "images": int(store.index["source"].nunique()),
        "seconds": seconds, "peak_mib": max(peak_mib(), peak_mib(children=True)),
    })


def _decode_job(sources: list[str], queue: mp.Queue) -> None:
    from quagga.images.io import read_pixels

    t0 = time.perf_counter()
    pixels = sum(read_pixels(Path(s)).size for s in sources)
    queue.put({"seconds": time.perf_counter() - t0, "pixels": pixels, "peak_mib": peak_mib()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "bccd.yaml")
    ap.add_argument("--dataset", help="dataset name in the config (default: its first images dataset)")
    ap.add_argument("--repeats", type=int, default=3, help="tiling and decoding runs (the median is reported)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="tiling processes (default: every core, as `snakemake --cores all` gives the rule)")
    args = ap.parse_args()
    name, section = tiles_section(args.config, args.dataset, "images", resolve=False)
    if not (ROOT / section["images"]).exists():
        sys.exit(f"bench/image_tiles.py: images of {name} not found at {section['images']} "
                 "(the shared data lives in ../shared/data)")
    with tempfile.TemporaryDirectory() as tmp:
        from quagga.cli import main as quagga

        settings = str(Path(tmp) / "settings.json")  # the `auto` values, found once as the workflow does
        if quagga(["settings", "--modality", "images", "--params", json.dumps(section), "--base-dir", str(ROOT),
                   "--out", settings]):
            sys.exit("bench/image_tiles.py: quagga settings failed")
        first = run_fresh(_tile_job, section, settings, str(Path(tmp) / "tiles"), args.threads)
        from quagga.tiles.store import TileStore

        sources = sorted(TileStore(Path(tmp) / "tiles").index["source"].astype(str).unique())
        sources = [str(ROOT / s) if not Path(s).is_absolute() else s for s in sources]
        runs = [(first, run_fresh(_decode_job, sources))]
        runs += [(run_fresh(_tile_job, section, settings, str(Path(tmp) / f"tiles{i}"), args.threads),
                  run_fresh(_decode_job, sources)) for i in range(1, args.repeats)]
    tiling = median([r[0] for r in runs], "seconds")
    floor = median([r[1] for r in runs], "seconds")
    ratio = tiling["seconds"] / floor["seconds"]
    print(f"dataset {name}: {tiling['images']} images, {floor['pixels'] / 1e6:.0f} M pixel values")
    print(f"{'step':<38}{'items':>8}{'seconds':>9}{'items/s':>9}{'peak MiB':>10}")
    print(f"{f'tiling, {args.threads} processes':<38}{tiling['tiles']:>8}{tiling['seconds']:>9.2f}"
          f"{tiling['tiles'] / tiling['seconds']:>9.0f}{tiling['peak_mib']:>10.0f}")
    print(f"{'floor: decode every image once':<38}{len(sources):>8}{floor['seconds']:>9.2f}"
          f"{len(sources) / floor['seconds']:>9.0f}{floor['peak_mib']:>10.0f}")
    print(f"tiling / decoding = {ratio:.2f}x; skipped {tiling['skipped']} (median of {args.repeats} runs)")
    print(json.dumps({
        "bench": "image_tiles", "dataset": name, "tiles": tiling["tiles"], "skipped": tiling["skipped"],
        "images": tiling["images"], "tiling_s": round(tiling["seconds"], 3),
        "tiles_per_s": round(tiling["tiles"] / tiling["seconds"], 1), "threads": args.threads,
        "decode_s": round(floor["seconds"], 3),
        "ratio_vs_decode": round(ratio, 3), "peak_mib_tiling": round(tiling["peak_mib"]),
        "peak_mib_decode": round(floor["peak_mib"]),
    }))


if __name__ == "__main__":
    main()
