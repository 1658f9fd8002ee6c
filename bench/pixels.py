"""The strong pixel baseline: what a folder's labels are worth without any network.

    .venv/bin/python bench/pixels.py DATA_DIR [--seed 0]

``bench/quality.py`` runs it in the same invocation as the pipeline; alone, it prints one line per HDBSCAN
candidate and a final JSON line, to check it against ``../shared/tools/baselines/pixel_baseline.py``
(its figures agree within 0.02 V on the shared sets). No label is used for any choice.

- **audio**: each annotated call's log-mel spectrogram at the recording's own rate (64 bands, 16 ms window,
  2 ms hop, 500 Hz to min(12 kHz, Nyquist)); dB clipped below at the median of all calls' bins (a strong,
  label-free noise floor) and above at the maximum; centred in a frame as wide as the longest call
  (AVGN pads to the longest syllable) and resized to 32 x 32. umap-learn to 10-D (n_neighbors 30,
  min_dist 0); HDBSCAN min_cluster_size 1, 2, 4 % x min_samples 1, 5, the highest DBCV kept.
- **images**: each particle's crop (box + 10 % margin, or the whole single-particle image) in grey,
  min-max scaled, padded to a square with the median of its border, resized to 64 x 64. umap-learn to
  2-D (n_neighbors 15, min_dist 0.1); HDBSCAN min_cluster_size 1 % (at least 5), min_samples 1. The
  pixels' PCA-50 kNN balanced accuracy (k=5, stratified 5-fold) is the probe of their class information.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

AUDIO_GRID = [(frac, ms) for frac in (0.01, 0.02, 0.04) for ms in (1, 5)]
IMAGE_GRID = [(0.01, 1)]


def audio_pixels(data_dir: Path, calls: pd.DataFrame) -> np.ndarray:
    """[n, 32 * 32] spectrogram pixels of ``calls`` (wav_file, onset_s, offset_s), in their order."""
    import librosa
    import soundfile as sf
    from skimage.transform import resize

    specs: list[np.ndarray | None] = [None] * len(calls)
    for wav, rows in calls.groupby("wav_file", sort=False):
        audio, sr = sf.read(data_dir / str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        n_fft, hop = 1 << int(np.ceil(np.log2(0.016 * sr))), max(1, round(0.002 * sr))
        for i, row in zip(rows.index, rows.itertuples(), strict=True):
            start = int(row.onset_s * sr)
            clip = audio[start: max(int(row.offset_s * sr), start + n_fft)]
            mel = librosa.feature.melspectrogram(y=clip, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=64, fmin=500.0,
                                                 fmax=min(12000.0, sr / 2))
            specs[calls.index.get_loc(i)] = librosa.power_to_db(mel, ref=1.0)
    done = [s for s in specs if s is not None]
    floor = float(np.median(np.concatenate([s.ravel() for s in done])))
    ceiling = max(float(s.max()) for s in done)
    width = max(s.shape[1] for s in done)
    X = np.zeros((len(done), 32 * 32), np.float32)
    for i, s in enumerate(done):
        frame = np.zeros((s.shape[0], width), np.float32)
        left = (width - s.shape[1]) // 2
        frame[:, left: left + s.shape[1]] = np.clip((s - floor) / (ceiling - floor), 0, 1)
        X[i] = resize(frame, (32, 32), anti_aliasing=True).ravel()
    return X


def _grey_square(gray: np.ndarray) -> np.ndarray:
    from skimage.transform import resize

    g = (gray - gray.min()) / max(float(np.ptp(gray)), 1e-9)
    h, w = g.shape
    side = max(h, w)
    out = np.full((side, side), np.median(np.r_[g[0], g[-1], g[:, 0], g[:, -1]]), np.float32)
    out[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = g
    return resize(out, (64, 64), anti_aliasing=True).ravel()


def image_pixels(data_dir: Path, table: pd.DataFrame) -> np.ndarray:
    """[n, 64 * 64] grey pixels of each row of a labels table (file) or box table (image and box), in order."""
    from quagga.images.io import read_pixels, to_gray

    X = np.zeros((len(table), 64 * 64), np.float32)
    column = "file" if "file" in table else "image"
    for name, rows in table.groupby(column, sort=False):
        gray = to_gray(read_pixels(data_dir / str(name)), "luminance")
        for i, row in zip(rows.index, rows.itertuples(), strict=True):
            crop = gray
            if column == "image":
                m = 0.1 * max(row.xmax - row.xmin, row.ymax - row.ymin)
                x0, y0 = int(round(max(0, row.xmin - m))), int(round(max(0, row.ymin - m)))
                x1 = int(round(min(gray.shape[1], row.xmax + m)))
                y1 = int(round(min(gray.shape[0], row.ymax + m)))
                crop = gray[y0:y1, x0:x1]
            X[table.index.get_loc(i)] = _grey_square(crop)
    return X


def cluster_pixels(X: np.ndarray, modality: str, seed: int = 0, verbose: bool = False) -> tuple[np.ndarray, dict]:
    """UMAP + HDBSCAN of the pixels, the setting chosen by DBCV (labels unseen); cluster labels and the choice."""
    import hdbscan
    import umap

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded: one thread
    if modality == "audio":
        emb = umap.UMAP(n_components=10, n_neighbors=30, min_dist=0.0, random_state=seed).fit_transform(X)
    else:
        emb = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed).fit_transform(X)
    best, best_labels = None, None
    for frac, ms in AUDIO_GRID if modality == "audio" else IMAGE_GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = hdbscan.HDBSCAN(min_cluster_size=max(5, int(frac * len(X))), min_samples=ms,
                                    gen_min_span_tree=True).fit(emb)
        row = {"min_cluster_size_frac": frac, "min_samples": ms, "dbcv": round(float(model.relative_validity_), 4),
               "n_clusters": int(model.labels_.max() + 1)}
        if verbose:
            print(json.dumps(row), flush=True)
        if best is None or row["dbcv"] > best["dbcv"]:
            best, best_labels = row, model.labels_
    method = ("AVGN-style spectrograms (median floor, padded to the longest call), UMAP 10-D, HDBSCAN by DBCV"
              if modality == "audio" else "grey pixels 64 x 64, UMAP 2-D, HDBSCAN 1 %")
    return np.asarray(best_labels), {**best, "method": method}


def pixel_knn(X: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Balanced kNN accuracy (k=5, stratified 5-fold) on the pixels' PCA-50 (fitted without labels)."""
    from benchutil import knn_scores
    from sklearn.decomposition import PCA

    z = PCA(min(50, X.shape[1], len(X)), random_state=seed).fit_transform(X)
    return knn_scores(z, labels, seed)["balanced_accuracy"]


def load(data_dir: Path) -> tuple[str, pd.DataFrame]:
    """Modality and labelled table of a folder laid out like the shared sets (rows without a label dropped)."""
    for name, modality in (("annotations.csv", "audio"), ("boxes.csv", "images"), ("labels.csv", "images")):
        if (data_dir / name).is_file():
            table = pd.read_csv(data_dir / name)
            return modality, table[table["label"].notna()].reset_index(drop=True)
    raise SystemExit(f"{data_dir}: no annotations.csv, boxes.csv or labels.csv")


def folder_pixels(data_dir: Path) -> tuple[str, pd.DataFrame, np.ndarray]:
    """Modality, labelled items (calls without length and boxes under 2 px left out) and their pixels."""
    modality, table = load(data_dir)
    if modality == "audio":
        table = table[table["offset_s"] > table["onset_s"]].reset_index(drop=True)
        return modality, table, audio_pixels(data_dir, table)
    if "xmin" in table:
        table = table[(table["xmax"] - table["xmin"] >= 2) & (table["ymax"] - table["ymin"] >= 2)]
        table = table.reset_index(drop=True)
    return modality, table, image_pixels(data_dir, table)


def main() -> None:
    from sklearn import metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    modality, table, X = folder_pixels(args.data_dir)
    y = table["label"].astype(str).to_numpy()
    found, chosen = cluster_pixels(X, modality, args.seed, verbose=True)
    h, c, v = metrics.homogeneity_completeness_v_measure(y, found)
    out = {"data": args.data_dir.name, "n_items": len(y), "n_labels": len(set(y)), **chosen,
           "noise_fraction": round(float(np.mean(found < 0)), 4), "homogeneity": round(h, 4),
           "completeness": round(c, 4), "v_measure": round(v, 4),
           "ari": round(metrics.adjusted_rand_score(y, found), 4)}
    if modality == "images":
        out["knn_balanced_accuracy"] = pixel_knn(X, y, args.seed)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
