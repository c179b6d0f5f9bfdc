"""Find the meaningful layers of a vision model: its blocks and stages on the image grid, input → output.

One traced forward records, for every module, its input and output tensors (and their in-place
version counters). The module tree is then walked from the root:

* a *stage* — a module whose forward only runs its children one after another (a plain
  ``nn.Sequential``, ResNet's ``layer1``, timm's ``ConvNeXtStage``) — is opened, and its children
  are looked at in turn;
* anything else with children is a *block* (a residual block, an inverted residual, a dense
  block, a conv–norm–activation group) and is one candidate, never opened;
* a leaf reached from a stage (VGG's convolutions and ReLUs) is a candidate of its own.

A module that holds layers but is not one itself is opened too: a whole model that returns no
map (inside a wrapper, or after a ``Normalize``), or a wrapper around a stack of blocks (a ViT
encoder). Candidates must return one tensor that lies on the image grid with more than one
position (``grid.py``: channels-first, channels-last, or patch tokens).
Pooling layers only resample the map before them and are left out, as are identities,
dropouts, modules called more than once, and whatever finishes before the first learned layer
runs (input preprocessing). A convolution or normalization whose output feeds straight into
the next candidate's normalization or activation is the same feature map before its
activation: only the post-activation layer is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .grid import LayoutSpec, find_grid
from .guard import preserved
from .hooks import HookHandles, primary

_WEIGHTS = (nn.modules.conv._ConvNd, nn.Linear)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_SKIPPED = (
    nn.Identity,
    nn.modules.dropout._DropoutNd,
    nn.modules.pooling.MaxPool2d,
    nn.modules.pooling.AvgPool2d,
    nn.modules.pooling.LPPool2d,
    nn.modules.pooling.FractionalMaxPool2d,
    nn.modules.pooling.AdaptiveAvgPool2d,
    nn.modules.pooling.AdaptiveMaxPool2d,
)


@dataclass
class Call:
    """One call of a module in the traced forward: when it ran, what it read and returned."""

    start: int
    end: int = -1
    input: torch.Tensor | None = None
    input_version: int = -1
    output: object = None
    output_version: int = -1


class Trace:
    """Every module's calls during ``run()`` (one forward of ``model``), in call order; run in
    eval mode without autograd, every hook removed after."""

    def __init__(self, model: nn.Module, run: Callable[[], object]):
        self.modules = dict(model.named_modules())
        self.calls: dict[str, list[Call]] = {name: [] for name in self.modules}
        self._clock = 0
        with HookHandles() as hooks:
            for name, module in self.modules.items():
                hooks.forward_pre(module, self._enter(name))
                hooks.forward(module, self._leave(name))
            with preserved(model), torch.no_grad():
                run()

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _enter(self, name: str):
        def hook(module, inputs):
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            self.calls[name].append(
                Call(self._tick(), input=first, input_version=first._version if first is not None else -1)
            )

        return hook

    def _leave(self, name: str):
        def hook(module, inputs, output):
            call = next(c for c in reversed(self.calls[name]) if c.end < 0)
            call.end = self._tick()
            call.output = output if primary(output) is None else primary(output)
            if isinstance(call.output, torch.Tensor):
                call.output_version = call.output._version

        return hook

    def once(self, name: str) -> Call | None:
        """The call of ``name`` if it ran exactly once, else ``None``."""
        calls = self.calls[name]
        return calls[0] if len(calls) == 1 else None

    def parts(self, name: str) -> list[tuple[str, nn.Module]]:
        """``name``'s children, a never-called ``ModuleList``/``ModuleDict`` among them replaced by
        its own children (a stage that loops over ``self.blocks``)."""
        found = []
        for child_name, child in self.modules[name].named_children():
            full = f"{name}.{child_name}" if name else child_name
            if not self.calls[full] and _is_plain(child) and next(child.children(), None) is not None:
                found.extend(self.parts(full))
            else:
                found.append((full, child))
        return found

    def chained(self, name: str) -> bool:
        """Whether ``name``'s forward is nothing but its children run one after another: the
        first reads the module's input, each reads what the previous returned (untouched by
        in-place ops between them), and the module returns what the last one returned."""
        parent = self.once(name)
        if parent is None:
            return False
        inner = []
        for full, _ in self.parts(name):
            calls = [c for c in self.calls[full] if parent.start < c.start < parent.end]
            if len(calls) > 1:
                return False
            inner.extend(calls)
        inner.sort(key=lambda call: call.start)
        if not inner:
            return False
        links = [(parent.input, parent.input_version)]
        links += [(call.output, call.output_version) for call in inner]
        reads = [(call.input, call.input_version) for call in inner]
        reads.append((parent.output, parent.output_version))
        return all(a is b and va == vb for (a, va), (b, vb) in zip(links, reads, strict=True))


def _weights(module: nn.Module) -> int:
    """How many layers with weights (convolutions, linear layers) ``module`` holds."""
    return sum(isinstance(m, _WEIGHTS) for m in module.modules())


def _is_plain(module: nn.Module) -> bool:
    """A container without a forward of its own: ``nn.Sequential`` (or a subclass that keeps
    its forward), ``nn.ModuleList``, ``nn.ModuleDict``."""
    forward = type(module).forward
    sequential = isinstance(module, nn.Sequential) and forward is nn.Sequential.forward
    return sequential or forward is nn.Module.forward


def _is_blockish(module: nn.Module) -> bool:
    """A block (a module with a forward of its own and several weight layers) or a container
    of blocks."""
    if _weights(module) < 2:
        return False
    if not _is_plain(module):
        return True
    return all(_is_blockish(child) for child in module.children() if _weights(child))


def _is_stage(trace: Trace, name: str, module: nn.Module) -> bool:
    """Whether ``module`` is opened (its children are the candidates) rather than kept whole.

    A plain container is opened unless it is a layer group (at most one weight layer: a
    conv–norm–activation ``Sequential``). A module with a forward of its own is opened only
    when that forward chains its children and they are blocks, optionally after or before one
    downsampling layer (timm's ``ConvNeXtStage``, ``RegStage``; a Hugging Face Swin stage ends
    with one); otherwise it is a block.
    """
    if _is_plain(module):
        return _weights(module) > 1 or not trace.calls[name]  # a ModuleList is never called itself
    if not trace.chained(name):
        return False
    parts = [(trace.calls[full][0].start, child) for full, child in trace.parts(name)
             if _weights(child) and trace.calls[full]]
    parts = [child for _, child in sorted(parts, key=lambda part: part[0])]
    if len(parts) >= 2 and _weights(parts[0]) == 1:
        parts = parts[1:]  # a stage may open with one downsampling layer
    if len(parts) >= 3 and _weights(parts[-1]) == 1:
        parts = parts[:-1]  # or end with one, after a stack of blocks
    return bool(parts) and all(_is_blockish(part) for part in parts)


def _walk(trace: Trace, name: str, module: nn.Module, example: torch.Tensor) -> Iterator[str]:
    """The candidates under ``module``: blocks and leaves, stages and wrappers opened."""
    for child_name, child in module.named_children():
        full = f"{name}.{child_name}" if name else child_name
        if next(child.children(), None) is not None and (
            _is_stage(trace, full, child) or _is_wrapper(trace, full, child, example)
        ):
            yield from _walk(trace, full, child, example)
        else:
            yield full


def _is_wrapper(trace: Trace, name: str, module: nn.Module, example: torch.Tensor) -> bool:
    """A module whose layers are inside it, not itself one: a whole model that returns no map
    (inside a wrapper, or after a ``Normalize``), or a wrapper around a stack of blocks that
    returns what the stack gives, shape for shape (torchvision's ViT ``Encoder``: embeddings,
    then the blocks, then a norm)."""
    call = trace.once(name)
    if call is None or _weights(module) < 2:
        return False
    if not _on_grid(call, example, None):
        return True
    for child_name, child in module.named_children():
        blocks = [f"{name}.{child_name}.{n}" for n, c in child.named_children() if _is_blockish(c)]
        if not _is_plain(child) or len(blocks) < 2 or not all(trace.once(b) for b in blocks):
            continue
        last = max((trace.once(b) for b in blocks), key=lambda c: c.end)
        if isinstance(last.output, torch.Tensor) and isinstance(call.output, torch.Tensor):
            return tuple(last.output.shape) == tuple(call.output.shape)
    return False


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__.rpartition(".")[2].startswith("activation")


def _on_grid(call: Call, example: torch.Tensor, prefix: int | None,
             layout: LayoutSpec | None = None) -> bool:
    """One output of the batch that lies on the image grid (``grid.py``), more than one position."""
    out = primary(call.output)
    if out is None or out.ndim < 3 or out.shape[0] != example.shape[0]:
        return False
    try:
        return find_grid(out.shape, example.shape[-2:], prefix=prefix, layout=layout) is not None
    except ValueError:  # a layout given for this layer that does not fit it: not offered
        return False


def candidate_layers(model: nn.Module, example: torch.Tensor, *, prefix: int | None = None,
                     layouts: Mapping[str, LayoutSpec] | None = None) -> list[str]:
    """The model's meaningful layers (``named_modules()`` names), ordered input → output; the
    last one is the last feature map before global pooling. ``prefix`` and ``layouts``: as for
    ``grid.find_grid`` (the model's leading tokens, per-layer layouts given by hand)."""
    layouts = layouts or {}
    trace = Trace(model, lambda: model(example))
    weighted = [call.start for name, module in trace.modules.items() if isinstance(module, _WEIGHTS)
                for call in trace.calls[name]]
    first_weight = min(weighted, default=0)
    units = []
    for name in _walk(trace, "", model, example):
        call = trace.once(name)
        module = trace.modules[name]
        if call is None or isinstance(module, _SKIPPED) or not _on_grid(
                call, example, prefix, layouts.get(name)):
            continue
        if call.end < first_weight:
            continue  # done before any learned layer ran: preprocessing (a Normalize), not a feature
        units.append((call, name, module))
    units.sort(key=lambda unit: unit[0].end)
    chosen = []
    for index, (call, name, module) in enumerate(units):
        if index + 1 < len(units) and isinstance(module, (*_WEIGHTS, *_NORMS)):
            after, _, consumer = units[index + 1]
            feeds = after.input is call.output and after.input_version == call.output_version
            if feeds and (isinstance(consumer, _NORMS) or _is_activation(consumer)):
                continue  # the same map before its normalization/activation
        previous = chosen[-1][0] if chosen else None
        if previous and call.output is previous.output and call.output_version == previous.output_version:
            continue  # the same tensor again
        chosen.append((call, name))
    return [name for _, name in chosen]
