"""Every registered method leaves the user's model exactly as it found it — on success and after
an exception in the middle of a call.

Parametrized over ``nbx.methods()``, so a method added later is covered without editing this
file. Each runs with its declared defaults and the Explainer's default layer where it needs one.
What "untouched" means is spelled out in ``tests/untouched.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nbx
from tests.models import Boom, FailingReusedReLUNet, ReusedReLUNet, TinyCNN, example_input
from tests.untouched import ModelState

# Attention-family methods need a transformer: tests/methods/test_attention.py checks them the same way.
METHODS = [m for m in nbx.methods() if nbx.method_info(m).family != "attention"]
SHAPE = (3, 32, 32)


def inplace_relu_model() -> nn.Module:
    """In-place ReLU modules, some parameters frozen, a stale .grad left over from training."""
    model = TinyCNN("nn.ReLU(inplace)").eval()
    model.conv1.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.25)
    return model


def user_hooks_model() -> nn.Module:
    """The user's own forward, pre and full backward hooks on the head, which must stay."""
    model = inplace_relu_model()
    model.fc.register_forward_hook(lambda module, args, out: None)
    model.fc.register_forward_pre_hook(lambda module, args: None)
    model.fc.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    return model


def functional_inplace_model() -> nn.Module:
    return TinyCNN("F.relu_").eval()


def relu6_model() -> nn.Module:
    return TinyCNN("nn.ReLU6(inplace)").eval()


def training_model(cls=ReusedReLUNet) -> nn.Module:
    """One in-place ReLU module called several times per block, BatchNorm with running stats,
    dropout, handed over in train mode (and one submodule left in eval mode)."""
    model = cls()
    model.layer1[1].bn2.eval()
    return model


MODELS = {
    "inplace-relu": inplace_relu_model,
    "user-hooks": user_hooks_model,
    "functional-inplace-relu": functional_inplace_model,
    "relu6": relu6_model,
    "reused-relu-bn-train": training_model,
}
# Models every method must succeed on; on the others a method may refuse (ValueError/TypeError,
# e.g. CAM needs the layer to feed the pooled linear head directly), except the gradient
# families, which take any differentiable model.
MUST_SUCCEED = {"inplace-relu", "reused-relu-bn-train"}
ANY_MODEL = {"gradient", "backprop"}


def call(model: nn.Module, method: str, arm=None, **kwargs):
    """``explain`` with ``method`` between a snapshot of the model and the check against it;
    ``arm()`` runs right before the call (after the layer search, which runs a forward of its own).
    Returns (result, error)."""
    x = example_input(shape=SHAPE, scale=1.0)
    kept = x.clone()
    explainer = nbx.Explainer(model)
    explainer.layers()
    state = ModelState.take(model)
    error = None
    params = dict(kwargs)
    try:
        if arm is not None:
            arm()
        result = explainer.explain(x, method, **params)
    except Exception as caught:  # checked by the callers
        result, error = None, caught
    finally:
        if hasattr(model, "fail"):
            model.fail = None
    state.assert_same(model)
    assert torch.equal(x, kept) and x.grad is None and not x.requires_grad, "the input tensor changed"
    return result, error


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_method_leaves_model_untouched(method, model_name):
    model = MODELS[model_name]()
    result, error = call(model, method)
    if model_name in MUST_SUCCEED or nbx.method_info(method).family in ANY_MODEL:
        assert error is None, f"{method} failed on {model_name}: {error!r}"
    elif error is not None:
        assert isinstance(error, (ValueError, TypeError)), f"{method} on {model_name} raised {error!r}"
    if result is not None:
        assert torch.isfinite(result.attribution).all()


@pytest.mark.parametrize("method", METHODS)
def test_explaining_twice_gives_the_same_result_in_train_mode(method):
    """Nothing a call does (BatchNorm updates, dropout) leaks into the next call."""
    model = training_model()
    first, _ = call(model, method)
    second, _ = call(model, method)
    torch.testing.assert_close(first.attribution, second.attribution)


def probe(method: str) -> FailingReusedReLUNet:
    """Run ``method`` once on a model that only counts, to learn what the call reaches."""
    model = training_model(FailingReusedReLUNet)
    progress = []
    _, error = call(model, method, arm=lambda: setattr(model, "fail", "count"),
                    progress=lambda fraction, partial=None: progress.append(fraction))
    assert error is None, f"{method}: {error!r}"
    model.counts["progress"] = len(progress)
    return model


@pytest.mark.parametrize("where", ["forward", "backward", "progress"])
@pytest.mark.parametrize("method", METHODS)
def test_untouched_after_an_exception_mid_call(method, where):
    model = probe(method)
    reached = model.counts[where]
    if where == "progress":
        def explode(fraction, partial=None):
            raise Boom("progress callback failed on purpose")

        _, error = call(model, method, progress=explode)
    else:
        _, error = call(model, method, arm=lambda: setattr(model, "fail", where))
    if reached:
        assert isinstance(error, Boom), f"{method}: expected the {where} error to propagate, got {error!r}"
    else:  # the method never gets there (e.g. no backward pass): it must simply work
        assert error is None, f"{method}: {error!r}"
    # and the model still computes what it did
    with torch.no_grad():
        x = example_input(shape=SHAPE)
        torch.testing.assert_close(model.eval()(x), training_model().eval()(x))


def test_every_method_has_been_exercised():
    """The parametrization really covers the registry (no method is skipped)."""
    from tests.methods.test_attention import METHODS as TRANSFORMER_METHODS

    assert set(METHODS) | set(TRANSFORMER_METHODS) == set(nbx.methods()) and len(METHODS) >= 7


class Passthrough(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "breach",
    ["hook", "backward-hook", "global-hook", "train-forward", "eval", "frozen", "grad", "inplace-flag",
     "grad-mode", "function-mode", "weight", "tensor-hook"],
)
def test_the_check_catches_each_kind_of_leak(breach):
    """``ModelState`` is not vacuous: each thing a method could leave behind is caught."""
    model = training_model()
    state = ModelState.take(model)
    handles, modes = [], []
    if breach == "hook":
        handles.append(model.layer1[0].relu.register_forward_hook(lambda *args: None))
    elif breach == "backward-hook":
        handles.append(model.fc.register_full_backward_hook(lambda *args: None))
    elif breach == "global-hook":
        handles.append(nn.modules.module.register_module_forward_hook(lambda *args: None))
    elif breach == "train-forward":  # BatchNorm statistics and num_batches_tracked move
        model(example_input(shape=SHAPE))
    elif breach == "eval":
        model.eval()
    elif breach == "frozen":
        model.fc.weight.requires_grad_(False)
    elif breach == "grad":
        model(example_input(shape=SHAPE)).sum().backward()
    elif breach == "inplace-flag":
        model.layer1[0].relu.inplace = False
    elif breach == "grad-mode":
        torch.set_grad_enabled(False)
    elif breach == "function-mode":
        modes.append(Passthrough())
        modes[0].__enter__()
    elif breach == "weight":
        with torch.no_grad():
            model.fc.bias[0] += 1e-7
    elif breach == "tensor-hook":
        handles.append(model.fc.weight.register_hook(lambda grad: None))
    try:
        with pytest.raises(AssertionError):
            state.assert_same(model)
    finally:
        for handle in handles:
            handle.remove()
        for mode in modes:
            mode.__exit__(None, None, None)
        torch.set_grad_enabled(True)
