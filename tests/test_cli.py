"""The command line: user mistakes end with one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_train_refuses_tiles_made_with_other_spectrogram_parameters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import numpy as np

    from quagga.params import AudioParams, to_dict
    from quagga.tiles.store import TileItem, write_store

    made = AudioParams()
    write_store(tmp_path / "tiles", [TileItem("a", np.zeros((32, 32), np.float32))], to_dict(made.spectrogram),
                "audio")
    asked = json.dumps({"spectrogram": {"hop_length": 256}})  # the config changed after the tiles were made
    rc = main(["train", "--tiles", str(tmp_path / "tiles"), "--params", "{}", "--tiles-params", asked,
               "--out", str(tmp_path / "model")])
    assert rc == 2 and "tiles were made with other parameters" in caplog.text
    assert "'hop_length': (128, 256)" in caplog.text
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
