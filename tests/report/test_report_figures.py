"""Report figures: PNG bytes of the expected size and orientation, robust to awkward labels."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from quagga.report import figures

PNG = b"\x89PNG\r\n\x1a\n"


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG)
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_tile_grid_layout_and_shrinking() -> None:
    rows = [np.full((3, 128, 128), 0.5), np.full((1, 128, 128), 0.5)]  # ragged rows
    img = _decode(figures.tile_grid(rows, max_px=64, gap=2))
    assert img.shape[:2] == (2 * 64 + 2, 3 * 64 + 2 * 2)
    assert np.allclose(img[-1, -1, :3], 1.0)  # missing tiles of the short row stay white
    assert b"matplotlib.org" not in figures.tile_grid(rows)


@pytest.mark.parametrize(("origin", "bright_row"), [("lower", -1), ("upper", 0)])
def test_tile_grid_origin(origin: str, bright_row: int) -> None:
    tile = np.zeros((1, 16, 16))
    tile[0, 0] = 1.0  # row 0: the lowest frequency of a spectrogram
    img = _decode(figures.tile_grid([tile], origin=origin, cmap="gray"))
    assert np.allclose(img[bright_row, :, :3], 1.0)
    assert np.allclose(img[-1 - bright_row, :, :3], 0.0)  # the opposite edge is dark


def test_tile_grid_draws_colour_tiles_as_rgb_and_grey_ones_through_the_colormap() -> None:
    colour = np.zeros((2, 3, 16, 16))
    colour[0, 0] = 1.0  # a red tile
    colour[1, 2, :8] = 1.0  # a tile whose top half is blue
    grey = np.full((1, 1, 16, 16), 0.5)  # [n, C, S, S] with C = 1: grey, as a store holds it
    img = _decode(figures.tile_grid([colour, grey], max_px=16, gap=2))
    assert img.shape[:2] == (2 * 16 + 2, 2 * 16 + 2)
    np.testing.assert_allclose(img[8, 8, :3], [1, 0, 0])
    np.testing.assert_allclose(img[2, 18 + 8, :3], [0, 0, 1])
    np.testing.assert_allclose(img[14, 18 + 8, :3], [0, 0, 0])
    np.testing.assert_allclose(img[18 + 8, 8, :3], 0.5, atol=0.01)  # grey: equal channels
    shrunk = _decode(figures.tile_grid([np.repeat(colour, 4, -1).repeat(4, -2)], max_px=16, gap=2))
    assert shrunk.shape[:2] == (16, 2 * 16 + 2)  # 64 px colour tiles block-averaged to 16
    np.testing.assert_allclose(shrunk[8, 8, :3], [1, 0, 0])
    sheet = _decode(figures.contact_sheet([("red", colour[:1]), ("grey", grey)]))
    reddish = (sheet[..., 0] > 0.9) & (sheet[..., 1] < 0.1) & (sheet[..., 2] < 0.1)
    assert reddish.sum() >= 16 * 16 * 0.9
    with pytest.raises(ValueError, match="C = 1 or 3"):
        figures.tile_grid([np.zeros((1, 2, 16, 16))])


def test_tile_display_by_modality() -> None:
    assert figures.tile_display("audio")[0] == "lower"
    assert figures.tile_display("image")[0] == "upper"


def test_embedding_scatter_survives_mathtext_and_missing_labels() -> None:
    rng = np.random.default_rng(0)
    n = 200
    labels = pd.array([r"$\frac{$", "<b>x</b>", None, "a$b$c"] * (n // 4), dtype="string")
    png = figures.embedding_scatter(rng.normal(size=n), rng.normal(size=n), rng.integers(-1, 4, n), labels)
    img = _decode(png)
    assert img.shape[1] > img.shape[0] > 200  # two panels side by side
    many = figures.embedding_scatter(rng.normal(size=n), rng.normal(size=n), np.arange(n) % 40, [None] * n)
    assert many.startswith(PNG)  # 40 clusters: no legend, still drawn


def test_contingency_heatmap() -> None:
    png = figures.contingency_heatmap(["a", "$b"], [-1, 0, 1], np.array([[1, 5, 0], [0, 0, 7]]))
    assert _decode(png).ndim == 3


def test_per_epoch_merges_lightning_rows_and_plots() -> None:
    raw = pd.DataFrame(
        {
            "epoch": [0, 0, 0, 1, 1],
            "step": [4, 9, 9, 14, 19],
            "train_loss_step": [5.0, 4.0, np.nan, 3.0, np.nan],
            "train_loss": [np.nan, np.nan, 4.5, np.nan, 3.0],
            "val_loss": [np.nan, np.nan, 4.8, np.nan, 3.3],
            "val_kl": [np.nan, np.nan, 0.2, np.nan, 0.4],
            "empty": [np.nan] * 5,
        }
    )
    epochs = figures.per_epoch(raw)
    assert list(epochs.index) == [0, 1]
    assert list(epochs.columns) == ["train_loss", "val_loss", "val_kl"]
    assert epochs.loc[1, "val_loss"] == pytest.approx(3.3)
    assert _decode(figures.training_curves(epochs)).shape[1] > 800  # loss panel and KL panel
