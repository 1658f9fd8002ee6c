"""Projection: new recordings or a new core put on a map already made, in the clusters already named.

A field scientist trains once on a labelled season and keeps collecting. Retraining would give a new map,
new cluster ids and new colours, so nothing could be compared with last year's report. A *projected*
dataset instead takes everything from a finished reference run: its tiles are made with the reference's
tile settings, they are encoded with the reference's VAE, mapped with its ParametricUMAP models and placed
in its HDBSCAN clusters by approximate prediction. Nothing of the reference is written.

Items the reference never saw are flagged ``novel``: a reconstruction error above the reference's own 97.5th
percentile (the reference's VAE cannot draw them); ``novelty`` (that percentile) ranks them. On the demo's
held-back core the reconstruction error told the class the reference never had from the known ones best
(ROC AUC 0.92, against 0.62 for HDBSCAN's outlier score and 0.75 for the distance to the nearest reference
item, in latent or map space). Items in no cluster are HDBSCAN's noise (cluster -1, with their outlier
score), as in the reference, which has its own share of noise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quagga.settings import SettingsError, is_auto, read_settings

log = logging.getLogger(__name__)

# what makes a tile: taken from the reference, whatever the projected dataset's section says
REFERENCE_KEYS = {"audio": ("spectrogram",), "images": ("channel", "single_crop", "normalize")}
NOVELTY_QUANTILE = 0.975  # about 2.5 % of items like the reference's are flagged: the false-alarm rate
MORPHOLOGY_SCALING = "models/morphology.json"
PROJECTION_FILE = "projection.json"


class ReferenceError(ValueError):
    """The reference named by a dataset cannot be projected onto (missing, untrained, other modality...)."""


def explicit_tile_settings(section: dict[str, Any], modality: str) -> dict[str, Any]:
    """The tile-defining values a config section gives explicitly (not ``auto``), as dotted keys."""
    found: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for name, sub in value.items():
                walk(sub, f"{key}.{name}")
        elif not is_auto(value):
            found[key] = value

    for key in REFERENCE_KEYS[modality]:
        if key in section:
            walk(section[key], key)
    return found


def _value(section: dict[str, Any], key: str) -> Any:
    for name in key.split("."):
        if not isinstance(section, dict) or name not in section:
            return None
        section = section[name]
    return section


def conflicts(explicit: dict[str, Any], reference: dict[str, Any], where: str, reference_where: str) -> list[str]:
    """One line per explicit setting that differs from the reference's (``auto`` there: not yet known)."""
    lines = []
    for key, value in sorted(explicit.items()):
        theirs = _value(reference, key)
        if theirs is not None and not is_auto(theirs) and theirs != value:
            lines.append(f"{where}.{key} is {value!r} but the reference {reference_where} made its tiles with "
                         f"{theirs!r}: leave it out (a projected dataset takes the reference's tile settings)")
    return lines


@dataclass(frozen=True)
class Reference:
    """A finished run's results folder, checked to hold what a projection needs."""

    path: Path
    modality: str

    @classmethod
    def open(cls, path: str | Path, need_models: bool = True) -> Reference:
        """Check ``path``; ``need_models``: also the trained models (not yet there at workflow start when the
        reference is made in the same run)."""
        path = Path(path)
        if not path.is_dir():
            raise ReferenceError(f"reference {path}: no such results folder")
        settings = path / "settings.json"
        if not settings.is_file():
            raise ReferenceError(f"reference {path}: no settings.json, so not the results folder of a quagga run "
                                 "(name a dataset of the config or a folder results/<dataset> of a finished run)")
        modality = read_settings(settings).get("modality", "")
        if need_models:
            for name, what in (("models/vae.ckpt", "no trained model"),
                               ("models/umap_2d.pt", "no ParametricUMAP map (rerun its embed stage)"),
                               ("clusters.parquet", "no clusters (rerun its cluster stage)")):
                if not (path / name).is_file():
                    raise ReferenceError(f"reference {path}: {what}: {path / name} is missing")
        return cls(path, modality)

    @property
    def settings(self) -> dict[str, Any]:
        return read_settings(self.path / "settings.json")


def reference_section(requested: dict[str, Any], modality: str, reference: Reference,
                      explicit: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The projected dataset's section with the reference's tile settings in place, and how each was chosen.

    An explicit setting that differs from the reference's resolved one is an error naming both values.
    """
    if reference.modality != modality:
        raise ReferenceError(f"reference {reference.path} holds {reference.modality} tiles, this dataset is "
                             f"{modality}: a dataset can only be projected onto a map of its own modality")
    ref = reference.settings
    lines = conflicts(explicit, ref["resolved"], modality, str(reference.path))
    if lines:
        raise SettingsError("; ".join(lines))
    section = dict(requested)
    records: dict[str, dict[str, Any]] = {}
    for key in REFERENCE_KEYS[modality]:
        section[key] = ref["resolved"][key]
        for name, record in ref["choices"].items():
            if name == key or name.startswith(key + "."):
                records[name] = {**record, "source": "reference",
                                 "statistic": f"from the reference {reference.path} ({record['source']}: "
                                              f"{record['statistic']})"}
    return section, records


def novelty(errors: np.ndarray, reference_errors: np.ndarray) -> np.ndarray:
    """Each item's reconstruction error as a percentile (0..1) of the reference's: how unlike anything the
    reference's VAE learnt to draw it is (NaN errors count as ordinary)."""
    finite = np.sort(reference_errors[np.isfinite(reference_errors)])
    if not len(finite):
        return np.zeros(len(errors))
    return np.searchsorted(finite, np.nan_to_num(errors, nan=0.0), side="left") / len(finite)


def _reference_clustering(reference: Reference, selection: dict[str, Any]) -> tuple[Any, dict[int, Any]]:
    """The reference's HDBSCAN model and refined clusters, refitted from its embedding and selection record,
    checked to give its clusters again (so a projection's cluster ids are the reference's)."""
    from quagga.embed.cluster import refit

    selected = selection.get("selected")
    if not selected:
        raise ReferenceError(f"reference {reference.path}: its items were too few to form a cluster, so there are "
                             "no clusters to place new items in")
    embedding = pd.read_parquet(reference.path / "embedding.parquet")
    clusters = pd.read_parquet(reference.path / "clusters.parquet", columns=["item_id", "cluster"])
    model, refined, labels = refit(embedding, selection)
    expected = clusters.set_index("item_id")["cluster"].reindex(embedding["item_id"]).to_numpy()
    if model.labels_.max() < 0 or not np.array_equal(labels, expected):
        raise ReferenceError(f"reference {reference.path}: its clustering ({selected}) fitted again on its "
                             f"embedding does not give its clusters.parquet ({int(np.sum(labels != expected))} "
                             "items differ): were its files changed after the run? rerun its cluster stage")
    return model, refined


def project_store(reference_dir: str | Path, tiles_dir: str | Path, out_dir: str | Path, seed: int = 0,
                  dataset: str = "") -> dict[str, Any]:
    """Encode, map and cluster the tiles of ``tiles_dir`` with the reference's models; write into ``out_dir``
    latents.parquet, reconstructions.npz, embedding.parquet, clusters.parquet (with ``novel``) and
    projection.json; return the projection summary."""
    from quagga.embed.cluster import most_likely_cluster, place, predict_new
    from quagga.embed.morphology import MorphologyScaling
    from quagga.embed.parametric_umap import ParametricUMAP, cluster_map_name, latent_matrix
    from quagga.models.encode import encode_store
    from quagga.tables import read_table_params, write_json, write_table
    from quagga.tiles.store import TileStore

    reference = Reference.open(reference_dir)
    store = TileStore(tiles_dir)
    if store.meta.get("modality") != reference.modality:
        raise ReferenceError(f"reference {reference.path} holds {reference.modality} tiles, {tiles_dir} holds "
                             f"{store.meta.get('modality')} tiles")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encode_store(Path(tiles_dir), reference.path / "models" / "vae.ckpt", out / "latents.parquet",
                 examples_path=out / "reconstructions.npz", seed=seed)
    latents = pd.read_parquet(out / "latents.parquet")
    embed_params = read_table_params(reference.path / "embedding.parquet")
    scaling_path = reference.path / MORPHOLOGY_SCALING
    mapped = latents
    if scaling_path.is_file():
        scaling = json.loads(scaling_path.read_text())
        if scaling.get("features"):
            mapped = MorphologyScaling(**scaling).apply(latents, store.index)
    X = latent_matrix(mapped)
    xy = ParametricUMAP.load(reference.path / "models" / "umap_2d.pt").transform(X)
    map_nd = reference.path / "models" / cluster_map_name(int(embed_params.get("cluster_dims", 0)))
    if not map_nd.is_file():
        raise ReferenceError(f"reference {reference.path}: no clustering map {map_nd.name} (rerun its embed stage)")
    u = ParametricUMAP.load(map_nd).transform(X)
    embedding = pd.DataFrame({"item_id": latents["item_id"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    for i in range(u.shape[1]):
        embedding[f"u_{i}"] = u[:, i]
    write_table(embedding, out / "embedding.parquet", {**embed_params, "reference": str(reference.path.resolve())})

    ref_selection = read_table_params(reference.path / "clusters.parquet")
    model, refined = _reference_clustering(reference, ref_selection)
    clusters = predict_new(model, embedding)
    outside = clusters["cluster"].to_numpy() < 0  # in no cluster of the reference
    if float(ref_selection.get("noise_assigned") or 0.0) > 0 and outside.any():
        # the reference gave its noise points their most likely cluster: its projected noise gets the same
        clusters.loc[outside, "cluster"] = most_likely_cluster(model, u[outside])
    if refined:  # the reference's refined clusters: new items placed in their sub-clusters
        clusters["cluster"] = place(u.astype(np.float64), clusters["cluster"].to_numpy(),
                                    int(model.labels_.max()) + 1, refined, fitted=False)
    ref_errors = pd.read_parquet(reference.path / "latents.parquet", columns=["recon_error"])["recon_error"]
    clusters["novelty"] = novelty(latents["recon_error"].to_numpy(), ref_errors.to_numpy())
    clusters["novel"] = clusters["novelty"] > NOVELTY_QUANTILE
    summary = {
        "dataset": dataset,
        "reference": str(reference.path.resolve()),
        "reference_dataset": reference.path.resolve().name,
        "n_items": len(clusters),
        "n_novel": int(clusters["novel"].sum()),
        "n_noise": int((clusters["cluster"] < 0).sum()),
        "n_outside_clusters": int(outside.sum()),
        "novelty_quantile": NOVELTY_QUANTILE,
        "recon_error_threshold": float(np.nanquantile(ref_errors, NOVELTY_QUANTILE)),
    }
    write_table(clusters, out / "clusters.parquet",
                {"selected": ref_selection.get("selected"), "projection": summary})
    write_json(summary, out / PROJECTION_FILE)
    log.info("projected %d items onto %s: %d outside every cluster, %d novel (a reconstruction error above %.4g, "
             "the reference's %g-th percentile)", len(clusters), reference.path,
             summary["n_outside_clusters"], summary["n_novel"], summary["recon_error_threshold"],
             100 * NOVELTY_QUANTILE)
    return summary
