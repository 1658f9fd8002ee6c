"""Two runs of the workflow with the same config and seed on CPU give identical results, bit for bit:
tiles, latents, reconstructions, embedding, clusters and metrics (and so the same clusters and scores)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from battery import snakemake
from conftest import CLEAN, assert_same_results, clean_workdir

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def test_same_config_and_seed_give_identical_results(tmp_path: Path, clean_data: Path, reference_run: Path) -> None:
    wd = clean_workdir(tmp_path, clean_data)
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-4000:]
    assert_same_results(reference_run, wd)
    clusters = pd.read_parquet(wd / "results" / CLEAN / "clusters.parquet")
    assert clusters["cluster"].nunique() >= 2  # a real clustering, not everything in one
