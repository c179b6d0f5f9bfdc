"""capture: a module's output is kept as it was even when an in-place op follows it; HookHandles:
every hook in the package goes through it and is removed on every exit path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain.engine.hooks import HookHandles, capture


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


# -- HookHandles: the one way hooks are registered ----------------------------------------------
HOOK_CALLS = (
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_backward_hook", ".register_hook(",
    "register_module_forward_hook", "register_module_forward_pre_hook",
    "register_module_full_backward_hook", "register_multi_grad_hook",
)


def test_every_hook_in_the_package_is_registered_through_hook_handles():
    """The source of every module but ``engine/hooks.py`` names no hook registration."""
    package = Path(nbx.__file__).parent
    offenders = {
        str(path.relative_to(package)): [call for call in HOOK_CALLS if call in path.read_text()]
        for path in package.rglob("*.py")
        if path != package / "engine" / "hooks.py"
    }
    assert {path: calls for path, calls in offenders.items() if calls} == {}
    assert "register_forward_hook" in (package / "engine" / "hooks.py").read_text()


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hook_handles_remove_every_hook_on_return_and_exception():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    with HookHandles() as hooks:
        hooks.forward(model[0], lambda module, inputs, output: None)
        hooks.forward_pre(model[1], lambda module, inputs: None)
        assert len(hooks) == 2 and hook_count(model) == 2
    assert hook_count(model) == 0
    with pytest.raises(KeyboardInterrupt), HookHandles() as hooks:
        hooks.forward(model[0], lambda module, inputs, output: None)
        raise KeyboardInterrupt
    assert hook_count(model) == 0 and len(hooks) == 0
    hooks.remove()  # twice is harmless


def test_hook_handles_remove_what_was_registered_when_registering_fails():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    with pytest.raises(AttributeError), HookHandles() as hooks:
        hooks.forward(model[0], lambda module, inputs, output: None)
        hooks.forward("not a module", lambda module, inputs, output: None)
    assert hook_count(model) == 0


def test_hook_handles_in_a_generator_closed_early_remove_their_hooks():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())

    def attached():
        with HookHandles() as hooks:
            hooks.forward(model[1], lambda module, inputs, output: None)
            yield

    running = attached()
    next(running)
    assert hook_count(model) == 1
    running.close()
    assert hook_count(model) == 0


@pytest.mark.parametrize("user", ["capture", "trace", "zeroed", "lrp"])
def test_each_hook_user_leaves_no_hook_after_an_exception(x, user):
    """The four places that hook modules, each interrupted by an error inside the hooked pass."""
    from nbexplain.engine.layers import Trace
    from nbexplain.methods.ablation import zeroed
    from nbexplain.methods.lrp import COMPOSITES, Settings, attached

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()

    def fail(*args):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        if user == "capture":
            with capture(model, ["0", "2"]):
                assert hook_count(model) == 2
                fail()
        elif user == "trace":
            Trace(model, fail)
        elif user == "zeroed":
            with zeroed(model, "2", torch.tensor([0, 1])):
                assert hook_count(model) == 1
                fail()
        else:
            with attached(model, COMPOSITES["epsilon_plus"](Settings())):
                assert hook_count(model) > 0
                fail()
    assert hook_count(model) == 0
