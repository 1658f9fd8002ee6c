"""Thin command line: parse -> validate -> log -> call one core function per stage.

Snakemake rules call these subcommands; a user can call them by hand too. Stage parameters arrive as
one JSON object (a validated config section), become a frozen dataclass, and are recorded next to the
stage's outputs. User mistakes end with one line naming the problem and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quagga import __version__
from quagga.params import (
    AudioParams,
    ClusterParams,
    EmbedParams,
    EvaluateParams,
    ImageParams,
    ParamsError,
    ReportParams,
    TrainParams,
    from_dict,
    to_dict,
)

log = logging.getLogger("quagga")


def _params(cls: type, text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"--params is not valid JSON: {exc}") from exc
    return from_dict(cls, data)


def cmd_demo_data(args: argparse.Namespace) -> None:
    from quagga.demo import generate_demo_data

    counts = generate_demo_data(Path(args.out), seed=args.seed)
    log.info("demo data in %s: %s", args.out, counts)


def cmd_check_config(args: argparse.Namespace) -> None:
    from quagga.config import load_config

    config = load_config(args.config)
    log.info("config OK: datasets %s", ", ".join(config["datasets"]))


def _tile_params(modality: str, section: str) -> tuple[Any, dict[str, Any]]:
    """A dataset's front-end params and the tile parameters a store made from them records."""
    if modality == "audio":
        audio = _params(AudioParams, section)
        return audio, to_dict(audio.spectrogram)
    images = _params(ImageParams, section)
    return images, to_dict(images.normalize)


def _resolve_settings(modality: str, section: str, base_dir: Path) -> tuple[Any, Any]:
    """The front-end params with every ``auto`` value found from the data, and how each was chosen."""
    from quagga.settings import resolve_settings

    return resolve_settings(modality, _tile_params(modality, section)[0], base_dir)


def cmd_settings(args: argparse.Namespace) -> None:
    from quagga.settings import write_settings

    section, taken = args.params, {}
    if args.reference:  # a projected dataset: the reference's tile settings, the rest found from its own data
        from quagga.project import Reference, reference_section

        overlaid, taken = reference_section(json.loads(args.params), args.modality,
                                            Reference.open(args.reference, need_models=False),
                                            json.loads(args.explicit or "{}"))
        section = json.dumps(overlaid)
    resolved, choices = _resolve_settings(args.modality, section, Path(args.base_dir).resolve())
    choices.records.update(taken)
    write_settings(args.out, args.modality, json.loads(args.params), to_dict(resolved), choices)


def _settings_for_tiles(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(resolved params, tile params they make, store metadata on how they were chosen) for ``quagga tiles``.

    From ``--settings`` (the settings stage's output, refused when made from another config section) or, without
    it, resolved here.
    """
    from quagga.settings import read_settings

    requested = json.loads(args.params)
    if args.settings:
        settings = read_settings(args.settings)
        if settings.get("requested") != requested or settings.get("modality") != args.modality:
            raise ParamsError(f"{args.settings} was made for other {args.modality} parameters than --params; "
                              "rerun `quagga settings` (Snakemake does this by itself)")
        resolved_text, records = json.dumps(settings["resolved"]), settings["choices"]
    else:
        resolved, choices = _resolve_settings(args.modality, args.params, Path(args.base_dir).resolve())
        resolved_text, records = json.dumps(to_dict(resolved)), choices.records
    params, tile_params = _tile_params(args.modality, resolved_text)
    meta = {"requested_tile_params": _tile_params(args.modality, args.params)[1], "settings": records}
    return params, tile_params, meta


def cmd_tiles(args: argparse.Namespace) -> None:
    from quagga.tiles.store import merge_stores, parse_shard

    base_dir = Path(args.base_dir).resolve()
    params, tile_params, meta = _settings_for_tiles(args)
    k, n = parse_shard(args.shard)
    if args.threads == 1:
        write_tiles(args.modality, params, tile_params, meta, base_dir, (k, n), args.out)
        return
    # T workers tile T contiguous blocks of this job's recordings / images, merged in order: the store one
    # worker would write (a job that is itself shard k of n splits into blocks k*T .. k*T+T-1 of n*T)
    import tempfile

    from quagga.pool import run_tasks

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.blocks-") as tmp:
        blocks = [str(Path(tmp) / str(t)) for t in range(args.threads)]
        run_tasks([(write_tiles, (args.modality, params, tile_params, meta, base_dir, (k * args.threads + t,
                                  n * args.threads), block)) for t, block in enumerate(blocks)], args.threads)
        merge_stores(out, blocks, allow_empty=n > 1, consume=True)  # empty: as one process writes shard k of n > 1


def write_tiles(modality: str, params: Any, tile_params: dict, meta: dict, base_dir: Path,
                shard: tuple[int, int], out: str) -> int:
    """The tile store of one block (``shard``) of a dataset's recordings or images; its tile count."""
    from quagga.tiles.store import write_store

    extra = None
    if modality == "audio":
        from quagga.audio import iter_audio_tiles

        items = iter_audio_tiles(params, base_dir, shard=shard)
    else:
        from quagga.images import found_boxes_writer, iter_image_tiles

        items = iter_image_tiles(params, base_dir, shard=shard)
        extra = found_boxes_writer(params, base_dir)
    # one shard may hold no tile (its recordings all skipped): the merged store must not be empty
    return write_store(out, items, tile_params=tile_params, modality=modality, extra=extra,
                       allow_empty=shard[1] > 1, meta=meta)


def cmd_merge_tiles(args: argparse.Namespace) -> None:
    from quagga.tiles.store import merge_stores

    merge_stores(args.out, args.shards)


def cmd_train(args: argparse.Namespace) -> None:
    from quagga.models.train import train_model
    from quagga.tiles.store import TileStore

    if args.tiles_params:  # refuse tiles made otherwise than the config says
        store = TileStore(args.tiles)
        store.require_params(_tile_params(store.meta["modality"], args.tiles_params)[1], requested=True)
    train_model(Path(args.tiles), _params(TrainParams, args.params), Path(args.out))


def cmd_encode(args: argparse.Namespace) -> None:
    from quagga.models.encode import encode_store

    encode_store(Path(args.tiles), Path(args.checkpoint), Path(args.out),
                 examples_path=Path(args.examples) if args.examples else None, seed=args.seed)


def cmd_embed(args: argparse.Namespace) -> None:
    import pandas as pd

    from quagga.embed.morphology import MorphologyScaling, morphology_setting
    from quagga.embed.parametric_umap import cluster_map_name, embed_latents
    from quagga.tables import write_json, write_table
    from quagga.tiles.store import TileStore

    params = _params(EmbedParams, args.params)
    latents = pd.read_parquet(args.latents)
    index = TileStore(args.tiles).index if args.tiles else None
    if params.morphology is True and index is None:
        raise ParamsError("embed.morphology needs the tile store (--tiles) whose features it adds")
    morphology, how = morphology_setting(params.morphology, index)
    params = dataclasses.replace(params, morphology=morphology)
    scaling = MorphologyScaling.fit(latents, index) if morphology else None
    if scaling is not None:
        latents = scaling.apply(latents, index)
    embedding, map2d, map_nd = embed_latents(latents, params, workers=args.threads)
    models = Path(args.models_dir)
    models.mkdir(parents=True, exist_ok=True)
    # how the features were scaled: a dataset projected onto these maps is scaled the same way
    write_json(scaling.to_dict() if scaling else {"features": []}, models / "morphology.json")
    map2d.save(models / "umap_2d.pt")
    map_nd.save(models / cluster_map_name(params.cluster_dims))
    write_table(embedding, args.out, {**to_dict(params), "settings": {"morphology": how}})


def cmd_cluster(args: argparse.Namespace) -> None:
    import pandas as pd

    from quagga.embed.cluster import cluster_embedding
    from quagga.tables import write_table

    params = _params(ClusterParams, args.params)
    clusters, _ = cluster_embedding(pd.read_parquet(args.embedding), params)
    # the settings the label-free selection chose (and every candidate's scores) ride with the table
    write_table(clusters, args.out, {**to_dict(params), **clusters.attrs.get("selection", {})})


def cmd_project(args: argparse.Namespace) -> None:
    from quagga.project import project_store

    project_store(args.reference, args.tiles, args.out, seed=args.seed, dataset=args.dataset)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from quagga.evaluate.dataset import evaluate_dataset
    from quagga.tables import write_json

    latents = Path(args.latents) if args.latents else None
    metrics = evaluate_dataset(Path(args.tiles), Path(args.clusters), latents, _params(EvaluateParams, args.params),
                               corrections_path=Path(args.corrections) if args.corrections else None,
                               predicted_path=Path(args.predicted) if args.predicted else None,
                               embedding_path=Path(args.embedding) if args.embedding else None,
                               workers=args.threads)
    write_json(metrics, args.out)
    log.info("V-measure %.3f, ARI %.3f, %d clusters, noise %.1f %%, %d likely mislabelled", metrics["v_measure"],
             metrics["ari"], metrics["n_clusters"], 100 * metrics["noise_fraction"], metrics["n_likely_mislabelled"])


def cmd_report(args: argparse.Namespace) -> None:
    from quagga.config import input_paths
    from quagga.report import build_report
    from quagga.report.covariates import item_covariates
    from quagga.tiles.store import TileStore

    results = Path(args.results)
    run_info = json.loads(args.run_info) if args.run_info else {}
    dataset = run_info.get("config")
    inputs = {k: str(v) for k, v in input_paths({"datasets": {args.dataset: dataset}}, args.dataset).items()
              } if dataset else {}
    if inputs:  # where the data came from, as absolute paths (the config may hold relative ones)
        run_info["inputs"] = inputs
    run_info.update({"quagga": __version__, "python": platform.python_version(),
                     "report time": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    examples = results / "reconstructions.npz"
    curve = results / "models" / "metrics.csv"
    predicted = results / "predicted_labels.csv"
    build_report(
        dataset=args.dataset,
        tiles_dir=results / "tiles",
        latents_path=results / "latents.parquet",
        embedding_path=results / "embedding.parquet",
        clusters_path=results / "clusters.parquet",
        metrics_path=results / "metrics.json",
        examples_path=examples if examples.exists() else None,
        training_curve_path=curve if curve.exists() else None,
        params=_params(ReportParams, args.params),
        out_dir=Path(args.out),
        run_info=run_info,
        source_root=Path(args.source_root) if args.source_root else None,
        predicted_path=predicted if predicted.exists() else None,
        image_page=((dataset or {}).get("images") or {}).get("page", 0),  # the TIFF page the tiles came from
        workers=args.threads,
        reference_dir=Path(args.reference) if args.reference else None,
        metadata_path=Path(args.metadata) if args.metadata else None,
        table_covariates=item_covariates(TileStore(results / "tiles").index, dataset) if dataset else None,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quagga", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"quagga {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], None], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        return p

    p = add("demo-data", cmd_demo_data, "write the bundled demo data (audio + images with labels)")
    p.add_argument("--out", default="data/demo")
    p.add_argument("--seed", type=int, default=0)

    p = add("check-config", cmd_check_config, "validate a config file against the schema")
    p.add_argument("config")

    p = add("settings", cmd_settings, "find a dataset's `auto` tile settings from its data (settings.json)")
    p.add_argument("--modality", choices=["audio", "images"], required=True)
    p.add_argument("--params", required=True, help="JSON: the dataset's audio or images section")
    p.add_argument("--base-dir", default=".", help="relative input paths start here")
    p.add_argument("--out", required=True, help="settings.json")
    p.add_argument("--reference", default="", help="results folder of a finished run: its tile settings are used "
                                                  "(a dataset projected onto it)")
    p.add_argument("--explicit", default="", help="JSON: the tile settings the config gives explicitly (--reference "
                                                 "refuses those that differ from the reference's)")

    p = add("tiles", cmd_tiles, "make the tile store of one dataset")
    p.add_argument("--modality", choices=["audio", "images"], required=True)
    p.add_argument("--params", required=True, help="JSON: the dataset's audio or images section")
    p.add_argument("--settings", help="settings.json of `quagga settings` (without it, `auto` values are found here)")
    p.add_argument("--base-dir", default=".", help="relative input paths start here")
    p.add_argument("--shard", default="0/1", help="K/N: tile only the K-th (from 0) of N contiguous blocks of the "
                                                  "recordings / images (merge the N stores with merge-tiles)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="processes that tile contiguous blocks side by side (the same store as one process)")

    p = add("merge-tiles", cmd_merge_tiles, "concatenate the shard stores of `tiles --shard` into one store")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+", help="shard stores, in shard order")

    p = add("train", cmd_train, "train the autoencoder on a tile store")
    p.add_argument("--tiles", required=True)
    p.add_argument("--params", required=True, help="JSON: the dataset's train section")
    p.add_argument("--tiles-params", default="", help="JSON: the audio/images section the tiles must come from")
    p.add_argument("--out", required=True, help="model folder (vae.ckpt, metrics.csv, checkpoints/)")

    p = add("encode", cmd_encode, "encode every tile to its latent vector")
    p.add_argument("--tiles", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="latents parquet")
    p.add_argument("--examples", help="npz of reconstructions, prior samples, interpolation")
    p.add_argument("--seed", type=int, default=0)

    p = add("embed", cmd_embed, "ParametricUMAP of the latents (2-D map + n-D for clustering)")
    p.add_argument("--latents", required=True)
    p.add_argument("--tiles", help="tile store whose morphology features embed.morphology adds")
    p.add_argument("--params", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--models-dir", required=True)
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="2 or more: the 2-D and the n-D map are fitted side by side")

    p = add("cluster", cmd_cluster, "HDBSCAN on the n-D embedding")
    p.add_argument("--embedding", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--out", required=True)

    p = add("project", cmd_project, "put a tile store on a finished run's map, in its clusters (no training)")
    p.add_argument("--reference", required=True, help="results folder of the finished run (results/<dataset>)")
    p.add_argument("--tiles", required=True, help="tile store made with the reference's tile settings")
    p.add_argument("--out", required=True, help="folder for latents, embedding, clusters, projection.json")
    p.add_argument("--dataset", default="", help="the projected dataset's name (recorded)")
    p.add_argument("--seed", type=int, default=0)

    p = add("evaluate", cmd_evaluate, "compare clusters with the human labels")
    p.add_argument("--tiles", required=True)
    p.add_argument("--clusters", required=True)
    p.add_argument("--latents", help="latents parquet: adds the few-label classifier curve and label propagation")
    p.add_argument("--embedding", help="embedding parquet: its n-D map is a feature set for label propagation too")
    p.add_argument("--params", default="{}", help="JSON: the dataset's evaluate section")
    p.add_argument("--corrections", nargs="?", help="CSV item_id,label: labels that replace the annotations'")
    p.add_argument("--out", required=True, help="metrics.json")
    p.add_argument("--predicted", help="CSV of every item's predicted label (predicted_labels.csv)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="processes for the bootstrap, few-label curve and propagation (1: no worker processes)")

    p = add("report", cmd_report, "write the dataset's HTML report")
    p.add_argument("--dataset", required=True)
    p.add_argument("--results", required=True, help="the dataset's results folder")
    p.add_argument("--params", required=True)
    p.add_argument("--run-info", default="", help="JSON shown in the run summary")
    p.add_argument("--source-root", default="", help="folder the items' sources are relative to (clips, crops)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="processes that make the map's thumbnails and clips (1: no worker processes)")
    p.add_argument("--reference", default="", help="results folder of the run this dataset was projected onto")
    p.add_argument("--metadata", default="", help="CSV of covariates keyed by recording / image file")
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a user mistake (bad config, input or store): one line, no traceback."""
    from quagga.audio.annotations import AnnotationError
    from quagga.config import ConfigError
    from quagga.evaluate.corrections import CorrectionsError
    from quagga.project import ReferenceError
    from quagga.settings import SettingsError
    from quagga.tiles.store import StoreError

    return (ConfigError, ParamsError, StoreError, AnnotationError, SettingsError, CorrectionsError,
            ReferenceError, FileNotFoundError)


def limit_threads() -> None:
    """Use the threads the job was given, no more: Snakemake (and SLURM's job scripts) pass a rule's ``threads``
    as OMP_NUM_THREADS, which torch and BLAS read, but numba (umap-learn's and pynndescent's kernels) reads
    only NUMBA_NUM_THREADS and would start one thread per core of the node. Called before numba is imported."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        os.environ.setdefault("NUMBA_NUM_THREADS", threads)


def main(argv: list[str] | None = None) -> int:
    limit_threads()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except _user_errors() as exc:
        log.error("quagga %s: %s", args.command, exc)
        return 2
    except Exception as exc:
        if not _disk_full(exc):
            raise
        log.error("quagga %s: disk full or file size limit reached while writing %s (%s); no partial output was "
                  "left in its place: free some space and rerun", args.command, getattr(args, "out", "its output"), exc)
        return 3
    return 0


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_DISK_FULL_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")


def _disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a write that ran out of disk, quota or file size limit.

    Writers report it differently: OSError with an errno, pyarrow and torch only in the message.
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in _DISK_FULL_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
