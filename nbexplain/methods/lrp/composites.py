"""Composites: which rule goes on which module.

A composite names a rule for convolutions, one for dense (``nn.Linear``) layers and, optionally,
one for the first layer (the first matching module in ``named_modules()`` order, as in zennit).
Every composite passes relevance through activations and folded BatchNorm, gives a BatchNorm that
cannot be folded (DenseNet's) the ``batchnorm`` rule (ε), and squeeze-excite products the gate
rule (``propagate.py``); average pooling,
means, sums and residual additions get ``Norm`` with the composite's ``stabilizer`` where they are
called (``propagate.py``). The named composites are zennit's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from .canonize import ACTIVATIONS, BATCHNORM, CONV, LINEAR, check_leaf
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule, ZBox, ZPlus


@dataclass(frozen=True)
class Assignment:
    """The rule of one module; ``kind`` is "linear", "batchnorm" (folded into the layer before, then
    ``Pass``; else ``rule`` on it as an affine layer) or "pass"."""

    name: str
    module: nn.Module
    kind: str
    rule: Rule


@dataclass(frozen=True)
class Composite:
    """Rules by module type; ``first`` goes on the first module of a ``first_types`` type."""

    conv: Rule
    dense: Rule
    first: Rule | None = None
    first_types: tuple[type, ...] = LINEAR
    stabilizer: float = 1e-6
    batchnorm: Rule = field(default_factory=Epsilon)

    def assign(self, model: nn.Module) -> Iterator[Assignment]:
        """The assignment of every module that needs a hook, in ``named_modules()`` order."""
        first_done = self.first is None
        for name, module in model.named_modules():
            if isinstance(module, LINEAR):
                if not first_done and isinstance(module, self.first_types):
                    rule, first_done = self.first, True
                else:
                    rule = self.conv if isinstance(module, CONV) else self.dense
                yield Assignment(name, module, "linear", rule)
            elif isinstance(module, BATCHNORM):
                yield Assignment(name, module, "batchnorm", self.batchnorm)
            elif isinstance(module, ACTIVATIONS):
                yield Assignment(name, module, "pass", Pass())
            else:
                check_leaf(name, module)


Bound = float | torch.Tensor


@dataclass(frozen=True)
class Settings:
    """The knobs of the named composites; ``low``/``high``: the input's bounds for z^B."""

    epsilon: float = 1e-6
    gamma: float = 0.25
    low: Bound = 0.0
    high: Bound = 1.0


def epsilon_plus_flat(s: Settings) -> Composite:
    """Flat for the first layer, z⁺ for convolutions, ε for dense layers."""
    return Composite(conv=ZPlus(), dense=Epsilon(s.epsilon), first=Flat(), first_types=LINEAR,
                     batchnorm=Epsilon(s.epsilon))


def epsilon_gamma_box(s: Settings) -> Composite:
    """z^B for the first convolution, γ for the others, ε for dense layers."""
    return Composite(conv=Gamma(s.gamma), dense=Epsilon(s.epsilon), first=ZBox(s.low, s.high),
                     first_types=CONV, batchnorm=Epsilon(s.epsilon))


def epsilon_alpha2_beta1(s: Settings) -> Composite:
    """α2β1 for convolutions, ε for dense layers."""
    return Composite(conv=AlphaBeta(2.0, 1.0), dense=Epsilon(s.epsilon), batchnorm=Epsilon(s.epsilon))


def epsilon_plus(s: Settings) -> Composite:
    """z⁺ for convolutions, ε for dense layers."""
    return Composite(conv=ZPlus(), dense=Epsilon(s.epsilon), batchnorm=Epsilon(s.epsilon))


COMPOSITES: dict[str, Callable[[Settings], Composite]] = {
    "epsilon_plus_flat": epsilon_plus_flat,
    "epsilon_gamma_box": epsilon_gamma_box,
    "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
    "epsilon_plus": epsilon_plus,
}
