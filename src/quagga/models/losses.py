"""Autoencoder losses as pure functions returning named terms.

Per-item terms are kept separate from the batch mean so that the same code scores single items
(reconstruction error, negative ELBO for anomaly ranking) and trains on batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

RECON_LOSSES = ("mse", "bce")


def reconstruction_per_item(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    """Negative log-likelihood of each tile, summed over pixels: ``[B]``.

    ``mse``: Gaussian with fixed variance (sum of squared errors of the sigmoid output);
    ``bce``: Bernoulli cross-entropy (targets in [0, 1]), computed from logits for stability.
    """
    if kind == "mse":
        err = (torch.sigmoid(logits) - target).square()
    elif kind == "bce":
        err = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {kind!r}")
    return err.flatten(1).sum(dim=1)


def kl_per_item(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) of each item, summed over latent dimensions: ``[B]``."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


def autoencoder_terms(
    logits: Tensor,
    target: Tensor,
    mean: Tensor,
    logvar: Tensor | None,
    beta: float,
    recon_loss: str,
) -> dict[str, Tensor]:
    """Batch-mean ``loss = recon + beta * kl`` with its terms; ``logvar=None`` is a plain autoencoder."""
    recon = reconstruction_per_item(logits, target, recon_loss).mean()
    kl = kl_per_item(mean, logvar).mean() if logvar is not None else recon.new_zeros(())
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}
