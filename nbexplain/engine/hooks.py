"""Capture the outputs of named modules during one forward pass.

Every hook is registered through this module and removed on every exit path. Captured
outputs are the module's own output tensors. Where an in-place op follows the module
(ResNet's ``relu(inplace=True)`` after ``bn2``) what flows on downstream is a copy, so the
capture is not overwritten and ``torch.autograd.grad`` with respect to it is exact.

Which modules need the copy is learned: a module's first capture copies, and notes whether
the copy was written in place downstream; later captures copy only where it was. Copying
every layer costs ~5% of a ResNet-50 pass. Should a module's output be overwritten where
it was not before, reading it raises ``CaptureOverwritten`` (and the module copies from then
on), which ``retrying`` turns into one more pass. A module called several times in one
forward (a reused ReLU) keeps every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from weakref import WeakKeyDictionary

import torch
from torch import nn

T = TypeVar("T")

# Per module: whether an in-place op downstream wrote to its output at the last look.
_WRITTEN_DOWNSTREAM: WeakKeyDictionary[nn.Module, bool] = WeakKeyDictionary()


class CaptureOverwritten(RuntimeError):
    """A captured output was written in place after it was captured (see ``retrying``)."""


class Captured:
    """Outputs of the hooked modules, per call, in call order."""

    def __init__(self, names: Iterable[str]):
        self.calls: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        # Outputs passed on uncopied: (module, tensor, its version when captured).
        self.uncopied: list[tuple[nn.Module, torch.Tensor, int]] = []

    def __getitem__(self, name: str) -> torch.Tensor:
        """The output of ``name``'s last call in the forward (the one nearest the output)."""
        outputs = self.calls[name]
        if not outputs:
            raise RuntimeError(f"layer {name!r} was not called during the forward pass")
        self.check()
        return outputs[-1]

    def check(self) -> None:
        """Raise ``CaptureOverwritten`` if an uncopied capture has been written in place."""
        for module, tensor, version in self.uncopied:
            if tensor._version != version:
                _WRITTEN_DOWNSTREAM[module] = True
                raise CaptureOverwritten(
                    f"the output of {type(module).__name__} was written in place after capture"
                )

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


@contextmanager
def capture(model: nn.Module, names: Iterable[str], *, track_grad: bool = True) -> Iterator[Captured]:
    """Record the outputs of the modules called ``names`` while the body runs.

    With ``track_grad`` (and grad mode on), a captured output that would not require grad
    (frozen parameters, input without grad) is made a leaf that does, so gradients with
    respect to it can be taken.
    """
    names = list(dict.fromkeys(names))
    modules = list(zip(names, find_modules(model, names), strict=True))
    captured = Captured(names)
    copies: list[tuple[nn.Module, torch.Tensor]] = []  # (module, the copy passed downstream)
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"layer {name!r} returns {type(output).__name__}; only modules that "
                    "return a single tensor can be explained"
                )
            leaf = track_grad and torch.is_grad_enabled() and not output.requires_grad
            if leaf:  # in place on a leaf that requires grad is an error: always pass a copy on
                output = output.detach().requires_grad_(True)
            captured.calls[name].append(output)
            if leaf or output.is_inference() or _WRITTEN_DOWNSTREAM.get(module, True):
                copy = output.clone()
                if not copy.is_inference():
                    copies.append((module, copy))
                return copy
            captured.uncopied.append((module, output, output._version))
            return output

        return hook

    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(make_hook(name)))
        yield captured
        for module, copy in copies:  # learn which modules need the copy (not after an error)
            _WRITTEN_DOWNSTREAM[module] = _WRITTEN_DOWNSTREAM.get(module, False) or copy._version > 0
    finally:
        for handle in handles:
            handle.remove()


def retrying(run: Callable[[], T]) -> T:
    """``run()``, once more if a capture in it was overwritten (the second pass copies it)."""
    try:
        return run()
    except CaptureOverwritten:
        return run()
