"""Find the meaningful layers of a CNN: blocks and stages with spatial output, input → output."""

from __future__ import annotations

import torch
from torch import nn


def trace_shapes(model: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every module that returns a tensor, in first-call order."""
    order: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and name not in order:
                order[name] = tuple(output.shape)

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return list(order.items())


def candidate_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Children of sequential containers (and top-level children) whose output is spatial."""
    containers = {name for name, module in model.named_modules() if isinstance(module, nn.Sequential)}
    containers.add("")
    shapes = trace_shapes(model, example)
    chosen = []
    for name, shape in shapes:
        parent = name.rpartition(".")[0]
        if parent in containers and len(shape) == 4 and shape[2] * shape[3] > 1:
            chosen.append(name)
    return chosen
