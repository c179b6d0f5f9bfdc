"""Rendering: normalization, colormaps, overlays, and the Explanation's pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import nbexplain as nbx
from nbexplain import render
from tests.models import TinyCNN, example_input

# -- colormaps -----------------------------------------------------------------------------------

def test_lut_shape_and_ends():
    for cmap in render.colormaps():
        table = render.lut(cmap)
        assert table.shape == (256, 3) and table.dtype == np.uint8
        stops = render._STOPS[cmap]
        assert tuple(table[0]) == stops[0] and tuple(table[-1]) == stops[-1]
    assert set(render.UNSIGNED_CMAPS) | set(render.SIGNED_CMAPS) == set(render.colormaps())


def test_unknown_cmap_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown cmap 'hot'; valid: \['jet'"):
        render.lut("hot")
    with pytest.raises(ValueError, match="unknown cmap"):
        render.colorize(np.zeros((2, 2)), "hot")


# ours -> (matplotlib name, largest allowed difference in 0..255): gray and the diverging map are
# exact; jet, viridis and inferno are drawn from 9–10 evenly spaced stops, close to matplotlib's.
MATPLOTLIB = {"gray": ("gray", 0), "bwr": ("RdBu_r", 0), "viridis": ("viridis", 16),
              "inferno": ("inferno", 16), "jet": ("jet", 34)}


@pytest.mark.parametrize("cmap", list(MATPLOTLIB))
def test_colormaps_follow_matplotlib(cmap):
    matplotlib = pytest.importorskip("matplotlib")
    name, tolerance = MATPLOTLIB[cmap]
    reference = (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round()
    difference = np.abs(render.lut(cmap).astype(int) - reference)
    assert difference.max() <= tolerance and difference.mean() <= max(1.0, tolerance / 3)


def test_diverging_map_is_white_in_the_middle_blue_low_red_high():
    table = render.lut("bwr").astype(int)
    middle = table[127:129].mean(0)
    assert (middle > 235).all()
    assert table[0, 2] > table[0, 0] and table[-1, 0] > table[-1, 2]


# -- normalization -------------------------------------------------------------------------------

def test_normalize_unsigned():
    values = np.arange(100, dtype=np.float32).reshape(10, 10)
    out = render.normalize_unsigned(values)
    assert out.dtype == np.float32 and out.shape == values.shape
    assert out.min() == 0 and out.max() == 1 and out[0, 1] == pytest.approx(1 / 99)
    clipped = render.normalize_unsigned(values, percentile=50)
    assert clipped.max() == 1 and (clipped >= 1).sum() == 50  # everything above the median saturates
    assert np.array_equal(render.normalize_unsigned(np.zeros((3, 3))), np.zeros((3, 3)))
    shifted = render.normalize_unsigned(np.array([[-1.0, 0.0, 1.0]]))
    assert shifted.tolist() == [[0.0, 0.5, 1.0]]


def test_normalize_accepts_tensors():
    tensor = torch.arange(6.0, requires_grad=True).view(2, 3)
    assert np.allclose(render.normalize_unsigned(tensor), np.arange(6).reshape(2, 3) / 5)
    assert np.allclose(render.normalize_minmax(tensor.double()), np.arange(6).reshape(2, 3) / 5)


def test_normalize_minmax():
    out = render.normalize_minmax(np.array([[2.0, 4.0], [6.0, 10.0]]))
    assert out.tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert np.array_equal(render.normalize_minmax(np.full((2, 2), 7.0)), np.zeros((2, 2)))


def test_normalize_signed_puts_zero_at_half():
    values = np.array([[-2.0, -1.0, 0.0, 1.0, 4.0]])
    out = render.normalize_signed(values, percentile=100)
    assert out.tolist() == [[0.25, 0.375, 0.5, 0.625, 1.0]]
    assert np.array_equal(render.normalize_signed(np.zeros((2, 2))), np.full((2, 2), 0.5))
    assert render.normalize_signed(np.array([[-1.0, 0.0]]), percentile=100).tolist() == [[0.0, 0.5]]
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=(50, 50))
    clipped = render.normalize_signed(noisy, percentile=90)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert ((clipped == 0) | (clipped == 1)).mean() == pytest.approx(0.1, abs=0.01)


# -- colorize and overlay --------------------------------------------------------------------------

def test_colorize():
    map01 = np.array([[0.0, 1.0], [0.5, np.nan]])
    image = render.colorize(map01, "gray")
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 0, 0] and image[0, 1].tolist() == [255, 255, 255]
    assert image[1, 0].tolist() == [128, 128, 128] and image[1, 1].tolist() == [0, 0, 0]
    assert np.array_equal(render.colorize(np.full((1, 1), 7.0), "jet")[0, 0], render.lut("jet")[-1])
    with pytest.raises(ValueError, match=r"map must be 2-D \(H, W\); got shape \(1, 2, 2\)"):
        render.colorize(np.zeros((1, 2, 2)))


def test_overlay_blends_and_resizes():
    base = np.full((20, 30, 3), 100, np.uint8)
    map01 = np.ones((10, 15), np.float32)
    top = render.lut("viridis")[-1].astype(int)  # (gray is a spotlight, not a blend: see below)
    out = render.overlay(base, map01, cmap="viridis", alpha=0.5)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (30, 20)
    assert np.abs(np.asarray(out).astype(int) - (100 + top) / 2).max() <= 1
    assert np.array_equal(np.asarray(render.overlay(base, map01, alpha=0.0)), base)
    assert (np.asarray(render.overlay(Image.fromarray(base), map01, "viridis", alpha=1.0)) == top).all()
    gray_base = Image.fromarray(np.zeros((20, 30), np.uint8))
    assert render.overlay(gray_base, map01).mode == "RGB"
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]; got 1.5"):
        render.overlay(base, map01, alpha=1.5)


# -- Explanation -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explanations():
    model, x = TinyCNN("nn.ReLU").eval(), example_input(shape=(3, 24, 20))
    explainer = nbx.Explainer(model)
    return {method: explainer.explain(x, method, target=2) for method in ("saliency", "gradient")}


@pytest.mark.parametrize("method", ["saliency", "gradient"])
def test_explanation_pictures(explanations, method):
    result = explanations[method]
    assert result.map.shape == (24, 20) and result.map.dtype == np.float32
    assert result.map.min() >= 0 and result.map.max() <= 1
    assert result.signed == (method == "gradient")
    assert result.image.shape == (24, 20, 3) and result.image.dtype == np.uint8
    overlay = result.overlay()
    assert isinstance(overlay, Image.Image) and overlay.size == (20, 24) and overlay.mode == "RGB"
    assert result.overlay(alpha=0).tobytes() == Image.fromarray(result.image).tobytes()
    heat = result.heatmap()
    assert heat.size == (20, 24)
    default = "bwr" if result.signed else "jet"
    assert heat.tobytes() == Image.fromarray(render.colorize(result.map, default)).tobytes()
    assert result.heatmap("viridis").tobytes() != heat.tobytes()
    png = result._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    shown = Image.open(io.BytesIO(png)).convert("RGB")
    assert shown.tobytes() == result.figure().tobytes()
    assert shown.width > overlay.width and shown.height > overlay.height  # room for caption and colour bar
    top = shown.height - overlay.height - 6
    assert shown.crop((0, top, 20, top + 24)).tobytes() == overlay.tobytes()  # the overlay, as it is
    text = repr(result)
    assert f"method={method!r}" in text and "target=2" in text and "(3, 24, 20)" in text


def test_unsigned_map_peaks_at_one_signed_map_centres_zero(explanations):
    assert explanations["saliency"].map.max() == pytest.approx(1.0)
    gradient = explanations["gradient"]
    zero = gradient.attribution.sum(0) == 0
    if zero.any():
        assert np.allclose(gradient.map[zero.numpy()], 0.5)
    assert gradient.map.min() < 0.5 < gradient.map.max()


def test_explanation_is_frozen(explanations):
    with pytest.raises(AttributeError):
        explanations["saliency"].target = 3


@pytest.mark.parametrize("method", ["saliency", "gradient"])
def test_explanation_caption_and_scale_say_what_the_colours_mean(explanations, method):
    result = explanations[method]
    low, high = result.scale
    values = result.values
    assert values.values.shape == (24, 20) and values.unit == nbx.method_info(method).unit != ""
    if result.signed:
        assert low == -high < 0  # symmetric: white is zero
        raw = result.attribution.sum(0).numpy()
    else:
        assert low == 0 < high
        raw = result.attribution.abs().amax(0).numpy()
    np.testing.assert_allclose(values.values, raw)
    np.testing.assert_allclose(result.map, np.clip((raw - low) / (high - low), 0, 1), atol=1e-6)
    caption = result.caption
    assert caption.startswith(f"{method} · class 2 ")
    assert ("signed: red +, blue −" in caption) == result.signed and f"{high:.3g}" in caption


def test_a_signed_overlay_shows_the_photo_where_the_value_is_zero():
    photo = np.full((4, 4, 3), 40, np.uint8)
    map01 = np.full((4, 4), 0.5, np.float32)
    map01[0, 0] = 1.0  # the scale's top: full colour
    map01[0, 1] = 0.5 + 0.5 / 16  # a sixteenth of the way out
    out = np.asarray(render.overlay(photo, map01, "bwr", alpha=0.8, signed=True))
    assert (out[1:, 1:] == 40).all()  # zero: the photo, not a white wash
    red = render.lut("bwr")[255].astype(np.float32)
    np.testing.assert_allclose(out[0, 0], red, atol=1)  # the scale's end: its colour-bar colour
    weight = 2 * 0.8 * np.sqrt(1 / 16)  # min(1, 2·alpha·sqrt(|2m − 1|))
    pale = render.colorize(map01, "bwr")[0, 1].astype(np.float32)
    np.testing.assert_allclose(out[0, 1], (1 - weight) * 40 + weight * pale, atol=1)


def test_signed_weight_is_opaque_at_the_scales_ends_at_the_default_opacity():
    weight = render.signed_weight(np.array([0.5, 0.625, 1.0, 0.0], np.float32))
    np.testing.assert_allclose(weight, [0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(render.signed_weight(np.array([1.0, 0.625]), 0.25), [0.5, 0.25], atol=1e-6)


def test_gray_is_a_spotlight_that_dims_the_photo_where_the_map_is_low():
    photo = np.full((2, 2, 3), (200, 100, 50), np.uint8)
    map01 = np.array([[0.0, 1.0], [0.5, 1.0]], np.float32)
    out = np.asarray(render.overlay(photo, map01, "gray", alpha=0.5)).astype(int)
    assert out[0, 1].tolist() == [200, 100, 50]  # high: the photo as it is, not washed to white
    assert out[0, 0].tolist() == [100, 50, 25]  # low: darkened by the opacity
    np.testing.assert_allclose(out[1, 0], np.array([200, 100, 50]) * (0.5 + 0.5 * 128 / 255), atol=1)
    signed = np.asarray(render.overlay(photo, map01, "gray", alpha=0.5, signed=True)).astype(int)
    np.testing.assert_array_equal(signed, out)  # a spotlight for signed maps too (dark: negative)
