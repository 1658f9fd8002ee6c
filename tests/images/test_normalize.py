"""Particle crop -> tile (square padding with background, fit/fixed scale, intensity) and features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from skimage import draw
from skimage.measure import regionprops

from quagga.images.features import FEATURES, particle_features
from quagga.images.normalize import Box, CropError, local_background, make_tile
from quagga.params import NormalizeParams
from quagga.settings import SettingsError

FIELD, DARK = 0.8, 0.2
FIT = NormalizeParams(scale_mode="fit", intensity="percentile")
FIXED = NormalizeParams(scale_mode="fixed", fixed_extent_px=128, intensity="percentile")


def _ellipse(shape: tuple[int, int], cy: int, cx: int, ry: int, rx: int) -> tuple[np.ndarray, Box]:
    """Dark ellipse on a bright field with a little noise, and its tight box."""
    rng = np.random.default_rng(0)
    image = FIELD + rng.normal(0, 0.01, shape)
    rr, cc = draw.ellipse(cy, cx, ry, rx, shape)
    image[rr, cc] = DARK
    return image.astype(np.float32), Box(cc.min(), rr.min(), cc.max() + 1, rr.max() + 1)


def _dark(tile: np.ndarray):
    """Region properties of the particle in a tile (dark pixels)."""
    return regionprops((tile < 0.5).astype(np.uint8))[0]


def test_dark_disc_tile_is_centred_in_unit_range() -> None:
    image, box = _ellipse((100, 100), 50, 50, 15, 15)
    tile = make_tile(image, box, FIT)
    assert tile.image.shape == (128, 128) and tile.image.dtype == np.float32
    assert tile.image.min() == 0.0 and tile.image.max() == 1.0
    cy, cx = _dark(tile.image).centroid
    assert abs(cy - 63.5) < 1 and abs(cx - 63.5) < 1
    side = box.width + 2 * 3  # the disc and a 10 % margin on each side
    assert tile.scale == pytest.approx(128 / side)
    assert _dark(tile.image).equivalent_diameter_area == pytest.approx(box.width * 128 / side, rel=0.05)


def test_square_padding_is_background_not_zero() -> None:
    image, _ = _ellipse((60, 120), 30, 60, 10, 10)
    tile = make_tile(image, Box(0, 0, 120, 60), FIT)  # whole wide image: padded above and below
    assert tile.background == pytest.approx(FIELD, abs=0.01)
    pad = 128 * 30 // 120  # rows of padding above the image
    field_inside = tile.image[64, :10].mean()
    assert field_inside > 0.9
    np.testing.assert_allclose(tile.image[: pad - 2], field_inside, atol=0.05)
    np.testing.assert_allclose(tile.image[-(pad - 2) :], field_inside, atol=0.05)


def test_aspect_ratio_is_preserved() -> None:
    image, box = _ellipse((100, 160), 50, 80, 15, 30)
    props = _dark(make_tile(image, box, FIT).image)
    height = props.bbox[2] - props.bbox[0]
    width = props.bbox[3] - props.bbox[1]
    assert width / height == pytest.approx(2.0, rel=0.05)
    assert width == pytest.approx(128 / 1.2, abs=2)  # the long side fills the tile less the margin


def test_fixed_mode_keeps_relative_size_fit_mode_fills() -> None:
    small_image, small_box = _ellipse((200, 200), 100, 100, 8, 8)
    big_image, big_box = _ellipse((200, 200), 100, 100, 24, 24)
    small, big = make_tile(small_image, small_box, FIXED), make_tile(big_image, big_box, FIXED)
    assert small.scale == big.scale == 1.0 and not small.shrunk and not big.shrunk
    ratio = _dark(big.image).equivalent_diameter_area / _dark(small.image).equivalent_diameter_area
    assert ratio == pytest.approx(big_box.width / small_box.width, rel=0.05)
    fit_diameters = [_dark(make_tile(im, b, FIT).image).equivalent_diameter_area
                     for im, b in [(small_image, small_box), (big_image, big_box)]]
    np.testing.assert_allclose(fit_diameters, 128 / 1.2, rtol=0.05)


def test_fixed_mode_shrinks_a_particle_bigger_than_the_extent() -> None:
    image, box = _ellipse((300, 300), 150, 150, 80, 80)
    tile = make_tile(image, box, FIXED)
    assert tile.shrunk
    assert tile.scale == pytest.approx(128 / (box.width + 2 * round(0.1 * box.width)))
    assert _dark(tile.image).equivalent_diameter_area == pytest.approx(box.width * tile.scale, rel=0.05)


def test_box_at_the_image_edge_is_padded_with_background() -> None:
    image, box = _ellipse((100, 100), 50, 15, 15, 15)  # disc touching the left edge
    tile = make_tile(image, box, FIT)
    cy, cx = _dark(tile.image).centroid
    assert abs(cy - 63.5) < 1 and abs(cx - 63.5) < 1  # still centred: the missing margin is background
    assert tile.image[64, :4].mean() > 0.9


def test_invert_and_percentile_clipping() -> None:
    image, box = _ellipse((100, 100), 50, 50, 15, 15)
    image[50, 50] = 5.0  # a hot pixel must not compress the rest of the range
    plain = make_tile(image, box, FIT).image
    inverted = make_tile(image, box, dataclasses.replace(FIT, invert=True)).image
    np.testing.assert_allclose(inverted, 1 - plain, atol=1e-6)
    assert plain[5, 5] > 0.9  # the field is still bright despite the hot pixel


def test_absorbance_keeps_opacity_that_percentile_stretch_loses() -> None:
    """An opaque and a pale particle: percentile maps both to black, absorbance keeps 0.75 vs 0.25."""
    absorbance = NormalizeParams(scale_mode="fit", intensity="absorbance", gain=1.0)
    opaque, box = _ellipse((100, 100), 50, 50, 15, 15)
    pale = np.where(opaque < 0.5, 0.6, opaque).astype(np.float32)
    for image, expected in [(opaque, 1 - DARK / FIELD), (pale, 1 - 0.6 / FIELD)]:
        tile = make_tile(image, box, absorbance).image
        assert tile[64, 64] == pytest.approx(expected, abs=0.03)  # particle: fraction of light absorbed
        assert tile[3, 3] < 0.05  # field: nothing absorbed
        assert make_tile(image, box, FIT).image[64, 64] < 0.05  # percentile: both particles black
    # uneven illumination cancels: the same particle on a field twice as bright looks the same
    brighter = make_tile(np.clip(opaque * 2, 0, None), box, absorbance).image
    np.testing.assert_allclose(brighter, make_tile(opaque, box, absorbance).image, atol=1e-5)


def test_absorbance_refuses_a_black_field() -> None:
    image = np.zeros((60, 60), np.float32)
    image[20:40, 20:40] = 0.9  # fluorescence-like: bright particle on black
    with pytest.raises(CropError, match="background is black"):
        make_tile(image, Box(20, 20, 40, 40), NormalizeParams(scale_mode="fit", intensity="absorbance", gain=1.0))


def test_unusable_crops_raise_crop_error() -> None:
    with pytest.raises(CropError, match="no contrast"):
        make_tile(np.full((50, 50), 0.5, np.float32), Box(10, 10, 30, 30), FIT)
    with pytest.raises(CropError, match="1x1 px"):
        make_tile(np.ones((1, 1), np.float32), Box(0, 0, 1, 1), FIT)


def test_local_background_is_the_border_median() -> None:
    crop = np.zeros((5, 5))
    crop[0] = 1.0  # 5 of 16 border pixels
    assert local_background(crop) == 0.0
    crop[:, 0] = 1.0  # now 9 of 16
    assert local_background(crop) == 1.0


@pytest.mark.parametrize("polarity", ["dark", "bright"])
def test_disc_features(polarity: str) -> None:
    radius = 20
    image, box = _ellipse((80, 80), 40, 40, radius, radius)
    if polarity == "bright":
        image = 1 - image
    features = particle_features(image, local_background(image))
    assert set(features) == set(FEATURES) and all(k.startswith("feat_") for k in features)
    assert features["feat_area"] == pytest.approx(np.pi * radius**2, rel=0.1)
    assert features["feat_equivalent_diameter"] == pytest.approx(2 * radius, rel=0.05)
    assert features["feat_perimeter"] == pytest.approx(2 * np.pi * radius, rel=0.1)
    assert features["feat_eccentricity"] < 0.2 and features["feat_solidity"] > 0.95
    inside = DARK if polarity == "dark" else 1 - DARK
    assert features["feat_mean_intensity"] == pytest.approx(inside, abs=0.01)


def test_ring_features_fill_the_hole_and_ellipse_axes() -> None:
    image, _ = _ellipse((80, 80), 40, 40, 20, 20)
    rr, cc = draw.disk((40, 40), 14)
    image[rr, cc] = FIELD  # pollen-like: dark rim, light interior
    assert particle_features(image, FIELD)["feat_area"] == pytest.approx(np.pi * 20**2, rel=0.1)
    image, _ = _ellipse((80, 120), 40, 60, 10, 30)
    features = particle_features(image, FIELD)
    assert features["feat_major_axis"] == pytest.approx(60, rel=0.05)
    assert features["feat_minor_axis"] == pytest.approx(20, rel=0.1)


def test_constant_crop_has_nan_features() -> None:
    features = particle_features(np.full((10, 10), 0.5), 0.5)
    assert all(np.isnan(v) for v in features.values())


def test_there_are_as_many_features_as_flow_imagers_export() -> None:
    assert len(FEATURES) >= 30 and len(set(FEATURES)) == len(FEATURES)


def test_shape_features_tell_a_disc_a_square_and_a_fibre_apart() -> None:
    disc, _ = _ellipse((80, 80), 40, 40, 20, 20)
    fibre, _ = _ellipse((60, 160), 30, 80, 4, 60)
    square = np.full((80, 80), FIELD, dtype=np.float32)
    square[20:60, 20:60] = DARK
    d, f, s = (particle_features(x, FIELD) for x in (disc, fibre, square))
    assert d["feat_circularity"] == pytest.approx(1.0, abs=0.1) and d["feat_aspect_ratio"] > 0.95
    assert d["feat_feret_min"] == pytest.approx(41, abs=2) and d["feat_feret_max"] == pytest.approx(41, abs=2)
    assert s["feat_extent"] == pytest.approx(1.0) and s["feat_feret_min"] == pytest.approx(40, abs=1)
    assert s["feat_feret_max"] == pytest.approx(40 * np.sqrt(2), rel=0.05)
    assert s["feat_circularity"] == pytest.approx(np.pi / 4, abs=0.08)
    assert f["feat_aspect_ratio"] < 0.2 and f["feat_feret_ratio"] < 0.2 and f["feat_circularity"] < 0.4
    assert f["feat_hu1"] > d["feat_hu1"]


def test_intensity_edge_and_texture_features() -> None:
    sharp, _ = _ellipse((80, 80), 40, 40, 20, 20)
    blurred = ndimage.gaussian_filter(sharp, 3)
    textured = sharp.copy()
    rr, cc = draw.disk((40, 40), 19)
    textured[rr, cc] = np.where((rr + cc) % 2 == 0, 0.1, 0.4)  # fine checkerboard inside the particle
    s, b, t = (particle_features(x, FIELD) for x in (sharp, blurred, textured))
    assert s["feat_contrast"] == pytest.approx(DARK - FIELD, abs=0.02)
    assert s["feat_edge_gradient"] > 2 * b["feat_edge_gradient"]  # in focus vs out of focus
    assert t["feat_glcm_contrast"] > 2 * s["feat_glcm_contrast"]
    assert t["feat_entropy"] > s["feat_entropy"] and t["feat_std_intensity"] > s["feat_std_intensity"]
    assert t["feat_p10_intensity"] == pytest.approx(0.1, abs=0.01)
    assert t["feat_p90_intensity"] == pytest.approx(0.4, abs=0.05)


def test_make_tile_refuses_settings_left_auto() -> None:
    """A tile made with an unresolved 'auto' would silently mean something else: name the keys instead."""
    image, box = _ellipse((100, 100), 50, 50, 15, 15)
    with pytest.raises(SettingsError, match="gain"):
        make_tile(image, box, NormalizeParams(scale_mode="fit", intensity="absorbance"))


@pytest.mark.parametrize("side, channels, crop", [(296, 3, (40, 60, 10, 200)), (296, None, (0, 296, 0, 296)),
                                                  (1000, None, (500, 900, 0, 30)), (129, 3, (1, 128, 0, 129)),
                                                  (128, None, (3, 9, 0, 128)), (40, 3, (0, 40, 20, 21))])
def test_canvas_resize_is_skimage_resize(side: int, channels: int | None, crop: tuple[int, int, int, int]) -> None:
    """The sparse two-product resize of a crop's deviation from its field equals scikit-image's resize
    (anti-aliased when shrinking) of the whole canvas (the field with the crop on it) within float32 rounding."""
    from skimage.transform import resize

    from quagga.images.normalize import canvas_resize

    top, bottom, left, right = crop
    rng = np.random.default_rng(side)
    background = rng.random(channels, dtype=np.float32) if channels else np.float32(0.7)
    canvas = np.empty((side, side, *([channels] if channels else [])), dtype=np.float32)
    canvas[...] = background
    canvas[top:bottom, left:right] = rng.random(canvas[top:bottom, left:right].shape, dtype=np.float32)
    expected = resize(canvas, (128, 128), order=1, mode="edge", anti_aliasing=side > 128, preserve_range=True)
    got = canvas_resize(canvas[top:bottom, left:right] - background, side, (top, left), 128)
    assert got.dtype == np.float32 and got.shape == (128, 128 * (channels or 1))
    np.testing.assert_allclose(got.reshape(expected.shape) + background, expected, atol=1e-5)


def test_colour_features_are_the_particles_channels_against_the_field() -> None:
    """Per-channel mean, spread and contrast of the particle found in gray, NaN where nothing stands out."""
    from quagga.images.features import COLOUR_FEATURES

    colour = np.empty((60, 60, 3), np.float32)
    colour[...] = (0.9, 0.8, 0.85)
    rr, cc = draw.disk((30, 30), 12)
    colour[rr, cc] = (0.5, 0.2, 0.6)
    colour[rr[::2], cc[::2], 0] = 0.3  # the red channel varies inside the particle
    gray = colour.mean(axis=-1)
    features = particle_features(gray, local_background(gray), colour)
    assert list(features) == FEATURES + COLOUR_FEATURES
    red = colour[rr, cc, 0].astype(np.float64)
    assert features["feat_mean_red"] == pytest.approx(red.mean())
    assert features["feat_std_red"] == pytest.approx(red.std()) and red.std() > 0
    assert features["feat_contrast_green"] == pytest.approx(0.2 - 0.8)
    assert features["feat_std_blue"] == pytest.approx(0.0, abs=1e-7)
    flat = np.full((20, 20, 3), 0.5, np.float32)
    empty = particle_features(flat[..., 0], 0.5, flat)
    assert list(empty) == FEATURES + COLOUR_FEATURES and all(np.isnan(v) for v in empty.values())
