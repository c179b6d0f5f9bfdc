"""LRP: each rule against a slow version written from its paper's formula, every composite against
zennit 0.5.1 (VGG-style with BatchNorm, torchvision ResNet BasicBlock and Bottleneck, timm
EfficientNet-Lite0), conservation on bias-free nets, clear errors for what is not supported, and
the ``lrp`` method through the Explainer. zennit is a test-only dependency."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain.engine.context import Context
from nbexplain.methods.lrp import COMPOSITES, Settings, UnsupportedModel, relevance
from nbexplain.methods.lrp.canonize import LinearOp
from nbexplain.methods.lrp.method import box_bounds
from nbexplain.methods.lrp.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus
from nbexplain.models import ImagePreprocess
from tests.models import BasicBlock
from tests.untouched import ModelState

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import AttributeCanonizer, NamedMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.torchvision import ResNetCanonizer, SequentialMergeBatchNorm  # noqa: E402

torchvision = pytest.importorskip("torchvision")

ZENNIT = {
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_gamma_box": EpsilonGammaBox,
    "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
    "epsilon_plus": EpsilonPlus,
}


# -- models ----------------------------------------------------------------------------------------
def vgg_like(bias: bool = True, classes: int = 10) -> nn.Module:
    """torchvision's VGG layout (conv-BN-ReLU stages, max pooling, adaptive average pooling,
    classifier with dropout), small."""
    def stage(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    features = nn.Sequential(*stage(3, 8), nn.MaxPool2d(2), *stage(8, 16), *stage(16, 16), nn.MaxPool2d(2),
                             *stage(16, 24))
    model = nn.Sequential()
    model.features = features
    model.avgpool = nn.AdaptiveAvgPool2d(2)
    model.flatten = nn.Flatten()
    model.classifier = nn.Sequential(nn.Linear(96, 32, bias=bias), nn.ReLU(inplace=True), nn.Dropout(),
                                     nn.Linear(32, classes, bias=bias))
    return model


def resnet(block: str) -> nn.Module:
    """torchvision's resnet18 (BasicBlock), or a small ResNet of Bottleneck blocks."""
    from torchvision.models.resnet import Bottleneck, ResNet

    if block == "basic":
        return torchvision.models.resnet18(weights=None, num_classes=10)
    return ResNet(Bottleneck, [1, 2, 1, 1], num_classes=10)


def efficientnet_lite0() -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)


def randomized(model: nn.Module, seed: int = 0, zero_bias: bool = False) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, in eval mode.

    The BatchNorm epsilon moves into the running variance (the same function), because zennit's
    merge leaves each BatchNorm as x / sqrt(1 + eps) rather than the identity. ``zero_bias``:
    means and shifts zero, so folding adds no bias (a bias-free net, for conservation).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1 * (not zero_bias))
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5 + module.eps)
                module.eps = 0.0
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1 * (not zero_bias))
            if zero_bias and isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                module.bias.zero_()
    return model.eval()


def timm_canonizers(model: nn.Module) -> list:
    """What zennit needs for timm's EfficientNet (a test-side oracle, zennit has none): each
    BatchNormAct2d merged into the conv before it, each skip addition exposed as a ``Sum``."""
    pairs, last = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last = name
        elif isinstance(module, nn.BatchNorm2d):
            pairs.append(([last], name))

    def forward(self, x):
        y = x
        for name in self.lrp_order:
            y = getattr(self, name)(y)
        return self.canonizer_sum(torch.stack([x, y], dim=-1))

    def attributes(name, module):
        kind = type(module).__name__
        if kind in ("InvertedResidual", "DepthwiseSeparableConv") and module.has_skip:
            order = (["conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3"] if kind == "InvertedResidual"
                     else ["conv_dw", "bn1", "conv_pw", "bn2"])
            return {"forward": forward.__get__(module), "canonizer_sum": Sum(), "lrp_order": order}
        return None

    return [NamedMergeBatchNorm(pairs), AttributeCanonizer(attributes)]


def ours(model, x, composite, target=None, **params):
    rules = COMPOSITES[composite](Settings(**{"low": x.min(), "high": x.max(), **params}))
    def pick(logits):
        return int(logits[0].argmax()) if target is None else target

    return relevance(model, x, rules, model, pick)


def theirs(model, x, composite, canonizers, target, value):
    kwargs = {"low": x.min(), "high": x.max()} if composite == "epsilon_gamma_box" else {}
    rules = ZENNIT[composite](canonizers=canonizers, **kwargs)
    start = torch.zeros(1, 10)
    start[0, target] = value
    with Gradient(model, rules) as attributor:
        _, result = attributor(x, start)
    return result


def assert_matches_zennit(model, x, composite, canonizers):
    result, logits = ours(model, x, composite)
    target = int(logits[0].argmax())
    expected = theirs(model, x, composite, canonizers, target, float(logits[0, target]))
    assert not result.requires_grad
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-5)


# -- against zennit --------------------------------------------------------------------------------
@pytest.mark.parametrize("composite", list(COMPOSITES))
def test_vgg_style_matches_zennit(composite):
    model = randomized(vgg_like())
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert_matches_zennit(model, x, composite, [SequentialMergeBatchNorm()])


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("composite", list(COMPOSITES))
def test_resnet_matches_zennit(composite, block):
    model = randomized(resnet(block))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert_matches_zennit(model, x, composite, [ResNetCanonizer()])


@pytest.mark.slow
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_efficientnet_lite0_matches_zennit(composite):
    """Depthwise convs, 'same'-padded convs, BatchNormAct2d with ReLU6 inside, skip additions."""
    model = randomized(efficientnet_lite0())
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(4))
    assert_matches_zennit(model, x, composite, timm_canonizers(model))


# -- conservation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_plus"])
@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_relevance_is_conserved_on_bias_free_nets(name, composite):
    """With no bias anywhere (BatchNorm means and shifts zero too), the input relevance sums to the
    target logit: nothing is absorbed. (α2β1 is not conservative by design.)"""
    model = randomized(vgg_like(bias=False) if name == "vgg" else resnet("basic"), zero_bias=True)
    if name == "resnet":
        model.fc.bias = None
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    result, logits = ours(model, x, composite, epsilon=1e-9)
    score = logits[0].max()
    assert score.abs() > 1e-3
    torch.testing.assert_close(result.sum(), score, rtol=1e-3, atol=1e-5)


# -- each rule against its formula -------------------------------------------------------------------
def slow(rule: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor, **p) -> torch.Tensor:
    """Relevance of a dense layer z_j = Σ_i x_i w_ji + b_j, neuron by neuron, from the papers."""
    def stab(z, eps=1e-6):
        return z + eps * (1.0 if z >= 0 else -1.0)

    out = torch.zeros_like(x)
    for j in range(w.shape[0]):
        contrib = x * w[j]
        for i in range(x.numel()):
            if rule == "epsilon":
                z = contrib.sum() + b[j]
                out[i] += contrib[i] / stab(z, p["epsilon"]) * r[j]
            elif rule == "zplus":
                pos = contrib.clamp(min=0)
                out[i] += pos[i] / stab(pos.sum() + b[j].clamp(min=0)) * r[j]
            elif rule == "alphabeta":
                pos, neg = contrib.clamp(min=0), contrib.clamp(max=0)
                out[i] += (p["alpha"] * pos[i] / stab(pos.sum() + b[j].clamp(min=0))
                           - p["beta"] * neg[i] / stab(neg.sum() + b[j].clamp(max=0))) * r[j]
            elif rule == "gamma":
                z = contrib.sum() + b[j]
                g = p["gamma"]
                boosted = contrib + g * (contrib.clamp(min=0) if z > 0 else contrib.clamp(max=0))
                bias = b[j] + g * (b[j].clamp(min=0) if z > 0 else b[j].clamp(max=0))
                if z != 0:
                    out[i] += boosted[i] / stab(boosted.sum() + bias) * r[j]
            elif rule == "zbox":
                low, high = p["low"], p["high"]
                wp, wn = w[j].clamp(min=0), w[j].clamp(max=0)
                terms = contrib - low * wp - high * wn
                out[i] += terms[i] / stab(terms.sum()) * r[j]
            elif rule == "flat":
                out[i] += 1.0 / stab(float(x.numel())) * r[j]
            elif rule == "wsquare":
                out[i] += w[j, i] ** 2 / stab((w[j] ** 2).sum() + b[j] ** 2) * r[j]
    return out


RULES = {
    "epsilon": (lambda p: Epsilon(p["epsilon"]), {"epsilon": 0.1}),
    "zplus": (lambda p: ZPlus(), {}),
    "alphabeta": (lambda p: AlphaBeta(p["alpha"], p["beta"]), {"alpha": 2.0, "beta": 1.0}),
    "gamma": (lambda p: Gamma(p["gamma"]), {"gamma": 0.25}),
    "zbox": (lambda p: ZBox(p["low"], p["high"]), {"low": -2.0, "high": 2.0}),
    "flat": (lambda p: Flat(), {}),
    "wsquare": (lambda p: WSquare(), {}),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_rule_matches_the_formula(rule):
    generator = torch.Generator().manual_seed(6)
    layer = nn.Linear(7, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(5, 7, generator=generator))
        layer.bias.copy_(torch.randn(5, generator=generator))
    x = torch.randn(7, generator=generator).clamp(-1.9, 1.9)
    r = torch.randn(5, generator=generator)
    make, params = RULES[rule]
    (result,) = make(params)(LinearOp(layer, "fc"), (x[None],), r[None])
    expected = slow(rule, x.double(), layer.weight.detach().double(), layer.bias.detach().double(),
                    r.double(), **params)
    torch.testing.assert_close(result[0].double(), expected, rtol=1e-4, atol=1e-5)


def test_batchnorm_is_folded_for_the_computation_only():
    model = randomized(vgg_like())
    x = torch.randn(1, 3, 16, 16)
    state = ModelState.take(model)
    ours(model, x, "epsilon_plus_flat")
    state.assert_same(model)


# -- what is not supported ---------------------------------------------------------------------------
class Gated(nn.Module):
    """A bilinear product of two features, x · gate(x) — a product LRP has no rule for (only a
    sigmoid's output is a gate, see the squeeze-excite tests)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = x * self.gate(x)
        return self.fc(x.mean((2, 3)))


def test_an_operation_without_a_rule_is_refused_by_name():
    model = Gated().eval()
    with pytest.raises(UnsupportedModel, match=r"Mul.*'conv'") as caught:
        ours(model, torch.randn(1, 3, 8, 8), "epsilon_plus_flat")
    assert "supported:" in str(caught.value) and isinstance(caught.value, ValueError)
    assert not model._forward_hooks and not model.conv._forward_hooks and not model.conv._forward_pre_hooks


def test_a_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False), nn.Conv2d(3, 4, 3), nn.Flatten(),
                          nn.Linear(64, 2)).eval()
    with pytest.raises(UnsupportedModel, match="BatchNorm '0' has no running statistics"):
        ours(model, torch.randn(1, 3, 6, 6), "epsilon_plus")


def test_a_module_without_a_rule_is_refused_by_name():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(16, 2)).eval()
    with pytest.raises(UnsupportedModel, match=r"module '1' \(GroupNorm\)"):
        ours(model, torch.randn(1, 3, 4, 4), "epsilon_plus")


class InplaceAddBlock(BasicBlock):
    """The same block in torchvision's spelling: ``out += identity``, in place."""

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x
        return self.relu(out)


@pytest.mark.parametrize("block", [BasicBlock, InplaceAddBlock])
def test_residual_additions_of_any_block_are_split(block):
    """A block written by hand (``relu(f(x) + x)``, one ReLU module called twice) needs no
    registration: its addition, also in place, gets the Norm rule, as zennit's ResNet canonizer
    gives torchvision's blocks; relevance is conserved."""
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), block(6), block(6),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4, bias=False))
    model = randomized(model, zero_bias=True)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    target = int(model(x)[0].argmax())
    result, logits = ours(model, x, "epsilon_plus", epsilon=1e-9, target=target)
    torch.testing.assert_close(result.sum(), logits[0, target], rtol=1e-3, atol=1e-5)


# -- the method ------------------------------------------------------------------------------------
def test_lrp_method_through_the_explainer():
    model = randomized(resnet("basic"))
    explainer = nbx.Explainer(model)
    x = torch.randn(3, 32, 32)
    state = ModelState.take(model)
    explanation = explainer.explain(x, "lrp", composite="epsilon_gamma_box", target=3)
    state.assert_same(model)
    assert explanation.attribution.shape == (3, 32, 32) and explanation.signed
    assert explanation.map.shape == (32, 32) and 0 <= explanation.map.min() <= explanation.map.max() <= 1
    direct, _ = ours(model, x[None], "epsilon_gamma_box", target=3)
    torch.testing.assert_close(explanation.attribution, direct[0])
    info = nbx.method_info("lrp")
    assert info.family == "relevance" and info.space == "pixel"
    assert set(info.param("composite").choices) == set(COMPOSITES)


def test_box_bounds_come_from_the_normalization_when_known():
    x = torch.randn(1, 3, 4, 4)
    ctx = Context(model=nn.Identity(), x=x)
    low, high = box_bounds(ctx)
    assert float(low) == float(x.min()) and float(high) == float(x.max())
    ctx.preprocess = ImagePreprocess(8, 4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    low, high = box_bounds(ctx)
    torch.testing.assert_close(low.flatten(), torch.tensor([-1.0, -1.0, 0.0]))
    torch.testing.assert_close(high.flatten(), torch.tensor([1.0, 3.0, 1.0]))


def test_zennit_stays_a_test_only_dependency():
    """Our LRP is our own code: no module of the package imports zennit."""
    import ast
    from pathlib import Path

    package = Path(nbx.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] == "zennit" for name in names), f"{path} imports zennit"
