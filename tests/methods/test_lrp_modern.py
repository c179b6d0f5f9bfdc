"""LRP beyond plain conv nets: DenseNet's BatchNorm before a conv (an affine layer with the ε rule,
against zennit 0.5.1 with the same treatment) and squeeze-excite gates (gate as weight)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nbexplain.methods.lrp import COMPOSITES, Settings, relevance
from tests.methods.test_lrp import ZENNIT, ours, randomized
from tests.untouched import ModelState

zennit = pytest.importorskip("zennit")
torchvision = pytest.importorskip("torchvision")
from torchvision.models.densenet import DenseNet  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import AttributeCanonizer, NamedMergeBatchNorm  # noqa: E402
from zennit.rules import Epsilon  # noqa: E402


# -- DenseNet --------------------------------------------------------------------------------------
def densenet_oracle(model: nn.Module) -> tuple[list, set[str]]:
    """zennit's treatment (chr5tphr/zennit#165): each BatchNorm right after a conv merged into it
    (conv0 → norm0, conv1 → norm2), the others (norm1, transitions, norm5) kept, with ε; and
    DenseNet's functional global pooling exposed as a module so zennit's Norm rule sees it."""
    pairs = [(["features.conv0"], "features.norm0")]
    for name, module in model.named_modules():
        if type(module).__name__ == "_DenseLayer":
            pairs.append(([f"{name}.conv1"], f"{name}.norm2"))
    merged = {bn for _, bn in pairs}
    kept = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and name not in merged}

    def forward(self, x):
        out = torch.relu(self.features(x))
        return self.classifier(torch.flatten(self.canonizer_pool(out), 1))

    def attributes(name, module):
        if isinstance(module, DenseNet):
            return {"forward": forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
        return None

    return [NamedMergeBatchNorm(pairs), AttributeCanonizer(attributes)], kept


def zennit_densenet(model, x, composite, target, value, epsilon=1e-6):
    canonizers, kept = densenet_oracle(model)
    kwargs = {"low": x.min(), "high": x.max()} if composite == "epsilon_gamma_box" else {}
    rules = ZENNIT[composite](canonizers=canonizers, **kwargs)
    base, rule = rules.module_map, Epsilon(epsilon)
    rules.module_map = lambda ctx, name, module: rule if name in kept else base(ctx, name, module)
    start = torch.zeros(1, 10)
    start[0, target] = value
    with Gradient(model, rules) as attributor:
        _, result = attributor(x, start)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_densenet121_matches_zennit(composite):
    model = randomized(torchvision.models.densenet121(weights=None, num_classes=10))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    state = ModelState.take(model)
    result, logits = ours(model, x, composite)
    state.assert_same(model)
    target = int(logits[0].argmax())
    expected = zennit_densenet(model, x, composite, target, float(logits[0, target]))
    scale = expected.abs().max()
    assert scale > 0 and torch.isfinite(result).all()
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-5)


def small_densenet() -> nn.Module:
    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=10)


def test_small_densenet_matches_zennit():
    model = randomized(small_densenet())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    result, logits = ours(model, x, "epsilon_plus")
    target = int(logits[0].argmax())
    expected = zennit_densenet(model, x, "epsilon_plus", target, float(logits[0, target]))
    scale = expected.abs().max()
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-5)


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_plus"])
def test_densenet_conserves_relevance_when_bias_free(composite):
    """No bias anywhere (BatchNorm means and shifts zero): the leading BatchNorms' ε rule, the
    concatenations and the convs pass the whole target logit down to the pixels."""
    model = randomized(small_densenet(), zero_bias=True)
    model.classifier.bias = None
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(10))
    result, logits = ours(model, x, composite, epsilon=1e-9)
    score = logits[0].max()
    assert score.abs() > 1e-3
    torch.testing.assert_close(result.sum(), score, rtol=1e-3, atol=1e-5)


def test_a_leading_batchnorm_gets_the_epsilon_rule():
    """bn(x) = x·s + t on its own: R_in = x·s·R / (x·s + t + ε), channel by channel."""
    bn = randomized(nn.Sequential(nn.BatchNorm2d(3)))[0]
    model = nn.Sequential(bn, nn.Flatten(), nn.Linear(12, 2, bias=False)).eval()
    x = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(11))
    rules = COMPOSITES["epsilon_plus"](Settings(epsilon=0.01))
    result, logits = relevance(model, x, rules, model, lambda logits: 0)
    std = (bn.running_var + bn.eps).sqrt().view(1, -1, 1, 1)
    z = bn(x).detach()
    r_upper = (z.flatten(1) * model[2].weight[0] / (logits[0, 0] + 0.01 * logits[0, 0].sign())
               * logits[0, 0]).view_as(x).detach()
    expected = x * (bn.weight.view(1, -1, 1, 1) / std).detach() * r_upper / (z + 0.01 * z.sign())
    torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-6)


# -- squeeze-excite ----------------------------------------------------------------------------------
class SE(nn.Module):
    """conv → ReLU → x · sigmoid(fc2(relu(fc1(avgpool(x))))) → pooled classifier; ``fixed``: the gate
    replaced by a constant, to compare with."""

    def __init__(self, bias: bool = True, functional: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=bias)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1, bias=bias), nn.Conv2d(4, 8, 1, bias=bias)
        self.sigmoid, self.functional = nn.Sigmoid(), functional
        self.fc = nn.Linear(8, 10, bias=bias)
        self.fixed: torch.Tensor | None = None

    def gate(self, x):
        s = self.fc2(torch.relu(self.fc1(nn.functional.adaptive_avg_pool2d(x, 1))))
        return torch.sigmoid(s) if self.functional else self.sigmoid(s)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = (self.fixed if self.fixed is not None else self.gate(x)) * x
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("functional", [False, True])
def test_a_squeeze_excite_gate_is_a_constant_weight(functional):
    """Gate as weight: the relevance equals that of the same net with the gate's value frozen
    into a constant, and none of it flows into the gate branch."""
    torch.manual_seed(12)
    model = SE(functional=functional).eval()
    x = torch.randn(1, 3, 8, 8)
    result, logits = ours(model, x, "epsilon_plus_flat", target=3)
    with torch.no_grad():
        model.fixed = model.gate(torch.relu(model.conv(x)))
    frozen, frozen_logits = ours(model, x, "epsilon_plus_flat", target=3)
    torch.testing.assert_close(logits, frozen_logits)
    torch.testing.assert_close(result, frozen, rtol=1e-5, atol=1e-7)


def test_a_bias_free_squeeze_excite_net_conserves_relevance():
    torch.manual_seed(13)
    model = SE(bias=False).eval()
    x = torch.randn(1, 3, 8, 8)
    result, logits = ours(model, x, "epsilon_plus", epsilon=1e-9)
    score = logits[0].max()
    assert score.abs() > 1e-3
    torch.testing.assert_close(result.sum(), score, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0"])
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_torchvision_squeeze_excite_nets_run(name, composite):
    """Hardsigmoid (MobileNetV3) and Sigmoid (EfficientNet) gates, Hardswish/SiLU, in-place skip
    additions: a finite map at the input's size, the model untouched."""
    model = randomized(getattr(torchvision.models, name)(weights=None, num_classes=10))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(14))
    state = ModelState.take(model)
    result, logits = ours(model, x, composite)
    state.assert_same(model)
    assert result.shape == x.shape and torch.isfinite(result).all() and result.abs().sum() > 0
    torch.testing.assert_close(logits, model(x).detach())
