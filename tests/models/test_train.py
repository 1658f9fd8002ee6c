"""train_model: outputs, curves, recorded parameters, resume after a kill, no resume across recipes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from quagga.models.encode import encode_store
from quagga.models.train import resolve_precision, resolve_training, train_model
from quagga.params import TrainParams
from quagga.tiles.store import TileStore


def test_outputs_and_resume(
    store_dir: Path, small_params: TrainParams, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = dataclasses.replace(small_params, beta=2.0, kl_warmup_epochs=3)
    out = tmp_path / "models"
    ckpt = train_model(store_dir, params, out)
    assert ckpt == out / "vae.ckpt" and ckpt.is_file()
    assert {"last.ckpt", "best.ckpt", "run.json"} <= {p.name for p in (out / "checkpoints").iterdir()}
    assert not list(out.glob(".*tmp*"))

    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns[:5]) == ["epoch", "train_loss", "val_loss", "recon", "kl"]
    assert metrics["epoch"].tolist() == [0, 1]
    assert np.isfinite(metrics[["train_loss", "val_loss", "recon", "kl"]].to_numpy()).all()
    # train_loss uses the ramped beta (2 * (e + 1) / 4); the terms add up
    np.testing.assert_allclose(metrics["kl_weight"], [0.5, 1.0])
    np.testing.assert_allclose(
        metrics["train_loss"], metrics["recon"] + metrics["kl_weight"] * metrics["kl"], rtol=1e-4
    )

    info = json.loads((out / "params.json").read_text())
    # 48 training tiles in batches of 16: 3 steps per epoch; augment auto on a non-image store: none
    assert info["train"] == {**dataclasses.asdict(params), "augment": "none", "invariance": 0.0, "max_steps": 6}
    assert info["steps"] == 6
    assert info["settings"]["max_steps"] == {"value": 6, "source": "data", "statistic": "max_epochs 2 x 3 steps"}
    assert info["settings"]["max_epochs"]["source"] == info["settings"]["batch_size"]["source"] == "config"
    assert (
        info["tile_params"]
        == TileStore(store_dir).tile_params
        == {"tile_size": 32, "kind": "synthetic", "version": 1}
    )
    assert info["n_train"] + info["n_val"] == 64 and info["n_val"] == 16
    assert {"torch", "lightning", "quagga"} <= set(info["versions"])
    assert info["best_score"] == pytest.approx(metrics["val_loss"].min(), rel=1e-5)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["hyper_parameters"]["tile_params"] == info["tile_params"]
    assert saved["hyper_parameters"]["latent_dim"] == params.latent_dim

    # A second call finds last.ckpt of the same recipe (only max_epochs changed) and continues at epoch 2.
    with caplog.at_level(logging.INFO, logger="quagga.models.train"):
        train_model(store_dir, dataclasses.replace(params, max_epochs=4), out)
    assert "resuming from" in caplog.text
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(metrics["kl_weight"], [0.5, 1.0, 1.5, 2.0])
    resumed = pd.read_csv(sorted((out / "logs").glob("version_*/metrics.csv"))[-1])
    assert resumed["epoch"].min() == 2  # the second run logged epochs 2..3 only: no restart
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    assert json.loads((out / "params.json").read_text())["epochs"] == 4

    # Another recipe must not resume from these checkpoints: it starts over.
    train_model(store_dir, dataclasses.replace(params, latent_dim=3, max_epochs=1), out)
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == [0]
    assert json.loads((out / "params.json").read_text())["resumed_from"] is None


def test_same_seed_same_latents(store_dir: Path, small_params: TrainParams, tmp_path: Path) -> None:
    params = dataclasses.replace(small_params, max_epochs=1)
    latents = []
    for run in ("a", "b"):
        ckpt = train_model(store_dir, params, tmp_path / run)
        encode_store(store_dir, ckpt, tmp_path / f"{run}.parquet")
        latents.append(pd.read_parquet(tmp_path / f"{run}.parquet"))
    pd.testing.assert_frame_equal(latents[0], latents[1])
    other = train_model(store_dir, dataclasses.replace(params, seed=small_params.seed + 1), tmp_path / "c")
    encode_store(store_dir, other, tmp_path / "c.parquet")
    assert not np.allclose(latents[0]["z_0"], pd.read_parquet(tmp_path / "c.parquet")["z_0"])


def test_without_validation_split(store_dir: Path, small_params: TrainParams, tmp_path: Path) -> None:
    params = dataclasses.replace(small_params, val_fraction=0.0, max_epochs=1)
    train_model(store_dir, params, tmp_path)
    info = json.loads((tmp_path / "params.json").read_text())
    assert info["monitor"] == "train_loss" and info["n_val"] == 0
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["val_loss"].isna().all() and np.isfinite(metrics["train_loss"]).all()


def _train_command(store: Path, params: TrainParams, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "quagga", "train",
        "--tiles", str(store), "--params", json.dumps(dataclasses.asdict(params)), "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_killed_mid_epoch_then_rerun_resumes(
    large_store_dir: Path, small_params: TrainParams, tmp_path: Path
) -> None:
    """SIGKILL during an epoch; the rerun continues from last.ckpt and ends where an unbroken run ends."""
    store = large_store_dir
    params = dataclasses.replace(small_params, max_epochs=4, beta=2.0, denoise_noise_std=0.05)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    start = time.monotonic()
    subprocess.run(_train_command(store, params, tmp_path / "whole"), check=True, env=env, timeout=300)
    epoch_s = (time.monotonic() - start) / params.max_epochs  # an upper bound: includes start-up

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_command(store, params, out), env=env, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    while not last.is_file() and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(epoch_s / 4)  # into epoch 1
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert not (out / "vae.ckpt").exists()
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < params.max_epochs - 1

    subprocess.run(_train_command(store, params, out), check=True, env=env, timeout=300)
    info = json.loads((out / "params.json").read_text())
    assert info["resumed_from"] == str(last) and info["epochs"] == params.max_epochs
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == list(range(params.max_epochs))
    rerun_log = pd.read_csv(sorted((out / "logs").glob("version_*/metrics.csv"))[-1])
    assert rerun_log["epoch"].min() == killed_at + 1  # continued, did not start over

    whole = torch.load(tmp_path / "whole" / "vae.ckpt", weights_only=True)["state_dict"]
    resumed = torch.load(out / "vae.ckpt", weights_only=True)["state_dict"]
    for name, value in whole.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-4, atol=1e-5, msg=name)
    np.testing.assert_allclose(
        pd.read_csv(out / "metrics.csv")["val_loss"], pd.read_csv(tmp_path / "whole" / "metrics.csv")["val_loss"],
        rtol=1e-4,
    )


def test_precision_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"


def test_bf16_training_is_recorded(store_dir: Path, small_params: TrainParams, tmp_path: Path) -> None:
    """bf16-mixed runs on any CPU (emulated where not native) and the precision used is recorded."""
    train_model(store_dir, dataclasses.replace(small_params, precision="bf16-mixed", max_epochs=1), tmp_path)
    info = json.loads((tmp_path / "params.json").read_text())
    assert info["precision"] == "bf16-mixed" and info["train"]["precision"] == "bf16-mixed"
    assert np.isfinite(pd.read_csv(tmp_path / "metrics.csv")[["train_loss", "val_loss"]].to_numpy()).all()


@pytest.mark.parametrize(
    ("modality", "n_train", "batch", "steps", "epochs", "every", "augment"),
    [
        ("audio", 6886, 64, 3210, 30, 1, "none"),  # koumura-bird0: 30 epochs of 107 steps
        ("images", 95, 8, 2090, 190, 10, "dihedral"),  # planktonclas-demo: at least 2,000 steps, checks every 100
        ("images", 300, 32, 2052, 228, 12, "dihedral"),  # batch: the power of two nearest a tenth of the tiles
        ("audio", 900_000, 64, 14062, 1, 1, "none"),  # 100 hours of calls: at most 20,000 steps, whole epochs
        # the demo's 287 calls: no augmentation, so no 2,000-step floor (260 epochs of the same tiles): 30 epochs,
        # validated after each
        ("audio", 258, 32, 240, 30, 1, "none"),
    ],
)
def test_training_length_is_counted_in_steps(
    modality: str, n_train: int, batch: int, steps: int, epochs: int, every: int, augment: str
) -> None:
    resolved, choices, val_every = resolve_training(TrainParams(), modality, n_train)
    assert (resolved.batch_size, resolved.max_steps, resolved.max_epochs, val_every, resolved.augment) == (
        batch, steps, epochs, every, augment)
    assert resolved.max_steps % (val_every * (n_train // batch)) == 0  # the last step is a validation check
    assert {r["source"] for r in choices.records.values()} == {"data"}


def test_explicit_training_length_wins() -> None:
    resolved, choices, val_every = resolve_training(TrainParams(max_epochs=5, batch_size=32, augment="none"),
                                                    "images", 320)
    assert (resolved.max_epochs, resolved.max_steps, val_every, resolved.augment) == (5, 50, 1, "none")
    assert choices.records["augment"]["source"] == "config" and choices.records["max_steps"]["source"] == "data"
