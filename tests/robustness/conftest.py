"""Fixtures of the robustness battery: clean generated data and one uninterrupted reference run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from battery import audio_dataset, snakemake, write_config, write_csv, write_good_recordings

CLEAN = "clean"
# enough steps per epoch that a kill lands inside training, not after it
CLEAN_TRAIN = {"max_epochs": 4, "batch_size": 4}


@pytest.fixture(scope="session")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five recordings, 70 annotated calls of two types (shared, read-only, by every clean run)."""
    folder = tmp_path_factory.mktemp("clean-data") / "audio"
    rows = write_good_recordings(folder, n_files=5, calls_per_file=14)
    write_csv(folder / "calls.csv", rows)
    return folder


def clean_workdir(root: Path, data: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_config(root, {CLEAN: audio_dataset(str(data), str(data / "calls.csv"), train=CLEAN_TRAIN)})
    return root


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, clean_data: Path) -> Path:
    """The clean dataset run once, uninterrupted, with the README's command."""
    wd = clean_workdir(tmp_path_factory.mktemp("reference"), clean_data)
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-4000:]
    return wd


def assert_same_results(a: Path, b: Path, dataset: str = CLEAN) -> None:
    """Tiles, latents, examples, embedding, clusters and metrics of two runs are identical."""
    ra, rb = a / "results" / dataset, b / "results" / dataset
    assert (ra / "tiles" / "tiles.bin").read_bytes() == (rb / "tiles" / "tiles.bin").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(ra / "tiles" / "index.parquet"),
                                  pd.read_parquet(rb / "tiles" / "index.parquet"))
    for table in ["latents.parquet", "embedding.parquet", "clusters.parquet"]:
        pd.testing.assert_frame_equal(pd.read_parquet(ra / table), pd.read_parquet(rb / table), check_exact=True,
                                      obj=table)
    with np.load(ra / "reconstructions.npz") as x, np.load(rb / "reconstructions.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    assert json.loads((ra / "metrics.json").read_text()) == json.loads((rb / "metrics.json").read_text())
    assert (rb / "report" / "index.html").is_file()


def leftovers(workdir: Path) -> list[str]:
    """Temporary files or folders of interrupted writes under results/ (there must be none)."""
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if ".tmp-" in p.name)
