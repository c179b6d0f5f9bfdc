"""Leave the user's model exactly as it was found.

Explanations run in eval mode (BatchNorm uses its running statistics and never updates them,
dropout is off) with parameters frozen (no weight gradients are computed, none are written).
Everything is put back on every exit path, including after an exception. Calls on one model
take turns (``model_lock``): two interleaved on two threads (a widget's worker and the user's
own cell) would each restore the other's half-changed flags and leave the model changed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one lock of ``model``, held by every engine call on it. Re-entrant, so an engine call
    (or a progress callback) may make another on the same thread."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode and its parameters frozen; restore both after.

    Only what needs changing is touched (a model already in eval mode is not switched), which
    keeps the guard well under a millisecond on a few hundred modules."""
    with model_lock(model), _frozen_eval(model):
        yield model


@contextmanager
def _frozen_eval(model: nn.Module) -> Iterator[None]:
    modules = list(model.modules())
    modes = [module.training for module in modules]
    training = any(modes)
    # model.parameters() without its per-call recursion (a third of a millisecond here)
    trainable = list({id(p): p for module in modules for p in module._parameters.values()
                      if p is not None and p.requires_grad}.values())
    grad_enabled = torch.is_grad_enabled()
    try:
        if training:
            model.eval()
        for param in trainable:
            param.requires_grad_(False)
        yield
    finally:
        for module, was_training in zip(modules, modes, strict=True):
            if module.training != was_training:  # a plain read; nn.Module's setattr is slow
                module.training = was_training
        for param in trainable:
            param.requires_grad_(True)
        torch.set_grad_enabled(grad_enabled)
