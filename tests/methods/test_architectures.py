"""The architectures people fine-tune today, random weights, nothing downloaded: every method that
applies runs and gives a finite map at the input's size and leaves the model untouched; one that
does not apply raises ``UnsupportedModel`` naming what it cannot handle."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm

import nbexplain as nbx
from nbexplain.methods.lrp import UnsupportedModel
from tests.untouched import ModelState

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def hf(kind: str) -> torch.nn.Module:
    if kind == "vit":
        config = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=64, num_hidden_layers=3,
                                        num_attention_heads=2, intermediate_size=128, num_labels=10)
        return transformers.ViTForImageClassification(config)
    if kind == "convnext":
        config = transformers.ConvNextConfig(hidden_sizes=[24, 48], depths=[1, 1], num_stages=2,
                                             num_labels=10)
        return transformers.ConvNextForImageClassification(config)
    config = transformers.SwinConfig(image_size=224, patch_size=4, embed_dim=24, depths=[2, 2],
                                     num_heads=[2, 2], window_size=7, num_labels=10)
    return transformers.SwinForImageClassification(config)


def with_registers() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=224, patch_size=16, embed_dim=96, depth=3, num_heads=2, num_classes=10,
                             reg_tokens=4)


MODELS = {
    "resnet50": lambda: tvm.resnet50(num_classes=10),
    "densenet121": lambda: tvm.densenet121(num_classes=10),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=10),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=10),
    "convnext_tiny": lambda: tvm.convnext_tiny(num_classes=10),
    "swin_t": lambda: tvm.swin_t(num_classes=10),
    "vit_b_16": lambda: tvm.vit_b_16(num_classes=10),
    "deit_tiny": lambda: timm.create_model("deit_tiny_patch16_224", num_classes=10),
    "vit_registers": with_registers,
    "convnext_atto": lambda: timm.create_model("convnext_atto", num_classes=10),
    "regnety_002": lambda: timm.create_model("regnety_002", num_classes=10),
    "hf_vit": lambda: hf("vit"),
    "hf_convnext": lambda: hf("convnext"),
    "hf_swin": lambda: hf("swin"),
}
QUICK = {"smoothgrad": {"samples": 2}, "integrated_gradients": {"steps": 2}, "ablation": {"top": 2},
         "occlusion": {"patch": 48, "stride": 48}, "scorecam": {"batch_size": 64}}
PER_CHANNEL = {"scorecam", "ablation"}  # a pass per channel: at the first layer (fewest channels)
SHOWN = [m for m in nbx.methods() if nbx.method_info(m).shows_a_map or m == "filters"]
# ViT-B/16's layers all have 768 channels: Score-CAM and ablation there are 768 full ViT-B passes
# (minutes on a CPU); both read token grids in tests/methods/test_transformers.py on a small ViT.
SLOW = {("vit_b_16", "scorecam"), ("vit_b_16", "ablation")}
NO_LRP = {"convnext_tiny", "swin_t", "vit_b_16", "deit_tiny", "vit_registers", "convnext_atto",
          "hf_vit", "hf_convnext", "hf_swin"}  # LayerNorm and attention: no LRP rule yet
CASES = [(name, method) for name in MODELS for method in SHOWN if (name, method) not in SLOW]


def seeded(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights, torchvision's zero-initialized ViT head included (else every gradient is 0)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return model.eval()


_BUILT: dict[str, tuple] = {}


def subject(name: str) -> tuple:
    """(model, explainer, input), built once per model for the whole module (the last one kept)."""
    if name not in _BUILT:
        _BUILT.clear()
        torch.manual_seed(0)
        model = seeded(MODELS[name]())
        explainer = nbx.Explainer(model)
        size = explainer.input_size or (3, 96, 96)  # conv nets take any size: a small one keeps this quick
        x = torch.randn(size, generator=torch.Generator().manual_seed(1))
        explainer.prepare(x)  # layers() at this size
        assert explainer.layers(), f"{name}: no layer found"
        _BUILT[name] = (model, explainer, x)
    return _BUILT[name]


@pytest.mark.parametrize(("name", "method"), CASES)
def test_every_applicable_method_gives_a_finite_map_and_leaves_the_model_untouched(name, method):
    model, explainer, x = subject(name)
    spec = nbx.method_info(method)
    layer = explainer.layers()[0] if method in PER_CHANNEL else None
    state = ModelState.take(model)
    try:
        explanation = explainer.explain(x, method, layer=layer, **QUICK.get(method, {}))
    except UnsupportedModel as error:
        state.assert_same(model)
        refusable = (method == "lrp" and name in NO_LRP) or spec.family == "attention"
        assert refusable, f"{name}: {method} refused: {error}"
        assert str(error), "the refusal names what it cannot handle"
        return
    except ValueError as error:
        state.assert_same(model)
        # CAM needs the map that the head pools; filters need a convolution to show
        assert method in ("cam", "filters"), f"{name}: {method} failed: {error}"
        return
    state.assert_same(model)
    assert torch.isfinite(explanation.attribution).all(), f"{name}: {method}"
    assert explanation.map.shape == tuple(x.shape[-2:]) and explanation.values.values.ndim == 2
    if spec.family == "attention":
        assert name in ("vit_b_16", "deit_tiny", "vit_registers", "hf_vit")


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t", "convnext_tiny", "hf_convnext"])
def test_lrp_refuses_what_it_has_no_rule_for_by_module(name):
    """LayerNorm and attention (transformers, ConvNeXt) are not canonized yet: the refusal names
    the module."""
    explainer = nbx.Explainer(seeded(MODELS[name]()))
    x = torch.randn(explainer.input_size or (3, 96, 96), generator=torch.Generator().manual_seed(1))
    with pytest.raises(UnsupportedModel, match=r"'[\w.]+'"):
        explainer.explain(x, "lrp")
