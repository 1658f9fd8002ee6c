"""Read a microscope image as one float32 gray channel.

TIFF goes through tifffile (first page only, so a z-stack or time series contributes its first plane);
PNG, JPEG and BMP through imageio's Pillow plugin (scikit-image's own backend) with the EXIF orientation
applied, so a camera JPEG is upright as a viewer shows it. Integer images are scaled by their dtype's
range (8-bit and 16-bit both land in [0, 1]); float images keep their values. Problems that make a file
unusable raise ImageReadError with the reason, so callers can skip the file and go on.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from skimage.color import rgb2gray
from skimage.util import img_as_float32

CHANNELS = ("luminance", "red", "green", "blue")
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
IMAGE_SUFFIXES = TIFF_SUFFIXES | {".png", ".jpg", ".jpeg", ".bmp"}


class ImageReadError(ValueError):
    """The file cannot be used as an image (unreadable, truncated, not an image, odd shape, NaN)."""


def check_channel(channel: str) -> None:
    """Fail at start on a channel name the reader does not know (a config error, not a per-file one)."""
    if channel not in CHANNELS:
        raise ValueError(f"images.channel: unknown channel {channel!r}; allowed: {list(CHANNELS)}")


def read_image(path: str | Path, channel: str = "luminance") -> np.ndarray:
    """Return ``path`` as a 2-D float32 gray image, taking ``channel`` of a colour image.

    ``channel`` is "luminance" (ITU-R 601 weights via rgb2gray) or one of "red", "green", "blue";
    a gray image is returned as is for every channel. An alpha channel is dropped.
    """
    check_channel(channel)
    return to_gray(read_pixels(Path(path)), channel)


def to_gray(pixels: np.ndarray, channel: str) -> np.ndarray:
    """Float32 gray image of a decoded pixel array (gray, gray+alpha, RGB or RGBA)."""
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):
        pixels = pixels[..., :-1]  # alpha says where the image is drawn, not how bright it is
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        gray = img_as_float32(pixels)
    elif pixels.ndim == 3 and pixels.shape[-1] == 3:
        rgb = img_as_float32(pixels)
        gray = rgb2gray(rgb) if channel == "luminance" else rgb[..., CHANNELS.index(channel) - 1]
    else:
        raise ImageReadError(f"unsupported image shape {pixels.shape} (expected gray, RGB or RGBA)")
    if gray.size == 0:
        raise ImageReadError("image has no pixels")
    if not np.all(np.isfinite(gray)):
        raise ImageReadError("image contains NaN or Inf values")
    return np.ascontiguousarray(gray, dtype=np.float32)


def read_pixels(path: Path) -> np.ndarray:
    """The decoded pixels of an image file as stored (any dtype and channels; EXIF orientation applied)."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                pixels = page.asarray()
                if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and pixels.ndim == 3:
                    pixels = np.moveaxis(pixels, 0, -1)  # samples stored plane by plane: make them last
            return pixels
        return np.asarray(iio.imread(path, plugin="pillow", rotate=True))
    # Decoders signal a broken file with many exception types (OSError, ValueError, SyntaxError,
    # struct.error, EOFError, ...); to the pipeline they all mean the same: this file is unusable.
    except Exception as exc:
        first_line = next(iter(str(exc).splitlines()), "")  # imageio appends install hints below
        raise ImageReadError(f"cannot read image ({type(exc).__name__}: {first_line})") from exc
