"""Convolutional encoder and decoder whose shapes follow from tile size, depth and channel width.

Built for CPU throughput: every convolution is strided (no pooling), so nothing runs at full tile
resolution but the input and output (1 channel, or 3 for colour: only the first and last layers grow);
channels double per stage so the cost per stage stays flat; BatchNorm sits only between hidden layers; a
small linear bottleneck links the two halves.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from quagga.models.losses import kl_per_item, reconstruction_per_item

MAX_CHANNELS = 256  # channel width stops doubling here, so deep stacks stay cheap
LOGVAR_LIMIT = 10.0  # |log-variance| bound: exp() can neither overflow nor collapse to exactly zero


def stage_channels(base_channels: int, depth: int) -> list[int]:
    """Output channels of each stride-2 encoder stage (the decoder mirrors them)."""
    return [min(base_channels * 2**i, MAX_CHANNELS) for i in range(depth)]


def bottleneck_size(tile_size: int, depth: int) -> int:
    """Side length of the last feature map; refuses shapes that do not halve cleanly."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if tile_size % 2**depth:
        raise ValueError(f"tile_size {tile_size} is not divisible by 2**depth = {2**depth} (depth {depth})")
    return tile_size // 2**depth


def _block(conv: nn.Module, channels: int, norm: bool) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)] if norm else [conv, nn.ReLU(inplace=True)]


class Encoder(nn.Module):
    """Tile ``[B, C, S, S]`` -> posterior mean and log-variance (``None`` for a plain autoencoder)."""

    def __init__(self, tile_size: int, latent_dim: int, base_channels: int, depth: int, variational: bool,
                 in_channels: int = 1):
        super().__init__()
        side = bottleneck_size(tile_size, depth)
        channels = stage_channels(base_channels, depth)
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            # The first stage reads raw pixels: no norm there, it would only cost a full pass.
            layers += _block(nn.Conv2d(prev, ch, 3, stride=2, padding=1, bias=i == 0), ch, norm=i > 0)
            prev = ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.latent_dim = latent_dim
        self.variational = variational
        self.head = nn.Linear(prev * side * side, latent_dim * (2 if variational else 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.head(self.features(x.contiguous(memory_format=torch.channels_last)))
        if not self.variational:
            return h, None
        mean, logvar = h.split(self.latent_dim, dim=1)
        return mean, logvar


class Decoder(nn.Module):
    """Latent ``[B, D]`` -> reconstruction logits ``[B, C, S, S]`` (sigmoid gives the tile in [0, 1]).

    Logits, not pixels, come out so that the BCE loss can use its numerically stable fused form.
    """

    def __init__(self, tile_size: int, latent_dim: int, base_channels: int, depth: int, out_channels: int = 1):
        super().__init__()
        side = bottleneck_size(tile_size, depth)
        channels = stage_channels(base_channels, depth)
        self.shape = (channels[-1], side, side)
        self.project = nn.Sequential(nn.Linear(latent_dim, channels[-1] * side * side), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for cin, cout in zip(channels[:0:-1], channels[-2::-1], strict=True):
            layers += _block(
                nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), cout, norm=True
            )
        layers.append(nn.ConvTranspose2d(channels[0], out_channels, 4, stride=2, padding=1))
        self.upsample = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(-1, *self.shape).contiguous(memory_format=torch.channels_last)
        return self.upsample(h)


class TileScoring:
    """What a trained autoencoder does with tiles, shared by the Lightning module that trains it and the plain
    :class:`TileCodec` that encodes with it: needs ``encoder``, ``decoder`` and ``hparams["recon_loss"]``."""

    encoder: Encoder
    decoder: Decoder
    hparams: Any
    variational: bool

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Posterior mean and log-variance of ``x`` (log-variance ``None`` for the plain autoencoder)."""
        mean, logvar = self.encoder(x)
        return mean, None if logvar is None else logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)

    def decode(self, z: Tensor) -> Tensor:
        """Tiles in [0, 1] decoded from latents ``z``."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction (decoded posterior mean)."""
        return self.decode(self.encode(x)[0])

    def predict_step(self, batch: Tensor, batch_idx: int = 0) -> dict[str, Tensor]:
        """Posterior mean, per-item mean squared error and negative ELBO (both at the posterior mean).

        Scoring at the mean rather than a sample keeps scores deterministic; the negative ELBO uses the
        unweighted KL (beta = 1), and for the plain autoencoder it is the reconstruction term alone.
        """
        mean, logvar = self.encode(batch)
        logits = self.decoder(mean)
        # scored in float32 whatever the networks ran in: in bf16 a KL term (exp(v) - 1 - v, 0 at v = 0) rounds
        # below 0 and a sum over 16,384 pixels loses its last digits
        logits, mean = logits.float(), mean.float()
        logvar = None if logvar is None else logvar.float()
        neg_elbo = reconstruction_per_item(logits, batch, self.hparams["recon_loss"])
        if logvar is not None:
            neg_elbo = neg_elbo + kl_per_item(mean, logvar)
        recon_error = (torch.sigmoid(logits) - batch).square().flatten(1).mean(dim=1)
        return {"mean": mean, "recon_error": recon_error, "neg_elbo": neg_elbo}


class TileCodec(TileScoring, nn.Module):
    """A trained autoencoder's networks from its checkpoint's hyperparameters, for encoding, scoring and
    sampling without Lightning (importing it costs every stage that only encodes seconds). The parameter
    names are the Lightning module's, so its checkpoint's state dict loads as it is."""

    def __init__(self, hparams: dict[str, Any]):
        super().__init__()
        self.hparams = dict(hparams)
        self.variational = self.hparams["model"] == "vae"
        size, dim, width, depth = (self.hparams[k] for k in ("tile_size", "latent_dim", "base_channels", "depth"))
        channels = self.hparams.get("channels", 1)  # checkpoints from before colour tiles do not record it
        self.encoder = Encoder(size, dim, width, depth, variational=self.variational, in_channels=channels)
        self.decoder = Decoder(size, dim, width, depth, out_channels=channels)
        self.to(memory_format=torch.channels_last)
