"""capture: exact captures before in-place ops, a copy only where one is needed, a retry
when a module's output starts being overwritten."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain.engine.hooks import CaptureOverwritten, capture, retrying


class Switchable(nn.Module):
    """conv → bn → (ReLU in place, or out of place) → pool → linear; ``inplace`` can change."""

    def __init__(self, inplace: bool):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.bn.running_mean.normal_()
        self.inplace = inplace
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        y = torch.relu_(y) if self.inplace else torch.relu(y)
        return self.head(y.mean((2, 3)))


def reference_gradcam(model: Switchable, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM at ``bn`` computed by hand, with no hooks: the bn output before the ReLU."""
    with torch.enable_grad():
        a = model.bn(model.conv(x)).detach().requires_grad_(True)
        logits = model.head(torch.relu(a).mean((2, 3)))
        (g,) = torch.autograd.grad(logits[0, target], a)
    return (g[0].mean((1, 2)) @ a[0].detach().reshape(6, -1)).reshape(a.shape[2:]).clamp(min=0)


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(1, 3, 12, 12)


def count_forwards(model: nn.Module) -> tuple[list[int], object]:
    calls = [0]
    handle = model.register_forward_pre_hook(lambda m, i: calls.__setitem__(0, calls[0] + 1))
    return calls, handle


@pytest.mark.parametrize("repeat", [1, 2, 3])
def test_a_capture_before_an_inplace_op_keeps_its_value_every_time(x, repeat):
    model = Switchable(inplace=True).eval()
    with torch.no_grad():
        expected = model.bn(model.conv(x))
    for _ in range(repeat):
        with torch.no_grad(), capture(model, ["bn"]) as captured:
            model(x)
        torch.testing.assert_close(captured["bn"], expected)
        assert (captured["bn"] < 0).any()


def test_an_output_nothing_overwrites_is_passed_on_uncopied_once_that_is_known(x):
    model = Switchable(inplace=False).eval()
    bn_inputs = []
    hook = model.bn.register_forward_pre_hook(lambda m, i: bn_inputs.append(i[0]))
    try:
        for _ in range(2):
            with torch.no_grad(), capture(model, ["conv"]) as captured:
                model(x)
    finally:
        hook.remove()
    assert bn_inputs[0] is not captured["conv"]  # first capture of a module: a copy, and a look
    assert bn_inputs[1] is captured["conv"]  # learned: nothing overwrites it, no copy needed


def test_an_output_that_starts_being_overwritten_is_redone_with_a_copy(x):
    model = Switchable(inplace=False).eval()
    explainer = nbx.Explainer(model)
    target, layers = 2, ["conv", "bn"]  # bn is not the first layer, so its output needs no leaf

    def gradcam_at_bn() -> torch.Tensor:
        return explainer.explain_layers(x, "gradcam", target=target, layers=layers)["bn"].attribution

    torch.testing.assert_close(gradcam_at_bn(), reference_gradcam(model, x, target))
    model.inplace = True  # bn's output is now overwritten by the ReLU after it
    calls, handle = count_forwards(model)
    try:
        second = gradcam_at_bn()
        assert calls[0] == 2  # the pass that found the overwrite, and the redo with a copy
        calls[0] = 0
        third = gradcam_at_bn()
        assert calls[0] == 1  # copied from the start now
    finally:
        handle.remove()
    torch.testing.assert_close(second, reference_gradcam(model, x, target))
    torch.testing.assert_close(third, reference_gradcam(model, x, target))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_reading_an_overwritten_capture_raises_and_retrying_runs_once_more(x):
    model = Switchable(inplace=False).eval()
    with torch.no_grad(), capture(model, ["bn"]):
        model(x)  # learns: nothing overwrites bn's output
    model.inplace = True
    runs = []

    def run():
        runs.append(1)
        with torch.no_grad(), capture(model, ["bn"]) as captured:
            model(x)
            return captured["bn"].clone()

    with pytest.raises(CaptureOverwritten, match="written in place"):
        run()
    value = retrying(run)
    assert len(runs) == 2  # the failed run above, then one run: the module copies now
    assert (value < 0).any()
    assert all(not m._forward_hooks for m in model.modules())
