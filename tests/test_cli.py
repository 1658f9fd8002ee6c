"""The command line: user mistakes end with one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagga import __version__
from quagga.cli import main


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quagga", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_version_and_help() -> None:
    done = _run("--version")
    assert done.returncode == 0 and __version__ in done.stdout
    assert "tiles" in _run("--help").stdout


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    config = "datasets:\n  d:\n    modality: audio\n    audio: {}\n    train: {max_epochs: -3}\n"
    (tmp_path / "c.yaml").write_text(config)
    done = _run("check-config", str(tmp_path / "c.yaml"))
    assert done.returncode == 2
    assert "datasets.d.train.max_epochs: -3 is less than the minimum of 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_annotation_table_and_bad_params(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    params = json.dumps({"recordings": ".", "annotations": "nope.txt"})
    rc = main(["tiles", "--modality", "audio", "--params", params, "--base-dir", str(tmp_path),
               "--out", str(tmp_path / "tiles")])
    assert rc == 2 and "annotations not found" in caplog.text
    rc = main(["tiles", "--modality", "audio", "--params", '{"recording": "."}', "--out", str(tmp_path / "t")])
    assert rc == 2 and "unknown key(s) ['recording']" in caplog.text


def test_auto_settings_ride_with_the_store_and_a_changed_config_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from quagga.settings import read_settings
    from quagga.tiles.store import TileStore
    from tests.audio.test_settings import write_recordings

    write_recordings(tmp_path, [0.05, 0.08, 0.1] * 10)
    section = {"recordings": ".", "annotations": "calls.csv", "annotation_format": "csv", "label_column": "label",
               "spectrogram": {"tile_size": 32, "tile_duration_s": "auto", "db_min": "auto"}}
    params, out = json.dumps(section), tmp_path / "settings.json"
    assert main(["settings", "--modality", "audio", "--params", params, "--base-dir", str(tmp_path),
                 "--out", str(out)]) == 0
    settings = read_settings(out)
    assert settings["requested"] == section and settings["resolved"]["spectrogram"]["tile_duration_s"] == 0.11
    assert settings["choices"]["spectrogram.db_min"]["source"] == "data"
    assert main(["tiles", "--modality", "audio", "--params", params, "--settings", str(out), "--base-dir",
                 str(tmp_path), "--out", str(tmp_path / "tiles")]) == 0
    store = TileStore(tmp_path / "tiles")
    assert store.tile_params == settings["resolved"]["spectrogram"]  # numbers, not "auto"
    assert store.meta["requested_tile_params"]["tile_duration_s"] == "auto"
    assert store.meta["settings"] == settings["choices"] and len(store) == 30

    # the tiles stage refuses a settings file made for another config section
    other = json.dumps({**section, "spectrogram": {**section["spectrogram"], "tile_duration_s": 0.2}})
    rc = main(["tiles", "--modality", "audio", "--params", other, "--settings", str(out), "--base-dir", str(tmp_path),
               "--out", str(tmp_path / "tiles2")])
    assert rc == 2 and "was made for other audio parameters" in caplog.text
    # training refuses tiles made from another config: the requested values are compared, "auto" included
    rc = main(["train", "--tiles", str(tmp_path / "tiles"), "--params", "{}", "--tiles-params", other,
               "--out", str(tmp_path / "model")])
    assert rc == 2 and "tiles were requested with other parameters" in caplog.text
    assert "'tile_duration_s': ('auto', 0.2)" in caplog.text
    assert not (tmp_path / "model").exists()


def test_a_corrections_file_without_its_columns_is_one_clear_line(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from tests.evaluate.test_evaluate_dataset import write_inputs

    write_inputs(tmp_path)
    (tmp_path / "fix.csv").write_text("id,new\ni00,b\n")
    rc = main(["evaluate", "--tiles", str(tmp_path / "tiles"), "--clusters", str(tmp_path / "clusters.parquet"),
               "--corrections", str(tmp_path / "fix.csv"), "--out", str(tmp_path / "metrics.json")])
    assert rc == 2
    assert f"labels_corrections {tmp_path / 'fix.csv'}: missing column(s) ['item_id', 'label']" in caplog.text
    assert not (tmp_path / "metrics.json").exists()


def _same_store(a: Path, b: Path) -> None:
    from quagga.tiles.store import TileStore

    for name in sorted(p.name for p in a.iterdir() if p.suffix in (".bin", ".csv")):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    pd.testing.assert_frame_equal(TileStore(a).index, TileStore(b).index)
    assert TileStore(a).meta == TileStore(b).meta


def test_tiles_in_worker_processes_are_the_store_one_process_makes(tmp_path: Path) -> None:
    """`tiles --threads N` tiles N blocks side by side and merges them: byte for byte one process's store,
    skipped rows included (audio: recordings with a missing one; images: segmented fields with a blank one)."""
    from tests.audio.test_settings import write_recordings
    from tests.images.test_detect import _field
    from tests.images.test_iter_tiles import _png

    write_recordings(tmp_path, [0.05, 0.08, 0.1] * 4)
    calls = pd.read_csv(tmp_path / "calls.csv")
    calls.loc[len(calls)] = {**calls.iloc[0].to_dict(), "file": "missing.wav"}
    calls.to_csv(tmp_path / "calls.csv", index=False)
    audio = json.dumps({"recordings": ".", "annotations": "calls.csv", "annotation_format": "csv",
                        "label_column": "label", "spectrogram": {"tile_size": 32}})
    for name in ("a", "b", "c"):
        _png(tmp_path / "fields" / f"{name}.png", _field())
    _png(tmp_path / "fields" / "blank.png", np.full((40, 40), 0.5))
    images = json.dumps({"input": "segment", "images": "fields", "detect": {"background_sigma_px": 0}})
    for modality, params in (("audio", audio), ("images", images)):
        stores = {t: tmp_path / f"{modality}-{t}" for t in (1, 2, 3)}
        for threads, out in stores.items():
            assert main(["tiles", "--modality", modality, "--params", params, "--base-dir", str(tmp_path),
                         "--threads", str(threads), "--out", str(out)]) == 0
        assert not [p for p in tmp_path.iterdir() if ".blocks-" in p.name]  # the blocks are removed
        for threads in (2, 3):
            _same_store(stores[1], stores[threads])


def test_a_job_given_one_thread_uses_one() -> None:
    """Snakemake passes a rule's threads as OMP_NUM_THREADS; numba (UMAP's graph) must follow it too."""
    code = ("import sys, quagga.cli; assert 'numba' not in sys.modules; quagga.cli.limit_threads(); "
            "import numba, torch; print(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**env, "OMP_NUM_THREADS": "1"})
    assert done.stdout.split() == ["1", "1"]


def test_sharded_tiles_in_worker_processes_merge_to_the_store_one_process_makes(tmp_path: Path) -> None:
    """Shards tiled with worker processes, then merged, give one process's store of the whole dataset, even
    where a shard's blocks hold no tile (4 images in 4 shards x 2 blocks: the last two shards are empty and
    are written as empty shards, as `write_store` does for a shard, not refused)."""
    from tests.images.test_detect import _field
    from tests.images.test_iter_tiles import _png

    for name in ("a", "b", "c"):
        _png(tmp_path / "fields" / f"{name}.png", _field())
    _png(tmp_path / "fields" / "blank.png", np.full((40, 40), 0.5))
    images = json.dumps({"input": "segment", "images": "fields", "detect": {"background_sigma_px": 0}})
    common = ["tiles", "--modality", "images", "--params", images, "--base-dir", str(tmp_path)]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    shards = [tmp_path / f"shard-{k}" for k in range(4)]
    for k, out in enumerate(shards):
        assert main([*common, "--shard", f"{k}/4", "--threads", "2", "--out", str(out)]) == 0
    assert [json.loads((s / "store.json").read_text())["shape"][0] for s in shards[2:]] == [0, 0]
    assert main(["merge-tiles", "--out", str(tmp_path / "merged"), *map(str, shards)]) == 0
    _same_store(tmp_path / "whole", tmp_path / "merged")
