"""Replace the backward pass of every rectifier a model uses, for guided backprop and deconvnet.

Hooks on ``nn.ReLU`` modules (Captum's approach) miss ``F.relu``, ``torch.relu``,
``Tensor.relu``, ``ReLU6`` and ``hardtanh(0, 6)``. A ``TorchFunctionMode`` sees every one
of those calls, modules and functional alike, and routes it through one autograd function
whose forward is the ordinary rectifier and whose backward follows the chosen rule.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Rule = Literal["guided", "deconvnet"]


class _Rectify(torch.autograd.Function):
    """clamp(x, 0, upper) forward; backward relu(g) (deconvnet) or relu(g)·[0 < x < upper] (guided).

    Guided keeps what the native op keeps for its own backward (the output of a ReLU or an
    in-place op, the input of a non-in-place hardtanh) and applies the switch with the native
    backward kernel, so it costs one extra elementwise op over the plain gradient.
    """

    @staticmethod
    def forward(ctx, x, upper, guided, inplace):
        ctx.upper, ctx.guided = upper, guided
        if inplace:
            ctx.mark_dirty(x)
            y = x.clamp_(0, upper)
        else:
            y = x.clamp(0, upper)
        if guided:
            ctx.save_for_backward(y if inplace or upper is None else x)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clamp(min=0)
        if ctx.guided:
            (saved,) = ctx.saved_tensors  # y = clamp(x, 0, upper) has the same switch as x
            if ctx.upper is None:
                grad = torch.ops.aten.threshold_backward(grad, saved, 0.0)
            else:
                grad = torch.ops.aten.hardtanh_backward(grad, saved, 0.0, ctx.upper)
        return grad, None, None, None


_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_, F.relu_}
_RELU6 = {F.relu6, torch._C._nn.relu6}
_RELU6_INPLACE = {torch._C._nn.relu6_} if hasattr(torch._C._nn, "relu6_") else set()
_HARDTANH = {F.hardtanh, torch._C._nn.hardtanh}
_HARDTANH_INPLACE = {F.hardtanh_, torch._C._nn.hardtanh_}


def _rectifier_call(func, args, kwargs):
    """(input, upper bound, in-place) if ``func(*args, **kwargs)`` is a rectifier, else None."""
    if func in _RELU:
        return args[0], None, bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
    if func in _RELU_INPLACE:
        return args[0], None, True
    if func in _RELU6:
        return args[0], 6.0, bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
    if func in _RELU6_INPLACE:
        return args[0], 6.0, True
    if func in _HARDTANH or func in _HARDTANH_INPLACE:
        params = [*args[1:], None, None, None]
        low = kwargs.get("min_val", params[0] if params[0] is not None else -1.0)
        high = kwargs.get("max_val", params[1] if params[1] is not None else 1.0)
        inplace = func in _HARDTANH_INPLACE or bool(kwargs.get("inplace", params[2] or False))
        if low == 0:
            return args[0], float(high), inplace
    return None


class RectifierRule(TorchFunctionMode):
    """While active, every rectifier's backward follows ``rule`` ("guided" or "deconvnet")."""

    def __init__(self, rule: Rule):
        super().__init__()
        if rule not in ("guided", "deconvnet"):
            raise ValueError(f"rule must be 'guided' or 'deconvnet', got {rule!r}")
        self.guided = rule == "guided"
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        call = _rectifier_call(func, args, kwargs)
        if call is None or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        x, upper, inplace = call
        self.calls += 1
        return _Rectify.apply(x, upper, self.guided, inplace)
