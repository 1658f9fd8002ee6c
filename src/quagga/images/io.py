"""Read a microscope image as one float32 gray channel, or as three colour channels (``channel: rgb``).

TIFF goes through tifffile (``page`` of the config picks the plane of a multi-page z-stack or time
series; single-page files are read as they are); PNG, JPEG and BMP through Pillow with the EXIF orientation
applied, so a camera JPEG is upright as a viewer shows it. Palette, CMYK and other colour modes are
converted to RGB first. Integer images are scaled by their dtype's range (8-bit and 16-bit both land in
[0, 1]); float images keep their values. The image size is checked from the header before any pixel is
decoded, so a 20000x20000 px scan is refused with the size and the setting to raise, not an
out-of-memory kill. Problems that make a file unusable raise ImageReadError with the reason, so callers
can skip the file and go on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps
from skimage.color import rgb2gray, rgb2hed
from skimage.util import img_as_float32

# hematoxylin / eosin: stain densities by colour deconvolution (skimage.color.rgb2hed), for stained
# slides where a stain, not brightness, tells particles apart (nuclei are hematoxylin-blue).
# rgb: all three colour channels (gray images are repeated in each), for colour tiles.
CHANNELS = ("luminance", "red", "green", "blue", "hematoxylin", "eosin", "rgb")
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
IMAGE_SUFFIXES = TIFF_SUFFIXES | {".png", ".jpg", ".jpeg", ".bmp"}
DEFAULT_MAX_MEGAPIXELS = 100.0
_PILLOW_AS_IS = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA"})


class ImageReadError(ValueError):
    """The file cannot be used as an image (unreadable, truncated, not an image, odd shape, NaN, too big)."""


def check_channel(channel: str) -> None:
    """Fail at start on a channel name the reader does not know (a config error, not a per-file one)."""
    if channel not in CHANNELS:
        raise ValueError(f"images.channel: unknown channel {channel!r}; allowed: {list(CHANNELS)}")


def read_image(
    path: str | Path, channel: str = "luminance", page: int = 0, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
) -> np.ndarray:
    """Return ``path`` as a float32 image of ``channel``: 2-D gray, or [H, W, 3] for "rgb".

    ``channel`` is "luminance" (ITU-R 601 weights via rgb2gray), one of "red", "green", "blue", a
    stain ("hematoxylin", "eosin"), or "rgb" (all three); a gray image is returned as is for every single
    channel. An alpha channel is dropped. ``page`` picks the page of a multi-page TIFF.
    """
    check_channel(channel)
    return to_channels(read_pixels(Path(path), page, max_megapixels), channel)


def to_channels(pixels: np.ndarray, channel: str) -> np.ndarray:
    """Float32 image of ``channel`` from a decoded pixel array: [H, W], or [H, W, 3] for "rgb"."""
    if channel != "rgb":
        return to_gray(pixels, channel)
    image = _checked(_without_alpha(pixels))
    return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)


def to_gray(pixels: np.ndarray, channel: str) -> np.ndarray:
    """Float32 gray image of a decoded pixel array (gray, gray+alpha, RGB or RGBA); "rgb" gives luminance."""
    image = _checked(_without_alpha(pixels))
    return image if image.ndim == 2 else np.ascontiguousarray(_colour_channel(image, channel), dtype=np.float32)


def _without_alpha(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):
        pixels = pixels[..., :-1]  # alpha says where the image is drawn, not how bright it is
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] == 3)):
        raise ImageReadError(f"unsupported image shape {pixels.shape} (expected gray, RGB or RGBA)")
    return pixels


def _checked(pixels: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1] for integer images (their dtype's range), as stored for float ones; no NaN, not empty."""
    image = img_as_float32(pixels)
    if image.size == 0:
        raise ImageReadError("image has no pixels")
    if not np.all(np.isfinite(image)):
        raise ImageReadError("image contains NaN or Inf values")
    return np.ascontiguousarray(image, dtype=np.float32)


def _colour_channel(rgb: np.ndarray, channel: str) -> np.ndarray:
    if channel in ("luminance", "rgb"):
        return rgb2gray(rgb)
    if channel in ("hematoxylin", "eosin"):
        return rgb2hed(np.clip(rgb, 0, 1))[..., 0 if channel == "hematoxylin" else 1]
    return rgb[..., CHANNELS.index(channel) - 1]


def read_pixels(path: Path, page: int = 0, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """The decoded pixels of an image file as stored (any dtype and channels; EXIF orientation applied)."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _read_tiff(path, page, max_megapixels)
        return _read_pillow(path, page, max_megapixels)
    except ImageReadError:
        raise
    # Decoders signal a broken file with many exception types (OSError, ValueError, SyntaxError,
    # struct.error, EOFError, ...); to the pipeline they all mean the same: this file is unusable.
    except Exception as exc:
        first_line = next(iter(str(exc).splitlines()), "")
        raise ImageReadError(f"cannot read image ({type(exc).__name__}: {first_line})") from exc


def _check_size(width: int, height: int, max_megapixels: float) -> None:
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ImageReadError(
            f"image is {width}x{height} px ({megapixels:.0f} MP), above images.max_megapixels = "
            f"{max_megapixels:g}: raise it if this machine has the memory (about {megapixels * 16:.0f} MB "
            "are needed), or split the image into tiles first"
        )


def _page(page: int, n_pages: int) -> int:
    """The page to read: ``page`` of a multi-page file; a single-page file is read as it is."""
    if n_pages == 1:
        return 0
    if page >= n_pages:
        raise ImageReadError(f"images.page is {page}, but the file has {n_pages} pages (pages count from 0)")
    return page


def _read_tiff(path: Path, page: int, max_megapixels: float) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        tiff_page = tif.pages[_page(page, len(tif.pages))]
        _check_size(tiff_page.imagewidth, tiff_page.imagelength, max_megapixels)
        pixels = tiff_page.asarray()
        if tiff_page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and pixels.ndim == 3:
            pixels = np.moveaxis(pixels, 0, -1)  # samples stored plane by plane: make them last
    return pixels


def _read_pillow(path: Path, page: int, max_megapixels: float) -> np.ndarray:
    # Pillow's own decompression-bomb guard would refuse big images with its message; ours names the
    # setting, so Pillow's is lifted while the header is read.
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            image.seek(_page(page, getattr(image, "n_frames", 1)))
            _check_size(image.width, image.height, max_megapixels)
            image = ImageOps.exif_transpose(image)
            if image.mode not in _PILLOW_AS_IS:  # P, CMYK, YCbCr, LAB, HSV, ...
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            return np.asarray(image)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
