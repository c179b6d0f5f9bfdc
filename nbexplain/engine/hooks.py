"""Module hooks, registered and removed as one group; and capturing layer outputs with them.

Every hook in the package is registered through ``HookHandles`` (a test checks the source), so
"every hook is removed on every exit path" is proved here, once. Captured outputs are the
module's own output tensors; what flows on downstream is a clone, so an
in-place op after the module (ResNet's ``relu(inplace=True)`` after ``bn2``) cannot
overwrite what was captured, and ``torch.autograd.grad`` with respect to a captured tensor
is exact. A module called several times in one forward (a reused ReLU) keeps every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class HookHandles:
    """Hooks registered on modules as one group, all removed on leaving the ``with`` block —
    by return, exception or generator close — also when registering one of them failed
    (cf. zennit's ``RemovableHandleList``)."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, hook: Callable[..., object]) -> None:
        """``hook(module, inputs, output)`` after ``module``'s forward (may replace the output)."""
        self._handles.append(module.register_forward_hook(hook))

    def forward_pre(self, module: nn.Module, hook: Callable[..., object]) -> None:
        """``hook(module, inputs)`` before ``module``'s forward (may replace the inputs)."""
        self._handles.append(module.register_forward_pre_hook(hook))

    def remove(self) -> None:
        """Remove every hook of the group (newest first); safe to call twice."""
        while self._handles:
            self._handles.pop().remove()

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self) -> HookHandles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Captured:
    """Outputs of the hooked modules, per call, in call order."""

    def __init__(self, names: Iterable[str]):
        self.calls: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def __getitem__(self, name: str) -> torch.Tensor:
        """The output of ``name``'s last call in the forward (the one nearest the output)."""
        outputs = self.calls[name]
        if not outputs:
            raise RuntimeError(f"layer {name!r} was not called during the forward pass")
        return outputs[-1]

    def names(self) -> list[str]:
        return list(self.calls)

    def clear(self) -> None:
        for outputs in self.calls.values():
            outputs.clear()


def find_module(model: nn.Module, name: str) -> nn.Module:
    """``model``'s submodule called ``name`` (a ``named_modules()`` name)."""
    return find_modules(model, [name])[0]


def find_modules(model: nn.Module, names: Iterable[str]) -> list[nn.Module]:
    """``model``'s submodules called ``names``, from one walk of ``named_modules()`` (an
    all-layer pass names ~30); the first unknown name raises, listing valid ones."""
    table = dict(model.named_modules())
    found = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"layer must be a str (a named_modules() name), got {type(name).__name__}")
        if name not in table or name == "":
            sample = [n for n in table if n][:8]
            raise ValueError(
                f"layer {name!r} is not a module of the model; valid names are those of "
                f"named_modules(), e.g. {sample} (see Explainer.layers())"
            )
        found.append(table[name])
    return found


def primary(output: object) -> torch.Tensor | None:
    """The tensor a module's output stands for: itself, or the first item of a tuple or list
    (Hugging Face blocks return ``(hidden_states, attentions, ...)``); else ``None``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def with_primary(output: object, tensor: torch.Tensor) -> object:
    """``output`` with its primary tensor replaced by ``tensor`` (same container type)."""
    if isinstance(output, torch.Tensor):
        return tensor
    return type(output)([tensor, *output[1:]]) if isinstance(output, list) else (tensor, *output[1:])


@contextmanager
def capture(model: nn.Module, names: Iterable[str], *, track_grad: bool = True) -> Iterator[Captured]:
    """Record the outputs of the modules called ``names`` while the body runs (the first tensor
    of a module that returns a tuple).

    With ``track_grad`` (and grad mode on), a captured output that would not require grad
    (frozen parameters, input without grad) is made a leaf that does, so gradients with
    respect to it can be taken.
    """
    names = list(dict.fromkeys(names))
    modules = list(zip(names, find_modules(model, names), strict=True))
    captured = Captured(names)

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output):
            tensor = primary(output)
            if tensor is None:
                raise TypeError(
                    f"layer {name!r} returns {type(output).__name__}; only modules that return a "
                    "tensor (or a tuple that starts with one) can be explained"
                )
            if track_grad and torch.is_grad_enabled() and not tensor.requires_grad:
                tensor = tensor.detach().requires_grad_(True)
            captured.calls[name].append(tensor)
            return with_primary(output, tensor.clone())

        return hook

    with HookHandles() as hooks:
        for name, module in modules:
            hooks.forward(module, make_hook(name))
        yield captured
