"""One Lightning module family for tiles: autoencoder, VAE, beta-VAE and their denoising variants.

The variants differ only in hyperparameters (``model``, ``beta``, ``denoise_*``), so every run shares
one network definition, one loss and one training step, and a checkpoint alone says how it was made.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from quagga.models.losses import RECON_LOSSES, autoencoder_terms
from quagga.models.networks import Decoder, Encoder, TileScoring

MODELS = ("vae", "ae")
AUGMENTATIONS = ("none", "dihedral")


def view_distance(mean: Tensor) -> Tensor:
    """Half the squared distance between the posterior means of two views (first half vs second half of the
    batch), averaged over pairs. Measured in the prior's units, not the posterior's: scaled by the posterior
    variance, the pull could be met by blurring the posteriors instead of moving the means together."""
    n = len(mean) // 2
    return 0.5 * (mean[:n] - mean[n : 2 * n]).square().sum(dim=1).mean()


class NonFiniteLossError(FloatingPointError):
    """The training objective became NaN or infinite."""


class TileAutoencoder(TileScoring, L.LightningModule):
    """Convolutional (variational) autoencoder of ``[B, C, S, S]`` tiles in [0, 1] (C from the store).

    ``tile_params`` are the parameters that made the training tiles; they ride along in the checkpoint
    so that encoding refuses tiles made differently. ``val_split`` (``n_items``, ``val_fraction``,
    ``seed``) records the seeded train/validation split, so that the report can show reconstructions
    of tiles the model never trained on.
    """

    def __init__(
        self,
        tile_size: int = 128,
        latent_dim: int = 32,
        base_channels: int = 16,
        depth: int = 5,
        model: str = "vae",
        beta: float = 1.0,
        kl_warmup_epochs: int = 0,
        recon_loss: str = "mse",
        learning_rate: float = 1e-3,
        denoise_noise_std: float = 0.0,
        denoise_mask_fraction: float = 0.0,
        augment: str = "none",
        tile_params: dict[str, Any] | None = None,
        val_split: dict[str, Any] | None = None,
        channels: int = 1,
        invariance: float = 0.0,
    ):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {recon_loss!r}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        if invariance > 0 and augment == "none":
            raise ValueError("invariance needs augment (the poses the latents should not depend on); got 'none'")
        if beta < 0 or denoise_noise_std < 0 or not 0 <= denoise_mask_fraction < 1:
            raise ValueError(
                "need beta >= 0, denoise_noise_std >= 0 and 0 <= denoise_mask_fraction < 1; got "
                f"beta={beta}, denoise_noise_std={denoise_noise_std}, "
                f"denoise_mask_fraction={denoise_mask_fraction}"
            )
        self.save_hyperparameters()
        self.variational = model == "vae"
        self.encoder = Encoder(tile_size, latent_dim, base_channels, depth, variational=self.variational,
                               in_channels=channels)
        self.decoder = Decoder(tile_size, latent_dim, base_channels, depth, out_channels=channels)
        self.to(memory_format=torch.channels_last)

    def kl_weight(self, stage: str) -> float:
        """Beta, ramped up linearly over the first ``kl_warmup_epochs`` training epochs.

        Validation always uses the full beta, so ``val_loss`` measures one objective across epochs and
        early stopping is not fooled by the ramp.
        """
        beta, warmup = self.hparams["beta"], self.hparams["kl_warmup_epochs"]
        if stage != "train" or warmup <= 0:
            return beta
        return beta * min(1.0, (self.current_epoch + 1) / (warmup + 1))

    def corrupt(self, x: Tensor) -> Tensor:
        """Denoising input: Gaussian noise (clipped to [0, 1]) and randomly zeroed pixels."""
        std, fraction = self.hparams["denoise_noise_std"], self.hparams["denoise_mask_fraction"]
        if std > 0:
            x = (x + std * torch.randn_like(x)).clamp(0.0, 1.0)
        if fraction > 0:
            x = x * (torch.rand_like(x) >= fraction)
        return x

    def augment(self, x: Tensor) -> Tensor:
        """Each tile in one of its 8 dihedral poses (90 degree turns, optionally mirrored), drawn at random.

        A particle under the microscope has no up or left, so training on every pose spends no latent
        capacity on orientation: a fibre lying left-right and one lying up-down land close together.
        Spectrogram axes mean time and frequency, so audio tiles must never be turned.
        """
        if self.hparams["augment"] == "none":
            return x
        turns = torch.randint(0, 4, (len(x),), device=x.device)
        mirror = torch.randint(0, 2, (len(x),), device=x.device).bool()
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        out = x.clone()
        for k in (1, 2, 3):
            chosen = turns == k
            if chosen.any():
                out[chosen] = torch.rot90(x[chosen], k, dims=(-2, -1))
        return out

    def jitter(self, x: Tensor) -> Tensor:
        """A second look at each tile: a random dihedral pose, then a small turn (up to 20 degrees), scale
        (0.9-1.1) and brightness (0.9-1.1), the differences between two views of one particle that say
        nothing about what it is. Edges are extended, not blackened, so a percentile tile keeps its field."""
        x = self.augment(x)
        n = len(x)
        angle = (torch.rand(n, device=x.device) * 2 - 1) * (torch.pi / 9)
        scale = 1.0 + (torch.rand(n, device=x.device) * 2 - 1) * 0.1
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = torch.nn.functional.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border",
                                            align_corners=False)
        gain = 1.0 + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * 0.1
        return (x * gain).clamp(0.0, 1.0)

    def loss_terms(self, x: Tensor, stage: str) -> dict[str, Tensor]:
        """Named loss terms of a batch; augmentation and corruption (denoising) only while training.

        The target is the augmented tile before corruption: the model learns to undo the noise, never
        the pose. With ``invariance`` > 0, half the batch is seen twice (two random views, see ``jitter``,
        as many tiles through the network as without it) and ``invariance`` x the distance between the
        two views' posterior means is added (the ``inv`` term), so a particle's latent depends less on its
        pose, while reconstruction and prior keep samples, interpolation and anomaly scores working.
        """
        pairs = stage == "train" and self.hparams["invariance"] > 0 and len(x) >= 2
        if pairs:
            half = x[: len(x) // 2]
            x = torch.cat([self.augment(half), self.jitter(half)])
        elif stage == "train":
            x = self.augment(x)
        inputs = self.corrupt(x) if stage == "train" else x
        mean, logvar = self.encode(inputs)
        z = mean if logvar is None else mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = self.decoder(z)
        terms = autoencoder_terms(logits, x, mean, logvar, self.kl_weight(stage), self.hparams["recon_loss"])
        if pairs:
            terms["inv"] = view_distance(mean)
            terms["loss"] = terms["loss"] + self.hparams["invariance"] * terms["inv"]
        return terms

    def _step(self, batch: Tensor, stage: str) -> Tensor:
        terms = self.loss_terms(batch, stage)
        if not torch.isfinite(terms["loss"]):
            raise NonFiniteLossError(
                f"non-finite {stage} loss at global step {self.global_step}, epoch {self.current_epoch} "
                f"(recon={terms['recon'].item()}, kl={terms['kl'].item()}): check the tiles for NaN, "
                "or lower learning_rate / beta and keep gradient_clip_val on"
            )
        metrics = {f"{stage}_{name}": value for name, value in terms.items()}
        # sync_dist: under DDP the epoch means are over every rank's batches (a no-op in one process)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        if stage == "train":
            self.log("kl_weight", self.kl_weight(stage), on_step=False, on_epoch=True, batch_size=len(batch))
        return terms["loss"]

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["learning_rate"])
