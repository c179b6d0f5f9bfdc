"""Today's architectures through the layer grid: the CAM family at ViT, DeiT (class and
distillation tokens), register-token and Swin layers equals pytorch-grad-cam given the reshape
function its documentation gives for each; the layer list walks the blocks; feature maps and
unit ablation read the same grid; the model is left untouched."""

from __future__ import annotations

import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchvision.models import VisionTransformer as TorchvisionViT
from torchvision.models.swin_transformer import SwinTransformer

import nbexplain as nbx
from nbexplain.methods.cam import gradcampp_weights
from tests.methods.test_cam import grad_cam_raw
from tests.untouched import ModelState

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402

SIZE = 64  # 4×4 patches of 16 pixels
SMALL = {"img_size": SIZE, "patch_size": 16, "embed_dim": 32, "depth": 3, "num_heads": 2, "num_classes": 10}


def seeded(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (torchvision zero-initializes its ViT head: no gradient at all),
    the head's 1000× larger, so that the ε = 1e-6 pytorch-grad-cam adds to Grad-CAM++'s
    denominator 2g² + ΣA·g³ is negligible (as in tests/methods/test_cam.py for ResNet)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.weight.mul_(1000)
    return model.eval()


def token_reshape(prefix: int, h: int, w: int):
    """pytorch-grad-cam's documented ViT reshape_transform (prefix tokens dropped)."""
    def reshape(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), h, w, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)
    return reshape


def nhwc_reshape(tensor):
    return tensor.permute(0, 3, 1, 2)


def torchvision_vit() -> torch.nn.Module:
    return seeded(TorchvisionViT(image_size=SIZE, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32,
                                 mlp_dim=64, num_classes=10))


def swin() -> torch.nn.Module:
    return seeded(SwinTransformer(patch_size=[4, 4], embed_dim=24, depths=[2, 2], num_heads=[2, 2],
                                  window_size=[4, 4], num_classes=10))


TV_BLOCKS = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
MODELS = {  # (model, layers to compare, pytorch-grad-cam's reshape_transform for them)
    "torchvision_vit": (torchvision_vit, TV_BLOCKS, token_reshape(1, 4, 4)),
    "deit": (lambda: seeded(TimmViT(**SMALL)), ["blocks.0", "blocks.1"], token_reshape(1, 4, 4)),
    "deit_distilled": (lambda: seeded(VisionTransformerDistilled(**SMALL)), ["blocks.0", "blocks.1"],
                       token_reshape(2, 4, 4)),
    "vit_registers": (lambda: seeded(TimmViT(**SMALL, reg_tokens=4)), ["blocks.0", "blocks.1"],
                      token_reshape(5, 4, 4)),
    "swin": (swin, ["features.1.0", "features.1.1", "features.3.1"], nhwc_reshape),
}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    factory, layers, reshape = MODELS[request.param]
    return request.param, factory(), layers, reshape


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def test_layers_walk_the_blocks(case):
    name, model, layers, _ = case
    found = nbx.Explainer(model, input_size=(3, SIZE, SIZE)).layers()
    assert set(layers) <= set(found), found
    if name != "swin":
        blocks = [n for n in found if n.startswith(("blocks.", "encoder.layers."))]
        assert len(blocks) == 2  # three blocks; the last one's patch tokens never reach the class token


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    scale = float(theirs.abs().max())
    assert scale > 0, "the reference map is all zero: the test would prove nothing"
    return float((ours - theirs).abs().max()) / scale


@pytest.mark.parametrize(("method", "reference"), [("gradcam", GradCAM), ("layercam", LayerCAM)])
def test_cams_equal_pytorch_grad_cam_with_its_reshape(case, x, method, reference):
    _, model, layers, reshape = case
    explainer = nbx.Explainer(model)
    for layer in layers:
        ours = explainer.explain(x, method, target=3, layer=layer).attribution
        theirs = grad_cam_raw(reference, model, layer, x, 3, reshape_transform=reshape)
        assert relative_error(ours, theirs) < 1e-4


def test_gradcampp_equals_pytorch_grad_cam_with_its_reshape(case, x):
    """Grad-CAM++'s closed form a = g² / (2g² + ΣA·g³ + ε) has a pole at ΣA·g = −2, which
    signed activations (every transformer here) come within 1e-3 of: there a 1e-7 difference in
    the float32 inputs moves the map by 1e-3. So: (1) the layer's activations and gradients
    equal those pytorch-grad-cam's hooks capture, reshaped; (2) our weights equal its
    ``get_cam_weights`` on the same arrays in float64; (3) the two maps agree to 1e-4 at every
    layer whose formula is well conditioned (|2 + ΣA·g| ≥ 0.05 wherever g > 0)."""
    _, model, layers, reshape = case
    explainer = nbx.Explainer(model)
    ctx = explainer.context(explainer.prepare(x), 3)
    captured, gradients = ctx.layer_pass(layers)
    for layer in layers:
        activation = ctx.feature_map(layer, captured[layer])
        gradient = ctx.feature_map(layer, gradients[layer])
        with GradCAMPlusPlus(model=model, target_layers=[dict(model.named_modules())[layer]],
                             reshape_transform=reshape) as extractor:
            extractor(input_tensor=x, targets=[ClassifierOutputTarget(3)])
            theirs_a = torch.from_numpy(extractor.activations_and_grads.activations[0].numpy()[0])
            theirs_g = torch.from_numpy(extractor.activations_and_grads.gradients[0].numpy()[0])
            assert relative_error(activation, theirs_a) < 1e-5 and relative_error(gradient, theirs_g) < 1e-5
            a64, g64 = activation.double(), gradient.double()
            weights = extractor.get_cam_weights(None, None, None, a64[None].numpy(), g64[None].numpy())[0]
        assert relative_error(gradcampp_weights(a64, g64), torch.from_numpy(weights)) < 1e-9
        conditioning = float((2 + a64.sum((1, 2), keepdim=True) * g64).abs()[g64 > 0].min())
        if conditioning >= 0.05:
            ours = explainer.explain(x, "gradcampp", target=3, layer=layer).attribution
            theirs = grad_cam_raw(GradCAMPlusPlus, model, layer, x, 3, reshape_transform=reshape)
            assert relative_error(ours, theirs) < 1e-4


def test_every_layer_at_once_equals_one_layer_at_a_time(case, x):
    _, model, layers, _ = case
    explainer = nbx.Explainer(model)
    together = explainer.explain_layers(x, "gradcam", target=2, layers=layers)
    for layer in layers:
        alone = explainer.explain(x, "gradcam", target=2, layer=layer)
        torch.testing.assert_close(together[layer].attribution, alone.attribution, rtol=1e-5, atol=1e-6)
    with explainer.layer_session(x, layers) as session:
        for layer, result in session.explain("layercam", 4).items():
            expected = explainer.explain(x, "layercam", target=4, layer=layer).attribution
            torch.testing.assert_close(result.attribution, expected, rtol=1e-5, atol=1e-6)


def test_feature_maps_and_ablation_read_the_grid(case, x):
    _, model, layers, reshape = case
    explainer = nbx.Explainer(model)
    layer = layers[-1]
    state = ModelState.take(model)
    maps = explainer.explain(x, "activations", layer=layer).attribution
    output = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: output.update(o=o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    torch.testing.assert_close(maps, reshape(output["o"])[0])
    score = explainer.explain(x, "scorecam", layer=layer).attribution
    assert score.shape == maps.shape[1:] and torch.isfinite(score).all()
    ablation = explainer.explain(x, "ablation", layer=layer, top=2)
    assert ablation.attribution.shape == (maps.shape[0],) and torch.isfinite(ablation.attribution).all()
    assert ablation.map.shape == (SIZE, SIZE)
    state.assert_same(model)
