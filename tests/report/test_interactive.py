"""The map's pieces: colourings, thumbnails and sound clips (the page itself is tested in Chromium)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from quagga.report.interactive import (
    CLIP_CONTEXT_S,
    CLIP_MAX_S,
    CLIP_RATE,
    CROP_PX,
    NOISE_COLOUR,
    THUMB_PX,
    audio_clip_uri,
    audio_clips,
    categorical_colours,
    crop_uri,
    image_crops,
    map_data,
    numeric_colours,
    thumbnail_uri,
)
from quagga.report.media import _resample_filter, opus_ogg


def _decode(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def test_categorical_colours_grey_out_missing() -> None:
    colours = categorical_colours([0, 1, None, 0, 2])
    assert colours[2] == NOISE_COLOUR
    assert colours[0] == colours[3] and len({colours[0], colours[1], colours[4]}) == 3
    assert len(set(categorical_colours(range(30)))) == 30  # many categories stay distinct


def test_numeric_colours_by_rank() -> None:
    colours = numeric_colours([0.1, 1e9, np.nan, 0.2])
    assert colours[2] == NOISE_COLOUR and len(set(colours)) == 4


def test_thumbnail_is_a_small_jpeg_with_low_frequencies_at_the_bottom() -> None:
    tile = np.zeros((128, 128), np.float32)
    tile[:16] = 1.0  # energy in the lowest frequency rows (row 0 = lowest frequency in a spectrogram tile)
    for origin, bright_row in (("lower", THUMB_PX - 1), ("upper", 0)):
        picture = Image.open(io.BytesIO(_decode(thumbnail_uri(tile, origin))))
        assert picture.format == "JPEG" and picture.size == (THUMB_PX, THUMB_PX)
        assert np.asarray(picture)[bright_row].mean() > 200


def test_thumbnail_of_a_colour_tile_is_rgb_and_of_a_grey_one_grey() -> None:
    tile = np.zeros((3, 32, 32), np.float32)
    tile[0] = 1.0
    tile[:, :, 16:] = 1.0  # left half red, right half white
    picture = Image.open(io.BytesIO(_decode(thumbnail_uri(tile, "upper"))))
    assert picture.mode == "RGB" and picture.size == (THUMB_PX, THUMB_PX)
    pixels = np.asarray(picture).astype(int)
    assert pixels[32, 8, 0] > 200 and pixels[32, 8, 1:].max() < 60
    assert pixels[32, 56].min() > 200
    grey = Image.open(io.BytesIO(_decode(thumbnail_uri(np.full((1, 32, 32), 0.5, np.float32), "upper"))))
    assert grey.mode == "L" and abs(np.asarray(grey).mean() - 128) < 3
    with pytest.raises(ValueError, match="C = 1 or 3"):
        thumbnail_uri(np.zeros((2, 32, 32)), "upper")


def test_audio_clip_has_context_and_is_capped(tmp_path: Path) -> None:
    rate = 16000
    path = tmp_path / "rec.flac"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal((10 * rate, 2)), rate)
    clip, clip_rate = sf.read(io.BytesIO(_decode(audio_clip_uri(path, 2.0, 2.5))))
    assert clip_rate == CLIP_RATE and clip.ndim == 1  # mixed to mono, resampled for Opus
    assert len(clip) / CLIP_RATE == pytest.approx(0.5 + 2 * CLIP_CONTEXT_S, abs=0.01)
    assert np.abs(clip).max() == pytest.approx(0.8, abs=0.15)  # normalised to be audible (lossy codec)
    start, rate = sf.read(io.BytesIO(_decode(audio_clip_uri(path, 0.0, 0.2))))
    assert len(start) / rate == pytest.approx(0.2 + CLIP_CONTEXT_S, abs=0.01)  # no context before 0 s
    long, _ = sf.read(io.BytesIO(_decode(audio_clip_uri(path, 1.0, 9.0))))
    assert len(long) / rate == pytest.approx(CLIP_MAX_S + CLIP_CONTEXT_S, abs=0.01)


def test_unreadable_recordings_give_empty_clips_and_one_problem(tmp_path: Path) -> None:
    sf.write(tmp_path / "good.wav", np.zeros(8000) + 0.1, 8000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    items = pd.DataFrame({"source": ["good.wav", "bad.wav", "bad.wav", "gone.wav"],
                          "onset_s": [0.1, 0.1, 0.2, 0.1], "offset_s": [0.2, 0.2, 0.3, 0.2]})
    clips, problems = audio_clips(items, tmp_path)
    assert clips[0].startswith("data:audio/ogg;base64,") and clips[1:] == ["", "", ""]
    assert len(problems) == 2 and problems[0].startswith("bad.wav: no sound clips")
    assert problems[1].startswith("gone.wav")


def test_map_data_offers_the_colourings_the_items_support() -> None:
    items = pd.DataFrame({
        "item_id": ["a", "b", "c"], "label": pd.array(["x", None, "y"], dtype="string"),
        "cluster": [0, -1, 1], "source": ["r1.wav", "r2.wav", "r1.wav"], "x": [0.0, 1.0, 2.0],
        "y": [0.0, 1.0, 2.0], "recon_error": [0.1, 0.5, 0.2], "probability": [1.0, 0.0, 0.7],
    })
    data, colourings = map_data(items, ["t"] * 3, None)
    assert colourings == ["cluster", "label", "recon_error", "probability", "source"]
    assert data["label"] == ["x", "(none)", "y"] and data["audio"] == ["", "", ""]
    assert data["colour"] == data["colour_cluster"] and data["colour"][1] == NOISE_COLOUR


@pytest.mark.parametrize(("rate", "dtype"), [(32000, np.float32), (44100, np.float32), (22050, np.float64)])
def test_clip_resampling_with_the_filter_designed_once_is_scipys_own(rate: int, dtype: type) -> None:
    from scipy.signal import resample_poly

    up, down = CLIP_RATE // np.gcd(rate, CLIP_RATE), rate // np.gcd(rate, CLIP_RATE)
    x = np.random.default_rng(0).standard_normal(4001).astype(dtype)
    for _ in range(2):  # the cached filter is not changed by its use
        made = resample_poly(x, up, down, window=_resample_filter(up, down, np.dtype(dtype).str))
        assert made.dtype == dtype and np.array_equal(made, resample_poly(x, up, down))


def test_opus_clips_decode_to_the_samples_they_were_made_of() -> None:
    """Any length (not a whole number of Opus frames): the stream ends at the last sample, the whole band is
    kept (a 15 kHz whistle stays), and the same samples give the same bytes."""
    t = np.arange(13001) / CLIP_RATE
    whistle = (0.3 * np.sin(2 * np.pi * 15000 * t) + 0.3 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)
    ogg = opus_ogg(whistle)
    assert ogg == opus_ogg(whistle) and len(ogg) < 4000  # 0.27 s; the PCM is 26 kB
    decoded, rate = sf.read(io.BytesIO(ogg), dtype="float32")
    assert rate == CLIP_RATE and len(decoded) == len(whistle)
    spectrum = np.abs(np.fft.rfft(decoded))
    freqs = np.fft.rfftfreq(len(decoded), 1 / CLIP_RATE)
    for f0 in (2000, 15000):
        band = np.abs(freqs - f0) < 200
        assert spectrum[band].max() > 0.3 * np.abs(np.fft.rfft(whistle))[band].max()


def test_original_crop_keeps_colour_and_context(tmp_path: Path) -> None:
    field = np.zeros((200, 300, 3), np.uint8)
    field[50:70, 100:160] = (200, 30, 30)  # a red particle, 60 x 20
    uri = crop_uri(field, (100, 50, 160, 70))
    crop = np.asarray(Image.open(io.BytesIO(_decode(uri))))
    assert crop.shape[-1] == 3 and max(crop.shape[:2]) == CROP_PX
    centre = crop[crop.shape[0] // 2, crop.shape[1] // 2].astype(int)
    assert centre[0] > 150 and centre[1] < 80 and centre[2] < 80  # still red
    assert crop[1, 1].max() < 40  # the margin shows the dark background around the box
    deep = (np.arange(100 * 100, dtype=np.uint16).reshape(100, 100) % 3) * 1000  # 16-bit, 3 levels
    stretched = np.asarray(Image.open(io.BytesIO(_decode(crop_uri(deep, (10, 10, 40, 40))))))
    assert stretched.ndim == 2 and stretched.min() < 20 and stretched.max() > 235

    Image.fromarray(field).save(tmp_path / "field.png")
    items = pd.DataFrame({
        "source": ["field.png", "missing.png", "field.png"],
        "xmin": [100, 0, 0], "ymin": [50, 0, 0], "xmax": [160, 5, 10], "ymax": [70, 5, 10],
    })
    crops, problems = image_crops(items, tmp_path)
    assert crops[0] == uri and crops[1] == "" and crops[2].startswith("data:image/jpeg;base64,")
    assert len(problems) == 1 and problems[0].startswith("missing.png: no original crops")


def test_original_crop_of_a_multi_page_tiff_is_from_the_configured_page(tmp_path: Path) -> None:
    import tifffile

    pages = np.stack([np.full((40, 60, 3), (255 * (k == 0), 255 * (k == 1), 255 * (k == 2)), np.uint8)
                      for k in range(3)])  # page 0 red, page 1 green, page 2 blue
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="rgb")
    items = pd.DataFrame({"source": ["stack.tif"], "xmin": [10], "ymin": [10], "xmax": [30], "ymax": [30]})
    for page, channel in ((0, 0), (2, 2)):
        crops, problems = image_crops(items, tmp_path, page)
        crop = np.asarray(Image.open(io.BytesIO(_decode(crops[0]))))
        assert problems == [] and crop[..., channel].mean() > 200 and np.delete(crop, channel, -1).mean() < 40
