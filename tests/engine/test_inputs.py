"""Images of every PIL mode reach the model with their contrast: 16-bit and float images are
scaled from their range, never clipped to white or black."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nbexplain.engine.inputs import as_pil

RAMP = np.linspace(0, 1, 64).reshape(8, 8)


def wide(mode: str) -> Image.Image:
    if mode == "F":
        return Image.fromarray(RAMP.astype(np.float32))
    values = (RAMP * 65535).round()
    if mode == "I":
        return Image.fromarray(values.astype(np.int32))
    if mode == "I;16B":
        return Image.frombytes("I;16B", (8, 8), values.astype(">u2").tobytes())
    return Image.fromarray(values.astype(np.uint16))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_wide_modes_keep_their_gray_ramp(mode):
    image = wide(mode)
    assert image.mode == mode
    rgb = np.asarray(as_pil(image))
    assert rgb.shape == (8, 8, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_allclose(rgb[..., 0] / 255, RAMP, atol=0.5 / 255 + 1e-9)
    assert len(np.unique(rgb)) == 64  # convert("RGB") leaves 2 values (0 and 255, or 0 and 1)


@pytest.mark.parametrize(("mode", "values", "words"), [
    ("F", np.full((4, 4), 3.5, np.float32), r"mode 'F' must have values in \[0, 1\]; got \[3.5, 3.5\]"),
    ("F", np.full((4, 4), np.nan, np.float32), "NaN"),
    ("I", np.full((4, 4), -7, np.int32), r"mode 'I' must have values in \[0, 65535\]"),
])
def test_wide_values_out_of_range_are_an_error_naming_the_argument(mode, values, words):
    with pytest.raises(ValueError, match=words):
        as_pil(Image.fromarray(values), "image")


def test_ordinary_modes_are_converted_as_before():
    gray = Image.fromarray((RAMP * 255).round().astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(as_pil(gray))[..., 1], np.asarray(gray))
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 40))
    assert np.asarray(as_pil(rgba))[0, 0].tolist() == [10, 20, 30]
