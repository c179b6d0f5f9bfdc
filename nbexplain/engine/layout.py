"""Channels-last memory order, where it was measured faster and where the model accepts it.

On the CPU, convolutions run faster on channels-last batches (EfficientNet-Lite0 at one image:
1.15×; it and ResNet-50 at 8 images: 1.1–1.3×). But a model that calls ``.view`` on a conv
output (``x.view(n, -1)``, common in hand-written CNNs) fails on one. ``in_layout`` runs a
pass in channels-last order and, should that raise a RuntimeError the default order does
not, remembers that the model keeps the default order from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from weakref import WeakKeyDictionary

import torch
from torch import nn

T = TypeVar("T")

_DEFAULT_ORDER_ONLY: WeakKeyDictionary[nn.Module, bool] = WeakKeyDictionary()


def accepts_channels_last(model: nn.Module) -> bool:
    """False once a pass of ``model`` failed in channels-last order and passed without it."""
    return not _DEFAULT_ORDER_ONLY.get(model, False)


def in_layout(model: nn.Module, batch: torch.Tensor, run: Callable[[torch.Tensor], T],
              channels_last: bool = True) -> T:
    """``run(batch)`` with ``batch`` in channels-last order if asked for (4-D batches only) and
    the model accepts it; in the default order if the model turns out not to."""
    if not channels_last or batch.ndim != 4 or not accepts_channels_last(model):
        return run(batch)
    try:
        return run(batch.contiguous(memory_format=torch.channels_last))
    except RuntimeError:
        result = run(batch)  # an error of the model's own is raised again here
        _DEFAULT_ORDER_ONLY[model] = True
        return result


def conv_profile(model: nn.Module) -> tuple[bool, bool]:
    """(is the first layer with weights a 2-D convolution, are there depthwise convolutions)."""
    weighted = (m for m in model.modules() if any(True for _ in m.parameters(recurse=False)))
    conv_first = isinstance(next(weighted, None), nn.Conv2d)
    depthwise = any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
                    for m in model.modules())
    return conv_first, depthwise


def pays(profile: tuple[bool, bool], batch: torch.Tensor) -> bool:
    """Whether channels-last was measured faster for this pass: on the CPU, for a model whose
    first layer is a 2-D convolution (``conv_profile``), a batch of 4+ images or a model with
    depthwise convolutions (ResNet-50 at one image gains nothing)."""
    conv_first, depthwise = profile
    on_cpu = batch.ndim == 4 and batch.device.type == "cpu"
    return on_cpu and conv_first and (depthwise or batch.shape[0] >= 4)
