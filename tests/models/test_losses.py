"""Loss terms: known values, batch reduction and beta weighting."""

from __future__ import annotations

import math

import pytest
import torch

from quagga.models.losses import autoencoder_terms, kl_per_item, reconstruction_per_item


def test_mse_is_pixel_sum_per_item() -> None:
    target = torch.zeros(2, 1, 4, 4)
    logits = torch.zeros(2, 1, 4, 4)  # sigmoid(0) = 0.5 everywhere
    logits[1] = 20.0  # ~1.0 everywhere
    recon = reconstruction_per_item(logits, target, "mse")
    torch.testing.assert_close(recon, torch.tensor([16 * 0.25, 16 * 1.0]), atol=1e-6, rtol=0)


def test_bce_from_logits() -> None:
    target = torch.full((1, 1, 2, 2), 0.5)
    recon = reconstruction_per_item(torch.zeros(1, 1, 2, 2), target, "bce")
    torch.testing.assert_close(recon, torch.tensor([4 * math.log(2.0)]))
    with pytest.raises(ValueError, match="recon_loss must be one of"):
        reconstruction_per_item(target, target, "l1")


def test_kl_of_diagonal_gaussian() -> None:
    mean = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, math.log(2.0)]])
    # KL = 0.5 * (mu^2 + var - 1 - log var) per dimension
    expected = torch.tensor([0.0, 0.5 + 0.5 * (2.0 - 1.0 - math.log(2.0))])
    torch.testing.assert_close(kl_per_item(mean, logvar), expected)


def test_terms_and_beta() -> None:
    target = torch.zeros(2, 1, 4, 4)
    logits = torch.zeros(2, 1, 4, 4)
    mean, logvar = torch.ones(2, 3), torch.zeros(2, 3)
    terms = autoencoder_terms(logits, target, mean, logvar, beta=4.0, recon_loss="mse")
    assert set(terms) == {"loss", "recon", "kl"}
    assert terms["recon"].item() == pytest.approx(4.0) and terms["kl"].item() == pytest.approx(1.5)
    assert terms["loss"].item() == pytest.approx(4.0 + 4.0 * 1.5)
    plain = autoencoder_terms(logits, target, mean, None, beta=4.0, recon_loss="mse")
    assert plain["kl"].item() == 0.0 and plain["loss"].item() == pytest.approx(4.0)
