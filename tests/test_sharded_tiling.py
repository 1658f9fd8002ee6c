"""Sharded tiling end to end: a dataset tiled by 3 shard jobs and merged gives the store of one job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


def test_three_shards_merge_into_the_store_of_one_job(tmp_path: Path) -> None:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    audio = base["datasets"]["demo-audio"]
    base["datasets"] = {
        "one": {**audio, "audio": {**audio["audio"], "shards": 1}},
        "three": {**audio, "audio": {**audio["audio"], "shards": 3}},
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(base))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(tmp_path),
           "--cores", "2", "results/one/tiles", "results/three/tiles"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    one, three = tmp_path / "results" / "one" / "tiles", tmp_path / "results" / "three" / "tiles"
    assert (three / "tiles.bin").read_bytes() == (one / "tiles.bin").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(three / "index.parquet"), pd.read_parquet(one / "index.parquet"))
    assert (three / "skipped.csv").read_text() == (one / "skipped.csv").read_text()
    assert json.loads((three / "store.json").read_text()) == json.loads((one / "store.json").read_text())
    logs = tmp_path / "results" / "logs"
    assert sorted(p.name for p in (logs / "tiles_shard" / "three").iterdir()) == ["0.log", "1.log", "2.log"]
    assert (logs / "tiles_merge" / "three.log").is_file() and (logs / "tiles_audio" / "one.log").is_file()
    assert not list((tmp_path / "results" / "three" / "tiles.shards").glob("*"))  # temp(): removed after merge
