"""Layer layouts: channels-last outputs (Swin) are told from (N, C, H, W) ones, never offered as
layers, and a method asked for one says why instead of computing over the wrong axis."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm

import nbexplain as nbx
from nbexplain.engine.grid import layout, on_grid
from tests.engine.test_layers import build


@pytest.mark.parametrize(("shape", "image", "expected"), [
    ((1, 96, 56, 56), (224, 224), "nchw"),
    ((1, 56, 56, 96), (224, 224), "nhwc"),
    ((1, 768, 7, 7), (224, 224), "nchw"),
    ((1, 7, 7, 768), (224, 224), "nhwc"),
    ((1, 7, 7, 7), (224, 224), "nchw"),         # both readings fit: channels-first, as torch lays it
    ((1, 64, 8, 10), (256, 320), "nchw"),       # not square
    ((1, 8, 10, 64), (256, 320), "nhwc"),
    ((1, 16, 12, 10), (16, 14), "nchw"),        # unpadded convolutions shrink the map a little
    ((1, 16, 197), (224, 224), None),           # tokens: not a 4-D map
])
def test_layout_of_an_output(shape, image, expected):
    assert layout(shape, image) == expected


def test_one_position_is_no_grid():
    assert not on_grid((1, 1), (224, 224)) and on_grid((2, 2), (224, 224))


@pytest.fixture(scope="module")
def swin():
    return nbx.Explainer(build(tvm.swin_t, meta=False))  # its int buffers need the real init


def test_swin_offers_only_its_channels_first_layer(swin):
    assert swin.layers() == ["permute"]  # its stages are (N, H, W, C); the final permute is not


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "activations", "ablation"])
def test_a_method_at_a_channels_last_layer_says_so(swin, method):
    with pytest.raises(ValueError, match=r"'features.1' outputs shape \(1, 56, 56, 96\), channels-last"):
        swin.explain(torch.randn(3, 224, 224), method, layer="features.1")


def test_gradcam_at_the_offered_layer_is_a_map_on_the_grid(swin):
    explanation = swin.explain(torch.randn(3, 224, 224), "gradcam")
    assert explanation.layer == "permute" and explanation.attribution.shape == (7, 7)
    assert explanation.map.shape == (224, 224)
