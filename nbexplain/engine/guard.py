"""Leave the user's model exactly as it was found.

Explanations run in eval mode (BatchNorm uses its running statistics and never updates them,
dropout is off) with parameters frozen (no weight gradients are computed, none are written).
Everything is put back on every exit path, including after an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode and its parameters frozen; restore both after."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    grad_enabled = torch.is_grad_enabled()
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)
        torch.set_grad_enabled(grad_enabled)
