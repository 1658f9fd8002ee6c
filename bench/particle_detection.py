"""Automatic particle detection scored against human boxes: recall and precision per class at IoU >= 0.5.

    .venv/bin/python bench/particle_detection.py [--config config/bccd-segmented.yaml] [--limit N]
        [--detect '{"channel": "luminance", "split_touching": true}']

Runs quagga's detector (``images.detect`` of the config's segment dataset) on every image that has
human boxes and matches found boxes to human boxes one-to-one (PASCAL-VOC rule: greedy by IoU, each
match IoU >= 0.5). Recall of a class: its human boxes that were found. The detector does not know
classes, so a found box is attributed to the class of the human box it overlaps most; precision of a
class: the found boxes attributed to it that match a box. Found boxes that touch no human box count
against overall precision only (BCCD leaves some cells unboxed, so that figure is a lower bound).
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from benchutil import ROOT, peak_mib, tiles_section

from quagga.images.detect import find_particles, iou_matrix, match_boxes
from quagga.images.io import read_pixels, to_gray
from quagga.images.particles import COORDINATES, read_box_table
from quagga.params import ImageParams, from_dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "bccd-segmented.yaml")
    ap.add_argument("--dataset", help="dataset name in the config (default: its first images dataset)")
    ap.add_argument("--limit", type=int, help="score only the first N images (quick tuning)")
    ap.add_argument("--min-iou", type=float, default=0.5)
    ap.add_argument("--detect", default="{}", help='JSON overriding images.detect, e.g. \'{"grow_px": 5}\'')
    args = ap.parse_args()
    name, section = tiles_section(args.config, args.dataset, "images")
    section["detect"] = {**section.get("detect", {}), **json.loads(args.detect)}
    params = from_dict(ImageParams, section)
    images_dir = ROOT / params.images
    if params.boxes is None or not images_dir.is_dir():
        sys.exit(f"{name}: needs images.boxes (the human boxes to score against) and {images_dir}")
    truth, _ = read_box_table(ROOT / params.boxes)
    truth = truth.dropna(subset=COORDINATES)
    groups = list(truth.groupby("image", sort=True))[: args.limit]
    channel = params.detect.channel or params.channel

    classes = sorted(truth["label"].dropna().unique())
    counts = {c: {"boxes": 0, "found": 0, "attributed": 0, "matched": 0} for c in classes}
    n_found = n_matched = 0
    t0 = time.perf_counter()
    for image, boxes in groups:
        gray = to_gray(read_pixels(images_dir / image, params.page, params.max_megapixels), channel)
        found = find_particles(gray, params.detect)
        human = boxes[COORDINATES].to_numpy()
        labels = boxes["label"].to_numpy()
        matches = match_boxes(found, human, args.min_iou)
        n_found += len(found)
        n_matched += len(matches)
        for label in labels:
            counts[label]["boxes"] += 1
        for _, j, _ in matches:
            counts[labels[j]]["found"] += 1
        if found:
            overlap = iou_matrix(found, human)
            matched_found = {i for i, _, _ in matches}
            for i, row in enumerate(overlap):
                if row.max() > 0:
                    label = labels[int(np.argmax(row))]
                    counts[label]["attributed"] += 1
                    counts[label]["matched"] += i in matched_found
    seconds = time.perf_counter() - t0

    table = pd.DataFrame([
        {"class": c, "human boxes": v["boxes"], "found": v["found"],
         "recall": v["found"] / max(v["boxes"], 1), "precision": v["matched"] / max(v["attributed"], 1)}
        for c, v in counts.items()
    ])
    n_boxes = int(table["human boxes"].sum())
    print(f"{name}: {len(groups)} images, {n_boxes} human boxes, {n_found} found boxes, "
          f"channel {channel}, IoU >= {args.min_iou}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"all classes: recall {n_matched / max(n_boxes, 1):.3f}, precision {n_matched / max(n_found, 1):.3f}; "
          f"{len(groups) / seconds:.1f} images/s, peak {peak_mib():.0f} MiB")
    print(json.dumps({
        "dataset": name, "detect": section["detect"], "images": len(groups), "human_boxes": n_boxes,
        "found_boxes": n_found,
        "recall": {c: round(r, 4) for c, r in zip(table["class"], table["recall"], strict=True)},
        "precision": {c: round(p, 4) for c, p in zip(table["class"], table["precision"], strict=True)},
        "recall_all": round(n_matched / max(n_boxes, 1), 4), "precision_all": round(n_matched / max(n_found, 1), 4),
        "images_per_s": round(len(groups) / seconds, 2), "peak_mib": round(peak_mib(), 1),
    }))


if __name__ == "__main__":
    main()
