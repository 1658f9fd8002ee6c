"""Encoder/decoder shapes follow tile size, depth, width and latent size; bad shapes are refused."""

from __future__ import annotations

import pytest
import torch

from quagga.models.networks import Decoder, Encoder, bottleneck_size, stage_channels


@pytest.mark.parametrize("tile_size", [32, 64, 128])
@pytest.mark.parametrize("latent_dim", [2, 4, 8, 16, 32, 64, 128])
def test_shapes(tile_size: int, latent_dim: int) -> None:
    depth = 4
    enc = Encoder(tile_size, latent_dim, base_channels=4, depth=depth, variational=True)
    dec = Decoder(tile_size, latent_dim, base_channels=4, depth=depth)
    x = torch.rand(3, 1, tile_size, tile_size)
    mean, logvar = enc(x)
    assert mean.shape == (3, latent_dim) and logvar is not None and logvar.shape == (3, latent_dim)
    assert dec(mean).shape == (3, 1, tile_size, tile_size)
    # The bottleneck is derived, not fixed: last stage channels x (S / 2**depth)^2.
    side = tile_size // 2**depth
    assert enc.head.in_features == stage_channels(4, depth)[-1] * side * side
    assert dec.project[0].out_features == enc.head.in_features


def test_plain_autoencoder_has_no_variance() -> None:
    mean, logvar = Encoder(32, 5, 4, 3, variational=False)(torch.rand(2, 1, 32, 32))
    assert mean.shape == (2, 5) and logvar is None


def test_channels_and_bottleneck() -> None:
    assert stage_channels(16, 5) == [16, 32, 64, 128, 256]
    assert stage_channels(64, 4) == [64, 128, 256, 256]  # capped
    assert bottleneck_size(128, 5) == 4 and bottleneck_size(32, 5) == 1
    with pytest.raises(ValueError, match="not divisible"):
        bottleneck_size(96, 6)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        bottleneck_size(32, 0)
