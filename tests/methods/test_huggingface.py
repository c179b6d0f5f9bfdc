"""Hugging Face image classifiers built from small configs (nothing downloaded): layers are found
at the config's own image size before any image is seen, the logits are picked out of the
model's output object, Grad-CAM at a ViT layer equals pytorch-grad-cam (with the documented
wrapper and reshape), and the methods give finite maps and leave the model untouched."""

from __future__ import annotations

import pytest
import torch

import nbexplain as nbx
from tests.methods.test_cam import grad_cam_raw
from tests.methods.test_transformers import relative_error, token_reshape
from tests.untouched import ModelState

transformers = pytest.importorskip("transformers")

SIZE = 64


def seeded(model: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def vit():
    config = transformers.ViTConfig(image_size=SIZE, patch_size=16, hidden_size=32, num_hidden_layers=3,
                                    num_attention_heads=2, intermediate_size=64, num_labels=10)
    return seeded(transformers.ViTForImageClassification(config))


def convnext():
    config = transformers.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, num_labels=10,
                                         image_size=SIZE)
    return seeded(transformers.ConvNextForImageClassification(config))


def swin():
    config = transformers.SwinConfig(image_size=SIZE, patch_size=4, embed_dim=24, depths=[2, 2],
                                     num_heads=[2, 2], window_size=4, num_labels=10)
    return seeded(transformers.SwinForImageClassification(config))


MODELS = {"vit": vit, "convnext": convnext, "swin": swin}
EXPECTED_LAYERS = {  # (the ViT's layer 2: its patches never reach the class token)
    "vit": ["vit.embeddings", "vit.layers.0", "vit.layers.1"],
    "convnext": ["convnext.embeddings", "convnext.encoder.stages.0.layers.0",
                 "convnext.encoder.stages.1.layers.0"],
    "swin": ["swin.embeddings", "swin.encoder.layers.0.blocks.0", "swin.encoder.layers.0.blocks.1",
             "swin.encoder.layers.0.downsample", "swin.encoder.layers.1.blocks.0",
             "swin.encoder.layers.1.blocks.1", "swin.layernorm"],
}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    return request.param, MODELS[request.param]()


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


def test_layers_are_found_at_the_configs_size_before_any_image(case):
    name, model = case
    explainer = nbx.Explainer(model)
    assert explainer.input_size == (3, SIZE, SIZE)
    layers = explainer.layers()
    assert set(EXPECTED_LAYERS[name]) <= set(layers), layers
    assert layers[-1] == EXPECTED_LAYERS[name][-1]


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "activations", "ablation", "saliency",
                                    "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion"])
def test_methods_give_finite_maps_and_leave_the_model_untouched(case, x, method):
    _, model = case
    explainer = nbx.Explainer(model)
    params = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2},
              "occlusion": {"patch": 32, "stride": 32}, "ablation": {"top": 2}}.get(method, {})
    state = ModelState.take(model)
    explanation = explainer.explain(x, method, target=1, **params)
    state.assert_same(model)
    assert explanation.map.shape == (SIZE, SIZE) and torch.isfinite(explanation.attribution).all()
    with torch.no_grad():
        logits = model(x[None]).logits[0]
    assert explanation.score == pytest.approx(float(logits[1]), rel=1e-5, abs=1e-5)


class Logits(torch.nn.Module):
    """pytorch-grad-cam's documented HuggingfaceToTensorModelWrapper."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def test_gradcam_at_a_vit_layer_equals_pytorch_grad_cam(x):
    from pytorch_grad_cam import GradCAM

    model = vit()
    ours = nbx.Explainer(model).explain(x, "gradcam", target=3, layer="vit.layers.1").attribution
    theirs = grad_cam_raw(GradCAM, Logits(model), "model.vit.layers.1", x[None], 3,
                          reshape_transform=token_reshape(1, 4, 4))
    assert relative_error(ours, theirs) < 1e-4
