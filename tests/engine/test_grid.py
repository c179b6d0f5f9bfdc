"""Layer layouts: channels-first, channels-last (Swin) and token (ViT, DeiT, registers) outputs are
told apart from their shapes and the input's size, read as maps on the image grid the same way
pytorch-grad-cam's hand-written reshape functions read them, and overridable where a shape
cannot tell."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm

import nbexplain as nbx
from nbexplain.engine.grid import Grid, check_layouts, find_grid, on_grid, patch_grid, tokens
from tests.engine.test_layers import build


@pytest.mark.parametrize(("shape", "image", "expected"), [
    ((1, 96, 56, 56), (224, 224), Grid("nchw", (56, 56))),
    ((1, 56, 56, 96), (224, 224), Grid("nhwc", (56, 56))),
    ((1, 768, 7, 7), (224, 224), Grid("nchw", (7, 7))),
    ((1, 7, 7, 768), (224, 224), Grid("nhwc", (7, 7))),
    ((1, 7, 7, 7), (224, 224), Grid("nchw", (7, 7))),       # both readings fit: channels-first
    ((1, 64, 8, 10), (256, 320), Grid("nchw", (8, 10))),     # not square
    ((1, 8, 10, 64), (256, 320), Grid("nhwc", (8, 10))),
    ((1, 16, 12, 10), (16, 14), Grid("nchw", (12, 10))),     # unpadded convolutions shrink the map
    ((1, 197, 768), (224, 224), Grid("tokens", (14, 14), 1)),   # ViT: a class token
    ((1, 198, 192), (224, 224), Grid("tokens", (14, 14), 2)),   # DeiT distilled: class + distillation
    ((1, 201, 384), (224, 224), Grid("tokens", (14, 14), 5)),   # a class token and 4 registers
    ((1, 3136, 96), (224, 224), Grid("tokens", (56, 56), 0)),   # Swin in Hugging Face: patches only
    ((1, 1 + 12 * 20, 64), (192, 320), Grid("tokens", (12, 20), 1)),
    ((1, 1000), (224, 224), None),
    ((1, 768, 1, 1), (224, 224), None),
])
def test_grid_of_an_output(shape, image, expected):
    assert find_grid(shape, image) == expected


def test_the_models_own_prefix_count_comes_first_and_a_layout_overrides():
    assert find_grid((1, 197, 8), (224, 224), prefix=1) == Grid("tokens", (14, 14), 1)
    assert find_grid((1, 196, 8), (224, 224), prefix=2) == Grid("tokens", (14, 14), 0)  # patch embed
    assert find_grid((1, 7, 7, 7), (224, 224), layout="nhwc") == Grid("nhwc", (7, 7))
    assert find_grid((1, 50, 8), (224, 224), layout=tokens(2, 6, 8)) == Grid("tokens", (6, 8), 2)
    with pytest.raises(ValueError, match="layout 'tokens' does not fit an output of shape"):
        find_grid((1, 8, 4, 4), (16, 16), layout="tokens")
    with pytest.raises(ValueError, match="layout must be one of"):
        find_grid((1, 8, 4, 4), (16, 16), layout="hwc")


def test_layout_argument_is_checked():
    assert check_layouts({"blocks.0": "tokens"}) == {"blocks.0": "tokens"}
    with pytest.raises(TypeError, match=r"layout must be a dict \{layer: layout\}"):
        nbx.Explainer(torch.nn.Identity(), layout="tokens")
    with pytest.raises(ValueError, match=r"layout\['a'\] must be one of"):
        nbx.Explainer(torch.nn.Identity(), layout={"a": "chw"})


def test_one_position_is_no_grid():
    assert not on_grid((1, 1), (224, 224)) and on_grid((2, 2), (224, 224))
    assert patch_grid(196, (224, 224)) == (14, 14) and patch_grid(197, (224, 224)) is None


def test_maps_read_tokens_as_pytorch_grad_cam_reshapes_them():
    """pytorch-grad-cam's documented ViT reshape_transform, and its Swin one."""
    x = torch.randn(2, 1 + 6 * 4, 5)
    vit = x[:, 1:, :].reshape(2, 6, 4, 5).transpose(2, 3).transpose(1, 2)
    torch.testing.assert_close(Grid("tokens", (6, 4), 1).maps(x), vit, rtol=0, atol=0)
    nhwc = torch.randn(2, 6, 4, 5)
    torch.testing.assert_close(Grid("nhwc", (6, 4)).maps(nhwc), nhwc.permute(0, 3, 1, 2), rtol=0, atol=0)
    assert Grid("nhwc", (6, 4)).maps(nhwc).data_ptr() == nhwc.data_ptr()  # a view


@pytest.fixture(scope="module")
def swin():
    return nbx.Explainer(build(tvm.swin_t, meta=False))  # its int buffers need the real init


def test_swin_offers_its_channels_last_blocks(swin):
    layers = swin.layers()
    assert layers[:3] == ["features.0", "features.1.0", "features.1.1"]
    assert layers[-3:] == ["features.7.1", "norm", "permute"] and len(layers) == 18


def test_a_layer_off_the_grid_says_so(swin):
    with pytest.raises(ValueError, match=r"layer 'head' outputs shape \(1, 1000\), which is no spatial map"):
        swin.explain(torch.randn(3, 224, 224), "gradcam", layer="head")
