"""Does quagga recover the human labels? Its pipeline against the strong pixel baseline, in the same run.

    .venv/bin/python bench/quality.py DATA_DIR [--no-preset] [--config config/NAME.yaml] [--results results]
                                      [--seeds 3]

DATA_DIR is laid out like the shared sets:

- audio: ``annotations.csv`` with ``wav_file, onset_s, offset_s, label`` (paths relative to DATA_DIR);
- images: ``labels.csv`` with ``file, label`` (one particle per image), or ``boxes.csv`` with
  ``image, label, xmin, ymin, xmax, ymax`` (field images), paths relative to DATA_DIR.

The bench writes a config for the folder (dataset name = the folder's name) and runs quagga's pipeline on
it with Snakemake, up to the clusters: ``<results>/<name>/`` (a finished stage whose inputs and parameters
are unchanged is not redone, so a second call only re-measures; ``--rerun-triggers`` adds e.g. ``code``).
``--no-preset`` runs what a new user gets: the defaults only (every ``auto`` setting found from the data).
Otherwise dataset settings come from ``--config`` or, when it is not given, from ``config/<name>.yaml`` if
that file exists; only the data paths are replaced.

Then, in the same invocation:

- **pixels** (``bench/pixels.py``, the strong baseline; no network, no label used for any choice):
  spectrograms or grey pixels -> umap-learn -> HDBSCAN chosen by DBCV. quagga must at least match it.
- **audio**: the AVGN method's naive form (Sainburg et al. 2020), the published reference point: per-syllable
  log-mel spectrograms, each min-max normalised, padded to the longest syllable; umap-learn UMAP to 2-D
  (n_neighbors 15, min_dist 0.1); HDBSCAN with min_cluster_size 1 %. And for every label split over
  several clusters, what tells its clusters apart in the song (duration, the call before and the gap).
- **images**: balanced kNN accuracy (k=5, stratified 5-fold) on the latents against the same classifier
  on the raw pixels' PCA (as many components as latent dims, fitted without labels); with
  ``embed.morphology``, also on what the embed stage embeds (latents plus the scaled morphology features).
- **whole-chain stability** (``--seeds N``, default 3): the whole pipeline (VAE training, ParametricUMAP,
  cluster selection) rerun with seeds 1..N-1 into ``<results>/seed<k>/``; the V-measure of each and the
  ARI between every pair of clusterings (the tiles are the same: ``auto`` settings use no random draw).

Every agreement figure counts HDBSCAN's noise as its own cluster. Ends with one JSON line: quagga's
figures at the top level, the baselines' under ``baselines``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pixels
import yaml
from benchutil import ROOT, knn_scores
from sklearn.metrics import adjusted_rand_score

from quagga.embed.morphology import with_morphology
from quagga.evaluate.agreement import label_agreement
from quagga.evaluate.few_labels import pixel_pca
from quagga.tables import read_table_params
from quagga.tiles.store import TileStore

FIGURES = ("homogeneity", "completeness", "v_measure", "ari", "noise_fraction", "n_clusters")


# ---------------------------------------------------------------------------------------------- config
def layout(data_dir: Path) -> tuple[str, str]:
    """Modality and table of a data folder: ('audio', annotations.csv), ('images', labels.csv | boxes.csv)."""
    for name, modality in (("annotations.csv", "audio"), ("boxes.csv", "images"), ("labels.csv", "images")):
        if (data_dir / name).is_file():
            return modality, name
    sys.exit(f"{data_dir}: no annotations.csv (audio), boxes.csv or labels.csv (images)")


def _rel(path: Path) -> str:
    """A path as the config writes it: relative to the repository when possible (the workflow runs there),
    so a config written by hand for the same folder gives the same parameters (and reuses its results)."""
    return os.path.relpath(path.resolve(), ROOT)


def build_config(data_dir: Path, name: str, base: Path | None, results: Path) -> dict:
    """A one-dataset workflow config for ``data_dir``: ``base``'s dataset settings, the folder's paths."""
    modality, table = layout(data_dir)
    dataset: dict = {}
    top: dict = {}
    if base is not None:
        raw = yaml.safe_load(base.read_text()) or {}
        datasets = raw.get("datasets", {})
        if name in datasets:
            dataset = datasets[name]
        elif len(datasets) == 1:
            dataset = next(iter(datasets.values()))
        top = {k: raw[k] for k in ("seed",) if k in raw}
    dataset = json.loads(json.dumps(dataset))  # deep copy
    dataset["modality"] = modality
    if modality == "audio":
        audio = dataset.setdefault("audio", {})
        audio.update({
            "recordings": _rel(data_dir), "annotations": _rel(data_dir / table), "annotation_format": "csv",
            "label_column": "label", "segments": audio.get("segments", "annotations"),
        })
    else:
        images = dataset.setdefault("images", {})
        images["images"] = _rel(data_dir)
        if table == "boxes.csv":
            images.update({"input": "boxes", "boxes": _rel(data_dir / table), "labels": None})
        else:
            images.update({"input": "single", "labels": _rel(data_dir / table), "boxes": None})
    return {**top, "results": _rel(results), "run_datasets": [name], "datasets": {name: dataset}}


def run_pipeline(config_path: Path, target: Path, cores: int, triggers: list[str], force: Sequence[str] = ()) -> float:
    """Snakemake up to ``target`` (a finished, unchanged stage is kept; the rules in ``force`` and what
    follows them are redone); wall seconds."""
    cmd = [sys.executable, "-m", "snakemake", _rel(target), "--cores", str(cores), "--rerun-triggers", *triggers,
           "--configfile", str(config_path)]
    if force:
        cmd += ["--forcerun", *force]
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    # the rules call `python -m quagga`: the interpreter running this bench (its venv) must come first on PATH
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"the workflow failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    done = [line.strip().rstrip(":") for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip().startswith(("rule ", "localrule "))]
    print(f"  {', '.join(done) or 'nothing to redo: results up to date'} ({time.perf_counter() - started:.0f} s)")
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------- AVGN re-implemented
def syllable_spectrograms(data_dir: Path, annotations: pd.DataFrame, spec: dict) -> list[np.ndarray]:
    """Log-mel power (dB) of each annotated syllable: 16 ms window, 2 ms hop, 32 mel bands.

    Band edges from the dataset's spectrogram settings (as quagga uses), else 500 Hz to min(15 kHz, sr/2).
    Recordings are read at their own rate, one file at a time.
    """
    import librosa
    import soundfile as sf

    out: list[np.ndarray | None] = [None] * len(annotations)
    for wav, rows in annotations.groupby("wav_file", sort=False):
        audio, sr = sf.read(data_dir / str(wav), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        n_fft = 1 << int(np.ceil(np.log2(0.016 * sr)))
        hop = max(1, round(0.002 * sr))
        fmin, fmax = float(spec.get("fmin", 500.0)), min(float(spec.get("fmax", 15000.0)), sr / 2)
        for i, row in zip(rows.index, rows.itertuples(), strict=True):
            clip = audio[int(row.onset_s * sr): max(int(row.offset_s * sr), int(row.onset_s * sr) + n_fft)]
            mel = librosa.feature.melspectrogram(
                y=clip, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=32, fmin=fmin, fmax=fmax, center=False
            )
            out[annotations.index.get_loc(i)] = librosa.power_to_db(mel, ref=1.0, amin=1e-12, top_db=None)
    return out  # type: ignore[return-value]


def pad_flat(specs: list[np.ndarray], fill: float = 0.0, max_frames: int = 128) -> np.ndarray:
    """Centre every spectrogram in the longest one's width (AVGN pads to the longest syllable); flatten.

    Longer than ``max_frames``: every spectrogram's time axis is shrunk by the same factor first.
    """
    from scipy.ndimage import zoom

    width = max(s.shape[1] for s in specs)
    if width > max_frames:
        specs = [zoom(s, (1, max_frames / width), order=1) for s in specs]
        width = max(s.shape[1] for s in specs)
    out = np.full((len(specs), specs[0].shape[0], width), fill, dtype=np.float32)
    for i, s in enumerate(specs):
        left = (width - s.shape[1]) // 2
        out[i, :, left: left + s.shape[1]] = s
    return out.reshape(len(specs), -1)


def _hdbscan(X: np.ndarray, min_cluster_size: int):  # noqa: ANN202 - a fitted hdbscan.HDBSCAN
    import hdbscan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, gen_min_span_tree=True).fit(X)


def avgn_naive(specs: list[np.ndarray], seed: int) -> tuple[np.ndarray, str]:
    """Cluster labels of the AVGN method in its naive form and the settings it used."""
    import umap

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded: one thread
    normed = [(s - s.min()) / max(float(s.max() - s.min()), 1e-9) for s in specs]
    reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed)
    emb = reducer.fit_transform(pad_flat(normed)).astype(np.float64)
    mcs = max(2, int(0.01 * len(specs)))
    return _hdbscan(emb, mcs).labels_, f"min-max per syllable, UMAP 2-D, mcs {mcs} (1 %)"


# ------------------------------------------------------------------------------------------- helpers
def label_splits(index: pd.DataFrame, clusters: pd.DataFrame, min_share: float = 0.1) -> list[dict]:
    """Each label whose calls fall in several clusters (each holding >= ``min_share`` of them), and what
    its clusters differ in: duration, the call before (label, share) and the silent gap to it (ms)."""
    calls = index[["item_id", "source", "label", "onset_s", "offset_s"]].sort_values(["source", "onset_s"])
    before = calls.groupby("source")
    calls = calls.assign(
        previous=before["label"].shift(1).fillna("(first)"),
        gap_ms=1000 * (calls["onset_s"] - before["offset_s"].shift(1)),
        duration_ms=1000 * (calls["offset_s"] - calls["onset_s"]),
    ).merge(clusters[["item_id", "cluster"]], on="item_id")
    calls = calls[calls["label"].notna() & (calls["cluster"] >= 0)]
    out = []
    for label, rows in calls.groupby("label"):
        counts = rows["cluster"].value_counts()
        big = counts[counts >= min_share * len(rows)]
        if len(big) < 2:
            continue
        for cluster in big.index:
            part = rows[rows["cluster"] == cluster]
            prev = part["previous"].value_counts()
            out.append({"label": str(label), "cluster": int(cluster), "n": int(len(part)),
                        "duration_ms": round(float(part["duration_ms"].median()), 1),
                        "previous": str(prev.index[0]), "previous_share": round(float(prev.iloc[0] / len(part)), 3),
                        "gap_ms": round(float(part["gap_ms"].median()), 1)})
    return out


def print_splits(splits: list[dict]) -> None:
    print("\nlabels split over clusters (what the clusters differ in; labels are not used for any choice):")
    print(f"{'label':>7}{'cluster':>9}{'n':>7}{'duration ms':>13}{'call before':>13}{'share':>8}{'gap ms':>8}")
    for r in splits:
        print(f"{r['label']:>7}{r['cluster']:>9}{r['n']:>7}{r['duration_ms']:>13.0f}{r['previous']:>13}"
              f"{r['previous_share']:>8.2f}{r['gap_ms']:>8.0f}")


def figures(labels: np.ndarray, clusters: np.ndarray) -> dict:
    """The agreement figures the bench prints (noise as its own cluster), rounded."""
    scores = label_agreement(pd.Series(labels), pd.Series(clusters))
    return {k: (round(scores[k], 4) if isinstance(scores[k], float) else scores[k]) for k in FIGURES}


def whole_chain_seeds(args: argparse.Namespace, data_dir: Path, name: str, base: Path | None, first: pd.DataFrame,
                      labels: pd.Series) -> dict:
    """The pipeline rerun from the VAE on with seeds 1..N-1; V of each and ARI between every pair of runs."""
    runs = {0: first.set_index("item_id")["cluster"]}
    scores = {0: figures(labels.to_numpy(), runs[0].loc[labels.index].to_numpy())}
    for seed in range(1, args.seeds):
        results = args.results.resolve() / f"seed{seed}"
        config = {**build_config(data_dir, name, base, results), "seed": seed}
        path = results / name / "bench-config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        run_pipeline(path.resolve(), results / name / "clusters.parquet", args.cores, args.rerun_triggers)
        runs[seed] = pd.read_parquet(results / name / "clusters.parquet").set_index("item_id")["cluster"]
        scores[seed] = figures(labels.to_numpy(), runs[seed].loc[labels.index].to_numpy())
        print(f"  seed {seed}: V {scores[seed]['v_measure']:.3f}, {scores[seed]['n_clusters']} clusters, "
              f"noise {scores[seed]['noise_fraction']:.3f}", flush=True)
    pairs = {f"{a}-{b}": round(float(adjusted_rand_score(runs[a], runs[b].loc[runs[a].index])), 4)
             for a, b in itertools.combinations(sorted(runs), 2)}
    v = [scores[k]["v_measure"] for k in sorted(scores)]
    return {"seeds": args.seeds, "pairwise_ari": pairs, "min_ari": min(pairs.values()) if pairs else None,
            "v_measure": v, "v_mean": round(float(np.mean(v)), 4), "v_min": round(float(np.min(v)), 4),
            "n_clusters": [scores[k]["n_clusters"] for k in sorted(scores)],
            "reseeded": "the whole chain: VAE training, ParametricUMAP and cluster selection"}


def settings_used(out_dir: Path) -> dict:
    """What every setting of the run was and where it came from (config, data or fallback): tiles and training."""
    store = json.loads((out_dir / "tiles" / "store.json").read_text()).get("settings", {})
    trained = out_dir / "models" / "params.json"
    train = json.loads(trained.read_text()).get("settings", {}) if trained.is_file() else {}
    embed = read_table_params(out_dir / "embedding.parquet").get("settings", {})
    return {**store, **{f"train.{k}": v for k, v in train.items()}, **{f"embed.{k}": v for k, v in embed.items()}}


def print_settings(settings: dict) -> None:
    print("\nsettings (source: config, data or fallback):")
    for key, record in settings.items():
        print(f"  {key:32} {str(record['value']):>10}  {record['source']:8} {record['statistic']}")


def print_table(rows: dict[str, dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'method':28}{'H':>8}{'C':>8}{'V':>8}{'ARI':>8}{'noise':>8}{'clusters':>10}")
    for name, r in rows.items():
        print(f"{name:28}{r['homogeneity']:>8.3f}{r['completeness']:>8.3f}{r['v_measure']:>8.3f}"
              f"{r['ari']:>8.3f}{r['noise_fraction']:>8.3f}{r['n_clusters']:>10d}")


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--config", type=Path, help="dataset settings (default: config/<folder name>.yaml if any)")
    parser.add_argument("--no-preset", action="store_true",
                        help="what a new user gets: the defaults only, no config/<folder name>.yaml")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="workflow results folder")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the stability check (1: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baselines' UMAP")
    parser.add_argument("--rerun-triggers", nargs="+", default=["mtime", "params", "input"],
                        help="what makes Snakemake redo a finished stage (add 'code' to retrain after code edits)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data_dir = args.data_dir.resolve()
    name = data_dir.name
    modality, table_name = layout(data_dir)
    base = None if args.no_preset else args.config or (ROOT / "config" / f"{name}.yaml")
    base = base if base is not None and base.is_file() else None
    config = build_config(data_dir, name, base, args.results.resolve())
    config_path = args.results / name / "bench-config.yaml"  # next to the outputs it makes
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"{data_dir} ({modality}, {table_name}); settings from {base or 'the defaults'}; config {config_path}")
    out_dir = args.results / name
    pipeline_s = run_pipeline(config_path.resolve(), out_dir / "clusters.parquet", args.cores, args.rerun_triggers)

    morphology = read_table_params(out_dir / "embedding.parquet").get("morphology") is True  # as resolved
    store = TileStore(out_dir / "tiles")
    clusters = pd.read_parquet(out_dir / "clusters.parquet")
    latents = pd.read_parquet(out_dir / "latents.parquet")
    items = store.index[["item_id", "label"]].reset_index(names="row").merge(clusters, on="item_id")
    items = items[items["label"].notna()].reset_index(drop=True)
    labels = items["label"].astype(str).to_numpy()
    # what the embed stage embedded, by item: the latents, with embed.morphology also the scaled features
    embedded = latents.set_index("item_id").loc[clusters["item_id"]].reset_index()
    if morphology:
        embedded = with_morphology(embedded, store.index)
    quagga = figures(labels, items["cluster"].to_numpy())
    chosen = read_table_params(out_dir / "clusters.parquet").get("selected")
    result: dict = {"dataset": name, "modality": modality, "n_items": len(items), **quagga,
                    "settings": {**settings_used(out_dir)}}
    if chosen:
        result["selected"] = chosen
    print_settings(result["settings"])
    baselines: dict = {}
    rows = {"quagga": quagga}

    started = time.perf_counter()
    _, table, X = pixels.folder_pixels(data_dir)
    found, how = pixels.cluster_pixels(X, modality, args.seed)
    baselines["pixels"] = {**figures(table["label"].astype(str).to_numpy(), found), "method": how["method"],
                           "n_items": len(table)}
    rows["pixels (strong baseline)"] = baselines["pixels"]
    print(f"\npixel baseline: {how['method']} ({time.perf_counter() - started:.0f} s)", flush=True)

    if modality == "audio":
        # the syllables quagga tiled, in its order (a call quagga skipped is left out of AVGN too)
        annotations = store.index.loc[items["row"], ["source", "onset_s", "offset_s"]].reset_index(drop=True)
        annotations = annotations.rename(columns={"source": "wav_file"})
        spec = store.tile_params  # the band quagga used (resolved from the data where it was auto)
        started = time.perf_counter()
        avgn_labels, how_avgn = avgn_naive(syllable_spectrograms(data_dir, annotations, spec), args.seed)
        baselines["avgn_naive"] = {**figures(labels, avgn_labels), "method": how_avgn}
        rows["AVGN naive"] = baselines["avgn_naive"]
        print(f"AVGN naive: {how_avgn} ({time.perf_counter() - started:.0f} s)", flush=True)
        print_table(rows, f"{name}: {len(items)} labelled items, {len(set(labels))} labels; noise counts as a cluster")
        result["label_splits"] = label_splits(store.index, clusters)
        print_splits(result["label_splits"])
    else:
        labelled = embedded.set_index("item_id").loc[items["item_id"]]
        z = labelled.filter(regex=r"^z_\d+$").to_numpy()
        pca = pixel_pca(store.tiles, items["row"].to_numpy(), z.shape[1])
        knn = knn_scores(z, labels, args.seed)
        baselines["pixels_pca"] = knn_scores(pca, labels, args.seed)
        baselines["pixels"]["knn_balanced_accuracy"] = pixels.pixel_knn(X, table["label"].astype(str).to_numpy(),
                                                                         args.seed)
        result["knn_balanced_accuracy"] = knn["balanced_accuracy"]
        result["knn_accuracy"] = knn["accuracy"]
        print_table(rows, f"{name}: {len(items)} labelled items, {len(set(labels))} labels; noise counts as a cluster")
        pix = baselines["pixels_pca"]["balanced_accuracy"]
        print(f"\nkNN (k=5, stratified 5-fold) balanced accuracy: latents ({z.shape[1]}-D) "
              f"{knn['balanced_accuracy']:.4f}, the tiles' pixels (PCA to {z.shape[1]}) {pix:.4f}, "
              f"the baseline's grey crops (PCA-50) {baselines['pixels']['knn_balanced_accuracy']:.4f}")
        if morphology:
            both = knn_scores(labelled.filter(regex=r"^z_").to_numpy(), labels, args.seed)
            result["knn_balanced_accuracy_embedded"] = both["balanced_accuracy"]
            print(f"  latents + morphology features (what the embed stage embeds): {both['balanced_accuracy']:.4f}")
    gap = quagga["v_measure"] - baselines["pixels"]["v_measure"]
    print(f"\nquagga V {quagga['v_measure']:.3f} vs the pixel baseline's {baselines['pixels']['v_measure']:.3f}: "
          f"{gap:+.3f} ({'at least level' if gap >= 0 else 'BELOW the pixels'})")
    if chosen:
        print(f"label-free selection chose: {json.dumps(chosen)}")

    if args.seeds > 1:
        print(f"\nwhole-chain stability ({args.seeds} seeds: VAE, ParametricUMAP and clusters retrained):", flush=True)
        by_item = pd.Series(labels, index=items["item_id"])
        stability = whole_chain_seeds(args, data_dir, name, base, clusters, by_item)
        result["seed_stability"] = stability
        print(f"  V per seed {stability['v_measure']}; pairwise ARI {stability['pairwise_ari']} -> min "
              f"{stability['min_ari']:.4f}")
    result["pipeline_s"] = round(pipeline_s, 1)
    result["baselines"] = baselines
    print(json.dumps(result))


if __name__ == "__main__":
    main()
