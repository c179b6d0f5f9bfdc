"""capture: a module's output is kept as it was even when an in-place op follows it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain.engine.hooks import capture


class BnThenInplaceReLU(nn.Module):
    """conv → bn → ReLU in place → mean → linear: the ReLU overwrites bn's output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.bn.running_mean.normal_()
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        return self.head(torch.relu_(self.bn(self.conv(x))).mean((2, 3)))


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(1, 3, 12, 12)


@pytest.mark.parametrize("repeat", [1, 2, 3])
def test_a_capture_before_an_inplace_op_keeps_its_value_every_time(x, repeat):
    model = BnThenInplaceReLU().eval()
    with torch.no_grad():
        expected = model.bn(model.conv(x))
    for _ in range(repeat):
        with torch.no_grad(), capture(model, ["bn"]) as captured:
            model(x)
        torch.testing.assert_close(captured["bn"], expected)
        assert (captured["bn"] < 0).any()
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("layers", [["bn"], ["conv", "bn"]])
def test_gradcam_before_an_inplace_op_equals_a_computation_without_hooks(x, layers):
    """``bn`` alone (its output becomes a leaf) and after ``conv`` (it is not one)."""
    model = BnThenInplaceReLU().eval()
    with torch.enable_grad():
        a = model.bn(model.conv(x)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.head(torch.relu(a).mean((2, 3)))[0, 2], a)
    expected = (g[0].mean((1, 2)) @ a[0].detach().reshape(6, -1)).reshape(12, 12).clamp(min=0)
    for _ in range(2):
        maps = nbx.Explainer(model).explain_layers(x, "gradcam", target=2, layers=layers)
        torch.testing.assert_close(maps["bn"].attribution, expected)
