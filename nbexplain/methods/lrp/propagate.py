"""Run LRP: put each operation's rule into the backward pass, for one forward and one backward.

Every rule-bearing operation's output is replaced by the output of ``_Step``, an autograd function
whose forward returns the operation's own output and whose backward is the rule: the "gradient"
that flows back is the relevance itself, as in zennit. So the relevance at the input is the
gradient of the logits with respect to the input, started from ``one_hot(target) · logit``.

- Modules (conv, linear, BatchNorm, activations) get their rule through forward hooks.
- Parameter-free operations called as functions — a residual block's ``out + identity``, means,
  sums, average pooling — are caught by a ``TorchFunctionMode`` while the model runs and get the
  ``Norm`` rule (zennit needs a canonizer per block type to expose such additions).
- A squeeze-excite product ``x * g`` whose ``g`` is a sigmoid's output (module or function) is
  "gate as weight" (Arras et al. 2017, signal-take-all): ``g`` a constant, all relevance to ``x``
  (``Norm`` on ``x ↦ x · g``, so it is conserved); the gate branch gets none. A product with a
  constant (a number, a tensor outside the graph) is the same rule.
- Before the backward, the autograd graph between those steps is checked: only operations through
  which the plain gradient conserves relevance (reshapes, concatenation, max pooling, ReLU,
  copies) may remain. Anything else raises ``UnsupportedModel`` naming the steps around it,
  instead of producing wrong relevance.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...engine.hooks import HookHandles
from .canonize import SUPPORTED, AffineOp, LinearOp, UnsupportedModel
from .composites import Assignment, Composite
from .rules import Norm, Pass, Rule

# Autograd nodes the plain gradient may cross (names without the ``Backward<n>`` suffix).
_GLUE = {
    "AccumulateGrad", "Clone", "Copy", "CopySlices", "View", "UnsafeView", "ReshapeAlias", "Alias",
    "Squeeze", "Unsqueeze", "Permute", "Transpose", "T", "Expand", "ToCopy", "Cat", "Stack", "Split",
    "SplitWithSizes", "Unbind", "Slice", "Select", "Relu", "MaxPool1DWithIndices",
    "MaxPool2DWithIndices", "MaxPool3DWithIndices", "AdaptiveMaxPool1D", "AdaptiveMaxPool2D",
    "AdaptiveMaxPool3D",
}
_SUFFIX = re.compile(r"Backwards?\d*$")

_ADD = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_ADD_INPLACE = {torch.Tensor.add_, torch.Tensor.__iadd__}
_MUL = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__}
_MUL_INPLACE = {torch.Tensor.mul_, torch.Tensor.__imul__}
_GATE_FUNCS = {torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, F.hardsigmoid}
_GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid)
_REDUCE = {torch.sum, torch.Tensor.sum, torch.mean, torch.Tensor.mean, F.avg_pool1d, F.avg_pool2d,
           F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}

# Set while a rule runs the module's own forward in the backward pass: hooks and mode stand aside.
_in_rule = threading.local()


def _quiet() -> bool:
    return getattr(_in_rule, "active", False)


@dataclass
class Step:
    """One call of one operation in the backward pass: its rule and what the rule works on."""

    name: str
    rule: Rule
    op: Any = None  # LinearOp, or a parameter-free function for Norm


class _Step(torch.autograd.Function):
    """Forward: ``value`` (the operation's output). Backward: ``step.rule`` maps the relevance at
    the output onto ``inputs``."""

    @staticmethod
    def forward(ctx, step: Step, value: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.step = step
        ctx.save_for_backward(*inputs)
        return value.clone()

    @staticmethod
    def backward(ctx, relevance: torch.Tensor):
        step: Step = ctx.step
        _in_rule.active = True
        try:
            with torch.enable_grad():
                result = step.rule(step.op, [t.detach() for t in ctx.saved_tensors], relevance)
        finally:
            _in_rule.active = False
        return (None, None, *result)


def _in_graph(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


class Session(TorchFunctionMode):
    """One hooked forward: module hooks, the function mode, and the names of the graph's steps."""

    def __init__(self, stabilizer: float) -> None:
        super().__init__()
        self.stabilizer = stabilizer
        self.inputs: dict[nn.Module, list[torch.Tensor]] = {}
        self.linear: dict[int, tuple[torch.Tensor, LinearOp]] = {}
        self.nodes: dict[Any, str] = {}
        self.gates: dict[int, torch.Tensor] = {}  # sigmoid outputs, by id (kept alive)
        self.calls = 0

    def apply(self, step: Step, value: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        result = _Step.apply(step, value.detach(), *inputs)
        self.nodes[result.grad_fn] = step.name
        return result

    # -- modules ---------------------------------------------------------------------------------
    def pre_hook(self, item: Assignment):
        def hook(module, args):
            if _quiet():
                return None
            x = args[0] if args else None
            if not isinstance(x, torch.Tensor):
                raise UnsupportedModel(f"lrp: module {item.name!r} is not called with a tensor")
            self.inputs.setdefault(module, []).append(x)
            if item.kind == "pass":  # an in-place activation must not overwrite the input we keep
                return (x.clone(), *args[1:])
            return None

        return hook

    def hook(self, item: Assignment):
        def hook(module, args, output):
            if _quiet():
                return None
            if not isinstance(output, torch.Tensor):
                raise UnsupportedModel(f"lrp: module {item.name!r} does not return a single tensor")
            x = self.inputs[module].pop()
            op, rule = None, item.rule
            if item.kind == "linear":
                op = LinearOp(module, item.name)
            elif item.kind == "batchnorm":
                source = self.linear.get(id(x))
                if source is not None and source[0] is x:
                    source[1].fold(module, item.name)
                    rule = Pass()
                else:  # e.g. DenseNet's norm → relu → conv: an affine layer of its own
                    op = AffineOp(module, item.name)
            returned = self.apply(Step(item.name, rule, op), output, x)
            if isinstance(module, _GATE_MODULES):
                self.gates[id(returned)] = returned
            if isinstance(op, LinearOp):  # a BatchNorm reading ``returned`` folds into ``op``
                self.linear[id(returned)] = (returned, op)
            return returned

        return hook

    # -- functions -------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _quiet() or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        if (func in _ADD or func in _ADD_INPLACE) and len(args) == 2 and all(map(_in_graph, args)):
            return self._add(func in _ADD_INPLACE, *args, **kwargs)
        if (func in _MUL or func in _MUL_INPLACE) and len(args) == 2 and any(map(_in_graph, args)):
            # a gate: a sigmoid's output, or a constant (a tensor outside the graph, a number)
            gated = [(not _in_graph(arg) and isinstance(arg, (torch.Tensor, int, float)))
                     or (id(arg) in self.gates and self.gates[id(arg)] is arg) for arg in args]
            inplace = func in _MUL_INPLACE
            if sum(gated) == 1 and (gated[1] or not inplace):
                return self._gate(inplace, *(args if gated[1] else args[::-1]))
        if func in _GATE_FUNCS:
            result = func(*args, **kwargs)
            if isinstance(result, torch.Tensor):
                self.gates[id(result)] = result
            return result
        if func in _REDUCE and args and _in_graph(args[0]):
            rest = args[1:]

            def op(x):
                return func(x, *rest, **kwargs)

            return self._norm(getattr(func, "__name__", "reduce"), op, args[0])
        return func(*args, **kwargs)

    def _norm(self, name: str, op: Callable, *inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = op(*(x.detach() for x in inputs))
        return self.apply(Step(f"{name} #{self.calls}", Norm(self.stabilizer), op), value, *inputs)

    def _add(self, inplace: bool, a: torch.Tensor, b: torch.Tensor, alpha: float = 1) -> torch.Tensor:
        def op(a, b):
            return torch.add(a, b, alpha=alpha)

        if not inplace:
            return self._norm("add", op, a, b)
        # ``a += b``: the sum must land in ``a`` itself; ``copy_`` routes a's gradient to the step.
        total = self._norm("add", op, a.clone(), b)
        return a.copy_(total)

    def _gate(self, inplace: bool, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """``x * gate`` with the gate as a constant weight: all relevance to ``x``."""
        weight = gate.detach() if isinstance(gate, torch.Tensor) else gate

        def op(x):
            return x * weight

        if not inplace:
            return self._norm("gate", op, x)
        return x.copy_(self._norm("gate", op, x.clone()))  # ``x *= gate`` must land in ``x``

    # -- checking ---------------------------------------------------------------------------------
    def check(self, logits: torch.Tensor) -> None:
        """Raise if an operation LRP has no rule for lies between the steps."""
        stack: list[tuple[Any, str]] = [(logits.grad_fn, "the output")]
        seen = set()
        while stack:
            node, below = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            name = self.nodes.get(node)
            kind = _SUFFIX.sub("", type(node).__name__)
            if name is None and kind not in _GLUE:
                raise UnsupportedModel(
                    f"lrp: the model applies an operation LRP has no rule for ({type(node).__name__}) "
                    f"between {self._above(node)} and {below!r}; supported: {SUPPORTED}"
                )
            stack.extend((child, name or below) for child, _ in node.next_functions)

    def _above(self, node) -> str:
        """Names of the nearest steps feeding ``node``, for error messages."""
        found, stack, seen = set(), [node], set()
        while stack:
            current = stack.pop()
            if current is None or current in seen:
                continue
            seen.add(current)
            if current is not node and current in self.nodes:
                found.add(self.nodes[current])
                continue
            stack.extend(child for child, _ in current.next_functions)
        return " and ".join(repr(name) for name in sorted(found)) or "the input"


@contextmanager
def attached(model: nn.Module, composite: Composite) -> Iterator[Session]:
    """``composite``'s rules on ``model`` while the body runs; hooks removed and the function mode
    left on every exit path."""
    session = Session(composite.stabilizer)
    try:
        with HookHandles() as hooks:
            for item in composite.assign(model):
                hooks.forward_pre(item.module, session.pre_hook(item))
                hooks.forward(item.module, session.hook(item))
            with session:
                yield session
    finally:
        session.linear.clear()
        session.gates.clear()


def relevance(
    model: nn.Module,
    x: torch.Tensor,
    composite: Composite,
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    target_fn: Callable[[torch.Tensor], int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevance at ``x``, logits): LRP of the ``target_fn(logits)`` logit, started from its value.

    ``logits_fn`` runs the model and picks its logits; ``target_fn`` picks the class from them.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        with attached(model, composite) as session:
            logits = logits_fn(x)
        target = target_fn(logits)
        if not logits.requires_grad:
            raise ValueError("lrp: the logits do not depend on the input through autograd (the model "
                             "detaches them or runs under torch.no_grad()), so relevance cannot flow back")
        session.check(logits)
        start = torch.zeros_like(logits)
        start[:, target] = logits[:, target].detach()
        (result,) = torch.autograd.grad(logits, x, grad_outputs=start)
    return result, logits.detach()
