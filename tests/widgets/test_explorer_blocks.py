"""Deep models in the Explorer: the layer slider walks a ViT's blocks, and the "inside" control
next to it reaches the chosen block's sub-layers (issue 11, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nbx
from nbexplain.widgets.explorer import Explorer
from nbexplain.widgets.inside import WHOLE, block_of

timm = pytest.importorskip("timm")


def small_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=16, embed_dim=32, depth=3, num_heads=2, num_classes=10).eval()


@pytest.fixture()
def explorer():
    ex = nbx.Explainer(small_vit())
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    explorer = Explorer(ex, x)
    yield explorer.wait(60)
    explorer.close()


def test_slider_walks_blocks_and_inside_reaches_their_sub_layers(explorer):
    ex, slider, inside = explorer.explainer, explorer.controls.layer, explorer.controls.inside.dropdown
    assert list(slider.options) == ex.layers() == ["patch_embed", "blocks.0", "blocks.1"]
    assert explorer.layer == "blocks.1" and slider.value == "blocks.1"
    assert inside.layout.display == ""  # a block with sub-layers on the grid
    assert list(inside.options) == [(WHOLE, "blocks.1"), ("norm1", "blocks.1.norm1"),
                                    ("attn", "blocks.1.attn"), ("norm2", "blocks.1.norm2"),
                                    ("mlp", "blocks.1.mlp")]
    assert inside.value == "blocks.1"

    seen = []
    explorer.observe(lambda change: seen.append(change["new"]), names="layer")
    inside.value = "blocks.1.attn"  # as the browser picks it
    explorer.wait(60)
    assert explorer.layer == "blocks.1.attn" and seen == ["blocks.1.attn"]
    assert slider.value == "blocks.1" and list(slider.options) == ex.layers()  # the slider shows the block
    e = explorer.explanation
    assert (e.method, e.layer) == ("gradcam", "blocks.1.attn") and e.values.values.shape == (4, 4)
    x = explorer.image_tensor
    np.testing.assert_allclose(e.map, ex.explain(x, "gradcam", layer="blocks.1.attn").map, atol=1e-6)

    slider.value = "blocks.0"  # moving the slider: back to block level
    explorer.wait(60)
    assert explorer.layer == "blocks.0" and explorer.explanation.layer == "blocks.0"
    assert inside.value == "blocks.0" and [v for _, v in inside.options][1:] == [
        "blocks.0.norm1", "blocks.0.attn", "blocks.0.norm2", "blocks.0.mlp"]

    slider.value = "patch_embed"  # its conv is on the grid (its norm is an Identity: not offered)
    explorer.wait(60)
    assert [v for _, v in inside.options] == ["patch_embed", "patch_embed.proj"]


def test_layer_set_from_code_is_shown_in_both_controls(explorer):
    explorer.layer = "blocks.0.mlp.fc1"  # any module: the slider shows its block, the dropdown the layer
    explorer.wait(60)
    slider, inside = explorer.controls.layer, explorer.controls.inside.dropdown
    assert explorer.layer == "blocks.0.mlp.fc1" and explorer.explanation.layer == "blocks.0.mlp.fc1"
    assert slider.value == "blocks.0" and inside.value == "blocks.0.mlp.fc1"
    assert ("mlp.fc1", "blocks.0.mlp.fc1") in inside.options
    inside.value = "blocks.0"  # the whole block again
    assert explorer.layer == "blocks.0"
    explorer.layer = "head"  # a module in no block: the slider learns it, as before
    assert explorer.controls.layer.value == "head" and inside.layout.display == "none"


def test_inside_is_hidden_for_a_pixel_method_and_a_pinned_cam(explorer):
    inside = explorer.controls.inside.dropdown
    explorer.method = "rollout"  # the attention family: pixel space, no layer
    explorer.wait(60)
    assert explorer.explanation.method == "rollout" and inside.layout.display == "none"
    explorer.method = "gradcam"
    assert inside.layout.display == ""


def test_block_of():
    blocks = ["patch_embed", "blocks.0", "blocks.1", "blocks.10"]
    assert block_of("blocks.1.attn.qkv", blocks) == "blocks.1"
    assert block_of("blocks.10.mlp", blocks) == "blocks.10"  # not blocks.1
    assert block_of("blocks.1", blocks) == "blocks.1" and block_of("head", blocks) == "head"
    assert block_of(None, blocks) is None
