"""Convolutional encoder and decoder whose shapes follow from tile size, depth and channel width.

Built for CPU throughput: every convolution is strided (no pooling), so nothing runs at full tile
resolution but the input and output (1 channel, or 3 for colour: only the first and last layers grow);
channels double per stage so the cost per stage stays flat; BatchNorm sits only between hidden layers; a
small linear bottleneck links the two halves.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MAX_CHANNELS = 256  # channel width stops doubling here, so deep stacks stay cheap


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
