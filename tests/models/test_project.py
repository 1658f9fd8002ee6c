"""Projection onto a finished run: the reference's tile settings, VAE, maps and clusters, nothing refitted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagga.cli import main
from quagga.models.encode import encode_store
from quagga.models.train import train_model
from quagga.params import TrainParams
from quagga.project import (
    Reference,
    ReferenceError,
    conflicts,
    explicit_tile_settings,
    project_store,
    reference_section,
)
from quagga.settings import SettingsError
from quagga.tiles.store import StoreError, TileItem, write_store
from tests.models.conftest import TILE_PARAMS, TILE_SIZE

EMBED = {"epochs": 30, "n_neighbors": 8, "hidden": 16, "cluster_dims": 2, "batch_size": 64, "min_steps": 0}


@pytest.fixture(scope="module")
def reference(store_dir: Path, small_params: TrainParams, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on the synthetic store, laid out as the workflow lays out results/<dataset>."""
    ref = tmp_path_factory.mktemp("reference") / "blobs-and-bars"
    (ref / "models").mkdir(parents=True)
    resolved = {"normalize": {"tile_size": TILE_SIZE, "scale_mode": "fit"}, "channel": "luminance",
                "single_crop": "particle"}
    (ref / "settings.json").write_text(json.dumps({
        "modality": "synthetic", "requested": {}, "resolved": resolved,
        "choices": {"normalize.scale_mode": {"value": "fit", "source": "data", "statistic": "sizes vary 5x"}}}))
    checkpoint = train_model(store_dir, dataclasses.replace(small_params, max_epochs=4), ref / "models")
    encode_store(store_dir, checkpoint, ref / "latents.parquet")
    assert main(["embed", "--latents", str(ref / "latents.parquet"), "--params", json.dumps({**EMBED, "seed": 0}),
                 "--out", str(ref / "embedding.parquet"), "--models-dir", str(ref / "models")]) == 0
    assert main(["cluster", "--embedding", str(ref / "embedding.parquet"), "--params",
                 json.dumps({"min_cluster_size": 8, "seed": 0}), "--out", str(ref / "clusters.parquet")]) == 0
    return ref


def test_its_own_tiles_land_where_the_reference_put_them(reference: Path, store_dir: Path, tmp_path: Path) -> None:
    summary = project_store(reference, store_dir, tmp_path, dataset="again")
    ref_map = pd.read_parquet(reference / "embedding.parquet")
    new_map = pd.read_parquet(tmp_path / "embedding.parquet")
    assert list(new_map.columns) == list(ref_map.columns)
    np.testing.assert_allclose(new_map[["x", "y", "u_0", "u_1"]], ref_map[["x", "y", "u_0", "u_1"]], atol=1e-4)
    ref_clusters = pd.read_parquet(reference / "clusters.parquet")
    new_clusters = pd.read_parquet(tmp_path / "clusters.parquet")
    assert ref_clusters["cluster"].max() >= 1  # blobs and bars: at least two clusters to keep apart
    same = new_clusters["cluster"].to_numpy() == ref_clusters["cluster"].to_numpy()
    member = ref_clusters["probability"].to_numpy() > 0  # in a cluster of the fit, not given one from noise
    assert member.mean() >= 0.5 and same[member].all()
    # the fit's noise points got their most likely cluster from the fit's soft clustering; placed as new items
    # they get it from hdbscan's membership vector of a new point, a coarser estimate (61 % agree here)
    assert same[~member].mean() >= 0.5
    assert summary["n_novel"] <= 0.1 * summary["n_items"]  # the reference's own items are not new
    written = json.loads((tmp_path / "projection.json").read_text())
    assert written["reference"] == str(reference.resolve()) and written["n_items"] == 64
    assert {"item_id", "cluster", "probability", "outlier_score", "novel"} <= set(new_clusters.columns)
    assert (tmp_path / "latents.parquet").is_file() and (tmp_path / "reconstructions.npz").is_file()


def test_what_the_reference_never_saw_is_flagged_novel(reference: Path, tmp_path: Path) -> None:
    board = (np.indices((TILE_SIZE, TILE_SIZE)).sum(axis=0) // 4 % 2).astype(np.float32)
    items = [TileItem(f"board{i}", np.roll(board, i, axis=1), {"label": "board"}) for i in range(16)]
    write_store(tmp_path / "tiles", items, TILE_PARAMS, "synthetic")
    summary = project_store(reference, tmp_path / "tiles", tmp_path / "out")
    assert summary["n_novel"] >= 14, summary


def test_tiles_made_otherwise_are_refused(reference: Path, other_store_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="trained on other tiles"):
        project_store(reference, other_store_dir, tmp_path)


def test_a_folder_that_is_not_a_finished_run_is_named(reference: Path, store_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ReferenceError, match="no such results folder"):
        Reference.open(tmp_path / "missing")
    with pytest.raises(ReferenceError, match="no settings.json"):
        Reference.open(tmp_path)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "settings.json").write_text((reference / "settings.json").read_text())
    with pytest.raises(ReferenceError, match="no trained model"):
        project_store(untrained, store_dir, tmp_path / "out")
    assert Reference.open(untrained, need_models=False).modality == "synthetic"  # enough for the settings stage


def test_other_modality_is_refused(reference: Path, tmp_path: Path) -> None:
    write_store(tmp_path / "tiles", [TileItem("a", np.zeros((TILE_SIZE, TILE_SIZE), np.float32), {"label": None})],
                TILE_PARAMS, "audio")
    with pytest.raises(ReferenceError, match="synthetic tiles"):
        project_store(reference, tmp_path / "tiles", tmp_path / "out")


def test_the_tile_settings_come_from_the_reference_and_a_conflict_names_both(reference: Path) -> None:
    ref = Reference(reference, "images")
    requested = {"images": "new/core", "channel": "auto", "normalize": {"tile_size": TILE_SIZE, "scale_mode": "auto"}}
    section, records = reference_section(requested, "images", ref, explicit_tile_settings(requested, "images"))
    assert section["images"] == "new/core" and section["normalize"]["scale_mode"] == "fit"
    assert section["channel"] == "luminance"
    assert records["normalize.scale_mode"]["source"] == "reference"
    assert "sizes vary 5x" in records["normalize.scale_mode"]["statistic"]
    explicit = explicit_tile_settings({"normalize": {"scale_mode": "fixed", "gain": "auto"}}, "images")
    assert explicit == {"normalize.scale_mode": "fixed"}
    with pytest.raises(SettingsError, match="'fixed' but the reference .* with 'fit'"):
        reference_section(requested, "images", ref, explicit)
    with pytest.raises(ReferenceError, match="its own modality"):
        reference_section(requested, "audio", ref, {})
    assert conflicts({"normalize.gain": 2.0}, {"normalize": {"gain": "auto"}}, "w", "r") == []  # not known yet


def test_the_project_command_writes_the_tables_or_names_the_problem(reference: Path, store_dir: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    assert main(["project", "--reference", str(reference), "--tiles", str(store_dir), "--out", str(tmp_path)]) == 0
    for name in ("latents.parquet", "embedding.parquet", "clusters.parquet", "projection.json"):
        assert (tmp_path / name).is_file(), name
    assert main(["project", "--reference", str(tmp_path / "nowhere"), "--tiles", str(store_dir),
                 "--out", str(tmp_path / "out")]) == 2
    assert "no such results folder" in caplog.text and not (tmp_path / "out").exists()
