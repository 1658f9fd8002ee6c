"""The Lightning module family: every variant learns, denoising corrupts inputs only, NaN guard, scoring."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from quagga.models.vae import NonFiniteLossError, TileAutoencoder
from quagga.tiles.store import TileStore

SMALL = {"tile_size": 32, "latent_dim": 4, "base_channels": 8, "depth": 3}


def _tiles(store_dir: Path, n: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.asarray(TileStore(store_dir).tiles[:n], dtype=np.float32))


def _val_loss(model: TileAutoencoder, x: torch.Tensor) -> float:
    torch.manual_seed(123)  # same posterior samples before and after training
    with torch.no_grad():
        return model.loss_terms(x, "val")["loss"].item()


@pytest.mark.parametrize(
    "variant",
    [
        {"model": "vae"},
        {"model": "ae"},
        {"model": "vae", "beta": 4.0},
        {"model": "vae", "recon_loss": "bce"},
        {"model": "ae", "denoise_noise_std": 0.1, "denoise_mask_fraction": 0.2},
    ],
    ids=["vae", "ae", "beta4", "bce", "denoising"],
)
def test_each_variant_lowers_the_loss(store_dir: Path, variant: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = TileAutoencoder(**SMALL, learning_rate=3e-3, **variant)
    x = _tiles(store_dir)
    optimizer = model.configure_optimizers()
    before = _val_loss(model, x)
    model.train()
    for _ in range(25):
        optimizer.zero_grad()
        model.loss_terms(x, "train")["loss"].backward()
        optimizer.step()
    model.eval()
    after = _val_loss(model, x)
    assert after < 0.8 * before, (variant, before, after)


def test_denoising_corrupts_training_input_only() -> None:
    torch.manual_seed(0)
    model = TileAutoencoder(**SMALL, model="ae", denoise_mask_fraction=0.3, denoise_noise_std=0.0)
    x = torch.full((4, 1, 32, 32), 0.5)
    corrupted = model.corrupt(x)
    assert (corrupted == 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert torch.equal(corrupted[corrupted != 0], x[corrupted != 0])
    noisy = TileAutoencoder(**SMALL, model="ae", denoise_noise_std=0.2).corrupt(x)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy - x).std().item() == pytest.approx(0.2, rel=0.1)
    model.eval()
    with torch.no_grad():  # validation: clean input, no sampling for the AE -> deterministic
        assert model.loss_terms(x, "val")["loss"] == model.loss_terms(x, "val")["loss"]
        assert model.loss_terms(x, "train")["loss"] != model.loss_terms(x, "train")["loss"]


def test_dihedral_augmentation_draws_all_eight_poses_and_only_while_training() -> None:
    torch.manual_seed(0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(400, 1, 1, 1)  # an asymmetric tile: 8 distinct poses
    poses = {tuple(t.flatten().tolist()) for t in TileAutoencoder(**SMALL, augment="dihedral").augment(x)}
    expected = {tuple(torch.rot90(f, k, dims=(-2, -1)).flatten().tolist())
                for f in (x[0], x[0].flip(-1)) for k in range(4)}
    assert poses == expected
    assert torch.equal(TileAutoencoder(**SMALL).augment(x), x)  # default: no augmentation
    model = TileAutoencoder(**SMALL, model="ae", augment="dihedral").eval()
    tiles = torch.rand(4, 1, 32, 32)
    with torch.no_grad():  # validation sees the tiles as they are: deterministic for the AE
        assert model.loss_terms(tiles, "val")["loss"] == model.loss_terms(tiles, "val")["loss"]


def test_kl_warmup_ramps_train_beta_only() -> None:
    model = TileAutoencoder(**SMALL, beta=2.0, kl_warmup_epochs=3)
    assert model.kl_weight("train") == pytest.approx(0.5)  # epoch 0 of a 3-epoch ramp: (0 + 1) / 4 * beta
    assert model.kl_weight("val") == 2.0
    assert TileAutoencoder(**SMALL, beta=2.0).kl_weight("train") == 2.0


def test_nan_guard_names_step_and_epoch(store_dir: Path, tmp_path: Path) -> None:
    x = _tiles(store_dir, 24)
    x[16, 0, 3, 3] = float("nan")  # item 16 is in the third batch of 8: global step 2
    model = TileAutoencoder(**SMALL)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings(), pytest.raises(NonFiniteLossError, match=r"global step 2, epoch 0"):
        warnings.simplefilter("ignore")
        trainer.fit(model, DataLoader(x, batch_size=8))


def test_predict_step_scores(store_dir: Path) -> None:
    x = _tiles(store_dir, 8)
    torch.manual_seed(0)
    for kind in ("ae", "vae"):
        model = TileAutoencoder(**SMALL, model=kind).eval()
        with torch.no_grad():
            out = model.predict_step(x)
            recon = model(x)
            mean, logvar = model.encode(x)
        assert out["mean"].shape == (8, 4)
        torch.testing.assert_close(out["mean"], mean)
        torch.testing.assert_close(out["recon_error"], (recon - x).square().mean(dim=(1, 2, 3)))
        sse = out["recon_error"] * 32 * 32
        if kind == "ae":
            assert logvar is None
            torch.testing.assert_close(out["neg_elbo"], sse)
        else:
            assert (out["neg_elbo"] > sse).all()  # + KL > 0


def test_bad_hyperparameters_are_refused() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        TileAutoencoder(**SMALL, model="gan")
    with pytest.raises(ValueError, match="recon_loss"):
        TileAutoencoder(**SMALL, recon_loss="l1")
    with pytest.raises(ValueError, match="denoise_mask_fraction"):
        TileAutoencoder(**SMALL, denoise_mask_fraction=1.0)
    with pytest.raises(ValueError, match="augment must be one of"):
        TileAutoencoder(**SMALL, augment="rotate")
    with pytest.raises(ValueError, match="invariance needs augment"):
        TileAutoencoder(**SMALL, invariance=1.0)


def _turn_gap(model: TileAutoencoder, x: torch.Tensor) -> float:
    """Mean distance between the latents of a tile and of its copy turned 90 degrees, over that between two
    different tiles."""
    model.eval()
    with torch.no_grad():
        a, b = model.encode(x)[0], model.encode(torch.rot90(x, 1, dims=(-2, -1)))[0]
        other = model.encode(x.roll(1, dims=0))[0]
    return float((a - b).norm(dim=1).mean() / (a - other).norm(dim=1).mean())


def test_invariance_pulls_a_tile_and_its_turned_copy_together(store_dir: Path, tmp_path: Path) -> None:
    """Horizontal bars turned upright are far from themselves in an untrained encoder; training with the
    invariance term (two random views of half the batch, their posterior means pulled together) brings
    them close. (Whether it helps more than dihedral augmentation alone is a question for the data:
    bench/image_repr.py measures it.)"""
    x = _tiles(store_dir, 64)
    torch.manual_seed(0)
    model = TileAutoencoder(**SMALL, augment="dihedral", invariance=1.0)
    before = _turn_gap(model, x)
    trainer = L.Trainer(accelerator="cpu", max_epochs=15, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, DataLoader(x, batch_size=16, shuffle=True))
    assert _turn_gap(model, x) < 0.7 * before  # closer after training than before
    terms = model.train().loss_terms(x[:8], "train")
    assert set(terms) == {"loss", "recon", "kl", "inv"} and terms["inv"] > 0
    assert "inv" not in model.loss_terms(x[:8], "val")
