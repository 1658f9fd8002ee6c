"""Reading images: formats, bit depths, colour -> gray, EXIF orientation, unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from quagga.images.io import ImageReadError, read_image

GRAY8 = np.array([[0, 51], [204, 255]], dtype=np.uint8)
GRAY16 = np.array([[0, 13107], [52428, 65535]], dtype=np.uint16)
EXPECTED = np.array([[0.0, 0.2], [0.8, 1.0]])
RGB = (255, 0, 102)  # red, green, blue of every pixel of the colour images below


def _save(path: Path, pixels: np.ndarray) -> Path:
    if path.suffix == ".tif":
        tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    else:
        Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("name, pixels", [
    ("g8.png", GRAY8), ("g16.png", GRAY16), ("g8.tif", GRAY8), ("g16.tif", GRAY16), ("g.bmp", GRAY8),
])
def test_gray_bit_depths_map_to_unit_range(tmp_path: Path, name: str, pixels: np.ndarray) -> None:
    gray = read_image(_save(tmp_path / name, pixels))
    assert gray.dtype == np.float32 and gray.shape == (2, 2)
    np.testing.assert_allclose(gray, EXPECTED, atol=1e-6)


def _colour(depth: type, alpha: bool = False) -> np.ndarray:
    top = np.iinfo(depth).max
    values = [v * top // 255 for v in RGB] + ([0] if alpha else [])  # alpha 0: must not matter
    return np.tile(np.array(values, dtype=depth), (3, 4, 1))


@pytest.mark.parametrize("name, pixels", [
    ("rgb8.png", _colour(np.uint8)), ("rgba8.png", _colour(np.uint8, alpha=True)),
    ("rgb16.tif", _colour(np.uint16)), ("rgb8.jpg", _colour(np.uint8)),
])
@pytest.mark.parametrize("channel, expected", [
    ("red", 1.0), ("green", 0.0), ("blue", 0.4), ("luminance", 0.2125 + 0.0721 * 0.4),
])
def test_colour_channels(tmp_path: Path, name: str, pixels: np.ndarray, channel: str, expected: float
                         ) -> None:
    gray = read_image(_save(tmp_path / name, pixels), channel)
    assert gray.shape == (3, 4)
    tolerance = 0.02 if name.endswith(".jpg") else 1e-4  # JPEG's chroma is lossy
    np.testing.assert_allclose(gray, expected, atol=tolerance)


def test_gray_with_alpha_drops_alpha(tmp_path: Path) -> None:
    Image.fromarray(np.stack([GRAY8, np.zeros_like(GRAY8)], axis=-1), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png", "red"), EXPECTED, atol=1e-6)


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # bright left stripe
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    gray = read_image(tmp_path / "rotated.jpg")
    assert gray.shape == (40, 20)
    assert gray[:10].mean() > 0.9 and gray[-10:].mean() < 0.1  # the left stripe is now on top


def test_tiff_stack_gives_first_plane(tmp_path: Path) -> None:
    stack = np.stack([GRAY16, GRAY16[::-1], GRAY16[:, ::-1]])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    np.testing.assert_allclose(read_image(tmp_path / "stack.tif"), EXPECTED, atol=1e-6)


def test_unreadable_files_raise_image_read_error(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image")
    _save(tmp_path / "good.png", np.tile(GRAY8, (50, 50)))
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.tif").write_text("not an image")
    for name in ["text.png", "truncated.png", "text.tif"]:
        with pytest.raises(ImageReadError, match="cannot read image"):
            read_image(tmp_path / name)


def test_unknown_channel_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown channel 'alpha'"):
        read_image(_save(tmp_path / "g.png", GRAY8), "alpha")


@pytest.mark.parametrize("compression", ["lzw", "deflate", "zstd"])
def test_compressed_tiffs(tmp_path: Path, compression: str) -> None:
    tifffile.imwrite(tmp_path / "c.tif", np.tile(GRAY16, (8, 8)), compression=compression)
    np.testing.assert_allclose(read_image(tmp_path / "c.tif")[:2, :2], EXPECTED, atol=1e-6)
