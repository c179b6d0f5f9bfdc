"""The traced graph occlusion's runner interprets, and what it must know about it.

``torch.fx`` traces the model once per module structure (convolutions and pools stay whole
nodes); the plan records which nodes the input reaches, when values are last used, and which
ops write in place: a model whose in-place writes are seen elsewhere, that does not trace, or
that carries module hooks is left to plain batched forwards.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .regions import Spatial

_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
_VIEW_METHODS = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "contiguous", "squeeze",
    "unsqueeze", "permute", "transpose", "t", "expand", "expand_as", "detach", "narrow", "as_strided",
    "__getitem__", "select", "split", "chunk", "unbind", "movedim", "swapaxes", "type_as", "to", "float",
}
_VIEW_FUNCTIONS = {
    operator.getitem, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, torch.narrow, torch.split, torch.chunk, torch.unbind, torch.movedim, torch.detach,
    F.dropout, F.dropout2d,
}


# -- tracing ---------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    """Convolutions and pools (subclasses included) stay whole nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            return True
        return super().is_leaf_module(m, qualname)


@dataclass
class Plan:
    """A traced model and what the runner needs to know about its graph, cached per model."""

    key: tuple
    graph: fx.Graph | None
    nodes: list[fx.Node] = field(default_factory=list)
    inputs: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    dependent: set[fx.Node] = field(default_factory=set)  # nodes the input reaches
    last_use: dict[fx.Node, int] = field(default_factory=dict)
    checked: dict[tuple, Spatial | None] = field(default_factory=dict)  # verified spatial specs
    mutation_is_local: bool = True
    skip: set[fx.Node] = field(default_factory=set)  # shape assertions: checked once, on the clean pass
    mutating: set[fx.Node] = field(default_factory=set)  # nodes that write into their first argument
    overwrites: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)  # mutating → whose values
    # per input (shape, dtype, device, memory order): the nodes whose clean values ``run`` reads
    read: dict[tuple, set[fx.Node]] = field(default_factory=dict)
    dependent_inputs: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    freed: list[list[fx.Node]] = field(default_factory=list)  # per node: dependent values used last

    @classmethod
    def of(cls, key: tuple, graph: fx.Graph | None, modules: dict[str, nn.Module]) -> Plan:
        plan = cls(key, graph)
        if graph is None:
            return plan
        plan.nodes = list(graph.nodes)
        plan.mutation_is_local = mutation_is_local(plan.nodes, modules)
        plan.mutating = {
            node for node in plan.nodes if node.op in ("call_module", "call_function", "call_method")
            and _mutates(node, modules.get(node.target) if node.op == "call_module" else node.target)
        }
        plan.overwrites = {node: _overwritten(node, modules) for node in plan.mutating}
        plan.inputs = {node: list(node.all_input_nodes) for node in plan.nodes}
        plan.dependent = {n for n in plan.nodes if n.op == "placeholder"}
        for node in plan.nodes:
            if any(arg in plan.dependent for arg in plan.inputs[node]):
                plan.dependent.add(node)
        position = {node: i for i, node in enumerate(plan.nodes)}
        plan.last_use = {node: max((position[u] for u in node.users), default=-1) for node in plan.nodes}
        plan.skip = _checks_only(plan.nodes)
        plan.dependent_inputs = {n: [a for a in plan.inputs[n] if a in plan.dependent] for n in plan.nodes}
        plan.freed = [[a for a in plan.dependent_inputs[n] if plan.last_use[a] == i]
                      for i, n in enumerate(plan.nodes)]
        return plan


def _checks_only(nodes: list[fx.Node]) -> set[fx.Node]:
    """``torch._assert`` nodes and the metadata reads (``x.ndim == 4``) that only feed them."""
    skip = {n for n in nodes if n.op == "call_function" and n.target is torch._assert}
    for node in reversed(nodes):
        if (node.op == "call_function" and node.target in (getattr, operator.eq, operator.ne)
                and node.users and all(user in skip for user in node.users)):
            skip.add(node)
    return skip


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def has_hooks(named: list[tuple[str, nn.Module]]) -> bool:
    """Module hooks would be lost inside traced-through modules: leave such models alone."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for _, m in named)


def plan(model: nn.Module, named: list[tuple[str, nn.Module]] | None = None) -> Plan:
    """The model's traced plan (cached per model and module structure); ``plan.graph`` is
    ``None`` when ``torch.fx`` cannot trace it."""
    named = list(model.named_modules()) if named is None else named
    key = tuple((name, type(m)) for name, m in named)
    cached = _PLANS.get(model)
    if cached is not None and cached.key == key:
        return cached
    try:
        graph = _Tracer().trace(model)
    except Exception:  # any tracing failure means: run densely
        graph = None
    _PLANS[model] = result = Plan.of(key, graph, dict(named))
    return result



# -- mutation analysis ----------------------------------------------------------------------
def _mutates(node: fx.Node, target: Any) -> bool:
    """Does ``node`` write into its first argument (``inplace=True``, ``relu_``, ``+=``)?"""
    if node.op == "call_module":
        return bool(getattr(target, "inplace", False))
    if node.op == "call_function":
        name = getattr(target, "__name__", "")
        return (bool(node.kwargs.get("inplace", False)) or target in _INPLACE_OPERATORS
                or (name.endswith("_") and not name.startswith("_")))
    return node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_")


def _overwritten(node: fx.Node, modules: dict[str, nn.Module]) -> list[fx.Node]:
    """The nodes whose values an in-place ``node`` writes into: its first argument and, through
    views, what that argument is a view of."""
    written = []
    current = node
    while current.args and isinstance(current.args[0], fx.Node):
        source = current.args[0]
        written.append(source)
        if not _aliases_input(source, modules):
            break
        current = source
    return written


def _aliases_input(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """May ``node``'s value share memory with its first argument (a view, or the same tensor)?"""
    if node.op == "call_module":
        module = modules.get(node.target)
        return type(module) in (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten) or _mutates(node, module)
    if node.op == "call_method":
        return node.target in _VIEW_METHODS or _mutates(node, node.target)
    return node.op == "call_function" and (node.target in _VIEW_FUNCTIONS or _mutates(node, node.target))


def mutation_is_local(graph_nodes: list[fx.Node], modules: dict[str, nn.Module]) -> bool:
    """True when every in-place op writes into a tensor nothing else reads: then running it out
    of place (as the runner does, to keep its cached activations intact) changes nothing."""
    for node in graph_nodes:
        target = modules.get(node.target) if node.op == "call_module" else node.target
        if node.op not in ("call_module", "call_function", "call_method") or not _mutates(node, target):
            continue
        if not node.users:
            return False  # the write itself is the point (``x.relu_()`` on its own line)
        current = node
        while current.args and isinstance(current.args[0], fx.Node):
            source = current.args[0]
            if len(source.users) != 1:
                return False
            if not _aliases_input(source, modules):
                break
            current = source
    return True
