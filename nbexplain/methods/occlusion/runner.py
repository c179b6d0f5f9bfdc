"""Incremental inference for occlusion: recompute only what an occluded window can reach.

Krypton (Nakandala et al., SIGMOD 2019): occluding a window changes a convolution's output
only inside the window's receptive-field growth, so each layer can be recomputed on a small
patch around the window, pasted over the cached activations of the unoccluded image. This is
exact — the same arithmetic on the same values — not an approximation.

The model is traced with ``torch.fx``; its graph is interpreted with three kinds of value:
constants (not input-dependent), ``Patched`` (the clean activation plus, per window, one
same-sized changed rectangle) and dense batches. Pointwise ops (BatchNorm in eval, activations,
residual adds, channel concatenation) act on the patches alone; convolutions and pools gather
their input region (patch plus halo from the cached clean activation) and emit a new patch;
when the region covers most of the feature map, or for any other op (global pooling, linear,
SE blocks, attention, unknown code), the patches are pasted into full activations and the
rest of the graph runs densely on the batch. Anything that does not trace, or writes in place
into a tensor read elsewhere, or carries module hooks, falls back to plain batched forwards
(``build`` returns ``None``). The graph analysis lives in ``plan.py``, patch geometry and the
region ops in ``regions.py``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .plan import Plan, has_hooks, plan
from .regions import Patched, Spatial, padded, padded_size, reach, spatial_spec, stacked, vectorized

# Switch to dense computation when a spatial op's input region reaches this share of the map.
DENSE_SHARE = 0.9

_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.GELU,
    nn.LeakyReLU, nn.ELU, nn.Mish, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d,
)
_POINTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.hardtanh, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu,
    F.mish, F.sigmoid, F.tanh, torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.clip,
    torch.add, torch.sub, torch.mul, torch.div, operator.add, operator.sub, operator.mul,
    operator.truediv, operator.neg, F.relu_, torch.relu_, F.hardtanh_, F.elu_, F.leaky_relu_,
    torch.sigmoid_, torch.tanh_, torch.clamp_, operator.iadd, operator.isub, operator.imul,
    operator.itruediv,
}
_POINTWISE_METHODS = {
    "relu", "sigmoid", "tanh", "clamp", "clip", "add", "sub", "mul", "div", "neg", "contiguous",
    "relu_", "sigmoid_", "tanh_", "clamp_", "clip_", "add_", "sub_", "mul_", "div_", "neg_",
}
_METADATA = {"ndim", "shape", "dtype", "device", "is_cuda"}


def _spatially_constant(value: Any) -> bool:
    """A constant that broadcasts the same over every pixel (scalar, per-channel)."""
    if not isinstance(value, torch.Tensor):
        return True
    if value.ndim < 2:
        return value.numel() == 1
    return value.ndim <= 4 and value.shape[-1] == 1 and value.shape[-2] == 1 and (
        value.ndim < 4 or value.shape[0] == 1)


def _leaves(value: Any) -> list[Any]:
    out: list[Any] = []
    fx.node.map_aggregate(value, out.append)
    return out


def _shape_only(value: Any) -> Any:
    """A stand-in for a clean value ``run`` reads only the shape of: no memory, and any read of
    its values fails loudly."""
    if isinstance(value, torch.Tensor) and value.device.type != "meta":
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    return value


def _walk(value: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        value = getattr(value, part)
    return value


class IncrementalRunner:
    """Runs ``model`` on occluded copies of one input, reusing its clean activations."""

    def __init__(self, model: nn.Module, plan: Plan, x: torch.Tensor, dense_share: float = DENSE_SHARE,
                 modules: dict[str, nn.Module] | None = None,
                 memory_format: torch.memory_format = torch.channels_last):
        self.model, self.plan, self.dense_share = model, plan, dense_share
        self.nodes, self.dependent, self.last_use = plan.nodes, plan.dependent, plan.last_use
        self.modules = modules if modules is not None else dict(model.named_modules())
        self.spatial: dict[fx.Node, Spatial | None] = {}
        self.padded: dict[fx.Node, torch.Tensor] = {}
        self.clean: dict[fx.Node, Any] = {}
        self.memory_format = memory_format
        self.clean_output = self._clean_pass(x)

    @classmethod
    def build(cls, model: nn.Module, x: torch.Tensor, **options) -> IncrementalRunner | None:
        """A runner for ``model`` at input ``x`` (batch of one), or ``None`` when the model
        cannot be traced (then plain batched forwards are the way)."""
        named = list(model.named_modules())
        if has_hooks(named):
            return None
        traced = plan(model, named)
        placeholders = [n for n in traced.nodes if n.op == "placeholder"]
        if (traced.graph is None or not traced.mutation_is_local or not placeholders
                or any(not n.args for n in placeholders[1:])):
            return None
        # Channels-last first (on the CPU the first coarse map came 1.2–1.5× sooner with it on
        # EfficientNet-Lite0 and ResNet-50); a model that cannot take it (``.view`` of a conv
        # output) in the default order; a graph we cannot interpret at all: densely.
        for memory_format in (torch.channels_last, torch.contiguous_format):
            try:
                return cls(model, traced, x, modules=dict(named), memory_format=memory_format, **options)
            except Exception:
                continue
        return None

    # -- executing one node ----------------------------------------------------------------
    def _call(self, node: fx.Node, args: tuple, kwargs: dict, copy_mutated: bool) -> Any:
        target = self.modules[node.target] if node.op == "call_module" else node.target
        if copy_mutated and node in self.plan.mutating and isinstance(args[0], torch.Tensor):
            args = (args[0].clone(), *args[1:])
        if node.op in ("call_module", "call_function"):
            return target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            owner, _, name = node.target.rpartition(".")
            return getattr(self.modules[owner] if owner in self.modules else _walk(self.model, owner), name)
        raise RuntimeError(f"cannot execute fx node {node.op}")

    def _clean_pass(self, x: torch.Tensor) -> Any:
        """Run the graph on the clean input, keeping the values ``run`` reads. Which those are is
        learned on the first pass at an input size (it keeps all, then drops the rest); later
        passes drop the others as soon as they are used, and copy a value before an in-place
        op only if it is kept (at 224×224: EfficientNet-Lite0 53 MB instead of 123 MB, ResNet-50
        65 MB instead of 144 MB)."""
        env = self.clean
        x = self._in_order(x)
        key = (tuple(x.shape), x.dtype, x.device, self.memory_format)
        read = self.plan.read.get(key)
        first = True
        for i, node in enumerate(self.nodes):
            if node.op == "placeholder":
                env[node] = x if first else node.args[0]
                first = False
                continue
            if node.op == "output":
                output = fx.node.map_arg(node.args[0], lambda n: env[n])
                if read is None:
                    read = self.plan.read[key] = self._read_by_run()
                    for other, value in env.items():
                        if other not in read:
                            env[other] = _shape_only(value)
                return output
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            keeps_written = read is None or any(n in read for n in self.plan.overwrites.get(node, ()))
            env[node] = self._call(node, args, kwargs, copy_mutated=keeps_written)
            if node.op == "call_module" and node in self.dependent and args:
                module = self.modules[node.target]
                if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                    spec_key = (node.name, tuple(args[0].shape), args[0].dtype, args[0].device)
                    checked = self.plan.checked
                    if spec_key not in checked:
                        checked[spec_key] = spatial_spec(module, args[0], env[node])
                    self.spatial[node] = checked[spec_key]
            if read is not None:
                for arg in self.plan.inputs[node]:
                    if self.last_use[arg] == i and arg not in read:
                        env[arg] = _shape_only(env[arg])
        raise RuntimeError("the traced graph has no output")

    def _read_by_run(self) -> set[fx.Node]:
        """The nodes whose clean values ``run`` may read (not just their shapes): all but
        image-dependent tensors whose every user is computed from their patch alone."""
        read = set()
        for node in self.nodes:
            value = self.clean.get(node)
            if (node not in self.dependent or node.op == "placeholder" or not isinstance(value, torch.Tensor)
                    or any(not self._from_patch_alone(user, node) for user in node.users)):
                read.add(node)
        return read

    def _from_patch_alone(self, user: fx.Node, node: fx.Node) -> bool:
        """Does ``run`` compute ``user`` from ``node``'s patch without reading ``node``'s clean
        value? So for a pointwise op whose only image-dependent input is ``node`` (and for
        shape checks, which ``run`` skips); not for convolutions and pools (they crop the clean
        value around the patch), ops on several such inputs (they may align or densify) or
        anything computed densely."""
        if user in self.plan.skip:
            return True
        if user.op == "output" or user in self.spatial:
            return False
        if self.plan.dependent_inputs[user] != [node]:
            return False
        clean, source = self.clean.get(user), self.clean[node]
        if not isinstance(clean, torch.Tensor) or clean.ndim != 4 or source.ndim != 4:
            return False
        if clean.shape[-2:] != source.shape[-2:]:
            return False
        args = fx.node.map_arg(user.args, lambda n: self.clean[n])
        kwargs = fx.node.map_arg(user.kwargs, lambda n: self.clean[n])
        return self._pointwise(user, args, kwargs, self._constants(user, self.clean))

    # -- occluded batches ------------------------------------------------------------------
    def run(self, x: torch.Tensor, base: torch.Tensor, windows: Sequence[tuple[int, int, int, int]]) -> Any:
        """The model's output for ``x`` with each window (y0, y1, x0, x1) taken from ``base``;
        one image per window, in order."""
        values: dict[fx.Node, Any] = {}
        freed = self.plan.freed
        first = True
        for i, node in enumerate(self.nodes):
            if node.op == "placeholder":
                values[node] = self._initial(x, base, windows) if first else node.args[0]
                first = False
            elif node not in self.dependent:
                values[node] = self.clean[node]
            elif node in self.plan.skip:
                values[node] = None
            elif node.op == "output":
                return fx.node.map_arg(node.args[0], lambda n: self._densify(values[n]))
            else:
                values[node] = self._step(node, values)
            for arg in freed[i]:
                del values[arg]
        raise RuntimeError("the traced graph has no output")

    def _in_order(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x

    def _initial(self, x, base, windows) -> Patched:
        x = self._in_order(x)
        h = max(y1 - y0 for y0, y1, _, _ in windows)
        w = max(x1 - x0 for _, _, x0, x1 in windows)
        height, width = x.shape[-2:]
        tops = [min(y0, height - h) for y0, _, _, _ in windows]
        lefts = [min(x0, width - w) for _, _, x0, _ in windows]
        crops = [x[0, :, t:t + h, c:c + w] for t, c in zip(tops, lefts, strict=True)]
        patch = stacked(crops, self.memory_format)
        for n, (y0, y1, x0, x1) in enumerate(windows):
            patch[n, :, y0 - tops[n]:y1 - tops[n], x0 - lefts[n]:x1 - lefts[n]] = base[0, :, y0:y1, x0:x1]
        return Patched(x, patch, tops, lefts)

    @staticmethod
    def _densify(value: Any) -> Any:
        return value.dense() if isinstance(value, Patched) else value

    def _step(self, node: fx.Node, values: dict) -> Any:
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        inputs = _leaves([values[n] for n in self.plan.dependent_inputs[node]])
        patched = [v for v in inputs if isinstance(v, Patched)]
        if patched:
            result = NotImplemented
            if not any(isinstance(v, torch.Tensor) for v in inputs):  # no dense batch mixed in
                result = self._incremental(node, args, kwargs, patched, self._constants(node, values))
            if result is not NotImplemented:
                return result
            args = fx.node.map_aggregate(args, self._densify)
            kwargs = fx.node.map_aggregate(kwargs, self._densify)
        return self._call(node, args, kwargs, copy_mutated=self._shared_first_argument(node))

    def _shared_first_argument(self, node: fx.Node) -> bool:
        """Could writing into ``node``'s first argument change a value read elsewhere? Yes if
        another node uses it, or it is a cached clean value (not image-dependent)."""
        source = node.args[0] if node.args else None
        return not isinstance(source, fx.Node) or len(source.users) != 1 or source not in self.dependent

    def _constants(self, node: fx.Node, values: dict) -> list[Any]:
        """The values of ``node``'s arguments that do not depend on the image (those that do:
        ``None``), flattened."""
        return _leaves(fx.node.map_arg((node.args, node.kwargs),
                                       lambda n: None if n in self.dependent else values[n]))

    def _incremental(self, node: fx.Node, args, kwargs, patched: list[Patched], constants) -> Any:
        """The node's value with ``Patched`` inputs and no dense ones, as a ``Patched`` (or
        shape metadata); ``NotImplemented`` to compute it densely."""
        first = args[0] if args else None
        if isinstance(first, Patched):
            full = torch.Size((first.count, *first.clean.shape[1:]))
            if node.op == "call_function" and node.target is getattr and args[1] in _METADATA:
                return full if args[1] == "shape" else getattr(first.clean, args[1])
            if node.op == "call_method" and node.target == "size":
                return full if len(args) == 1 and not kwargs else full[kwargs.get("dim", args[-1])]
            if node.op == "call_method" and node.target == "dim":
                return len(full)
        clean = self.clean[node]
        if not isinstance(clean, torch.Tensor) or clean.ndim != 4:
            return NotImplemented
        if node in self.spatial:
            spec = self.spatial[node]
            if spec is None or not isinstance(first, Patched) or len(patched) != 1:
                return NotImplemented
            return self._spatial(node, spec, first, clean)
        if not self._pointwise(node, args, kwargs, constants):
            return NotImplemented
        if any(p.clean.shape[-2:] != clean.shape[-2:] for p in patched):
            return NotImplemented
        aligned = self._align(patched)
        swap = {id(p): a.patch for p, a in zip(patched, aligned, strict=True)}

        def patch_of(v):
            return swap[id(v)] if isinstance(v, Patched) else v

        args, kwargs = fx.node.map_aggregate(args, patch_of), fx.node.map_aggregate(kwargs, patch_of)
        result = self._call(node, args, kwargs, copy_mutated=self._shared_first_argument(node))
        return Patched(clean, result, aligned[0].top, aligned[0].left)

    def _pointwise(self, node: fx.Node, args, kwargs, constants) -> bool:
        """Does ``node`` act on each pixel alone (so it can run on the patches only)?"""
        if node.op == "call_module":
            module = self.modules[node.target]
            if type(module) is nn.BatchNorm2d:
                return not module.training and module.running_mean is not None
            return type(module) in _POINTWISE_MODULES or type(module) is nn.PReLU
        if node.op == "call_function":
            if node.target is F.batch_norm:
                training = kwargs.get("training", args[5] if len(args) > 5 else False)
                return not training and len(args) > 1 and args[1] is not None
            if node.target is F.dropout:
                return not kwargs.get("training", args[2] if len(args) > 2 else True)
            if node.target in (torch.cat, torch.concat):
                dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
                return dim in (1, -3) and all(isinstance(t, Patched) for t in args[0])
            if node.target not in _POINTWISE_FUNCTIONS:
                return False
        elif node.op != "call_method" or node.target not in _POINTWISE_METHODS:
            return False
        return all(_spatially_constant(v) for v in constants)

    def _align(self, patched: list[Patched]) -> list[Patched]:
        """The patches on one common set of rectangles (the union, per image)."""
        first = patched[0]
        if all(first.same_rects(p) for p in patched[1:]):
            return patched
        size = first.clean.shape[-2:]
        rects = []
        for axis, starts in ((0, "top"), (1, "left")):
            lows = [min(getattr(p, starts)[n] for p in patched) for n in range(first.count)]
            highs = [max(getattr(p, starts)[n] + p.patch.shape[2 + axis] for p in patched)
                     for n in range(first.count)]
            length = max(hi - lo for lo, hi in zip(lows, highs, strict=True))
            rects.append(([min(lo, size[axis] - length) for lo in lows], length))
        (tops, h), (lefts, w) = rects
        return [Patched(p.clean, p.region((0, 0), 0.0, tops, lefts, h, w), tops, lefts) for p in patched]

    def _spatial(self, node: fx.Node, spec: Spatial, p: Patched, clean: torch.Tensor) -> Any:
        out_size = tuple(clean.shape[-2:])
        (ph, pw) = p.patch.shape[-2:]
        tops_o, _, tops_i, h_i = reach(p.top, ph, spec.kernel[0], spec.stride[0], spec.dilation[0],
                                       spec.before[0], out_size[0])
        lefts_o, _, lefts_i, w_i = reach(p.left, pw, spec.kernel[1], spec.stride[1], spec.dilation[1],
                                         spec.before[1], out_size[1])
        full_h, full_w = padded_size(spec, out_size)
        if h_i * w_i >= self.dense_share * full_h * full_w:
            return NotImplemented
        source = None
        if vectorized(p.patch.device):  # the gather kernel reads a padded copy, made once per node
            source = self.padded.get(node)
            if source is None:
                source = self.padded[node] = padded(p.clean, spec, out_size)
        region = p.region(spec.before, spec.value, tops_i, lefts_i, h_i, w_i, source)
        out = spec.fn(region)
        return Patched(clean, out, tops_o, lefts_o)
