"""A layer method at many layers at once, and a kept pass that answers other targets cheaply.

``explain_layers`` runs a method that declares ``layerwise=fn(ctx, layers, **params) ->
{layer: attribution}`` (Grad-CAM, Grad-CAM++, LayerCAM, activations) with one forward and one
backward for every layer together; other layer methods are called once per layer. Either
way each result equals a separate ``Explainer.explain`` call at that layer.

``LayerSession`` keeps one forward's graph (and the chosen layers' outputs) so that a new
target costs one backward, not a forward and a backward; a method that declares
``combine=fn(activation, gradient, **params)`` (``register(..., combine=...)``) is answered
from the kept gradients, so switching among those methods for a target costs no pass at all.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from ..checks import check_count
from . import registry
from .context import Context, Progress
from .explanation import Explanation
from .guard import preserved
from .hooks import capture, find_modules
from .results import layer_explanations


class Subject(Protocol):
    """What the layer pass needs of an ``Explainer`` (its public API; no import of it here)."""

    model: torch.nn.Module

    def prepare(self, x: Any) -> torch.Tensor: ...

    def context(
        self, batch: torch.Tensor, target: int | str | None = None, layer: str | None = None,
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> Context: ...

    def layers(self) -> list[str]: ...


def resolve_layers(subject: Subject, layers: Sequence[str] | None) -> list[str]:
    """``layers`` checked and de-duplicated (order kept); ``None`` → ``subject.layers()``."""
    if layers is None:
        names = subject.layers()
        if not names:
            raise ValueError("the model has no layer with spatial output; pass layers= explicitly")
        return names
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(
            f"layers must be a list of layer names (see Explainer.layers()); got {type(layers).__name__}"
            + (" — for one layer use explain(..., layer=...)" if isinstance(layers, str) else "")
        )
    names = list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layers is empty; pass None for every layer of Explainer.layers()")
    find_modules(subject.model, names)  # raises, naming the valid layers
    return names


def layer_method(method: str, params: dict[str, Any]) -> tuple[registry.Method, dict[str, Any]]:
    spec = registry.get(method)
    if not spec.needs_layer:
        raise ValueError(
            f"method {method!r} works on the input pixels and has no layers; layer methods: "
            f"{[m.name for m in registry.all_methods() if m.needs_layer]}"
        )
    return spec, spec.bind(params)


def layer_attributions(
    spec: registry.Method, ctx: Context, layers: list[str], params: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The raw attribution of ``spec`` at every layer: its ``layerwise`` in one pass if it has
    one, else ``spec.fn`` per layer (sharing the clean logits, progress spread over layers)."""
    if spec.layerwise is not None:
        result = spec.layerwise(ctx, list(layers), **params)
        missing = [name for name in layers if name not in result]
        if missing:
            raise RuntimeError(f"method {spec.name!r}: layerwise gave no attribution for {missing}")
        return {name: result[name] for name in layers}
    result = {}
    for index, name in enumerate(layers):
        layer_ctx = dataclasses.replace(ctx, layer=name, state={}, progress=_spread(ctx, index, len(layers)))
        result[name] = spec.fn(layer_ctx, **params)
        ctx.clean_logits, ctx.requested_target = layer_ctx.clean_logits, layer_ctx.requested_target
        ctx.report((index + 1) / len(layers))
    return result


def _spread(ctx: Context, index: int, count: int) -> Progress | None:
    if ctx.progress is None:
        return None
    return lambda fraction, partial=None: ctx.progress((index + fraction) / count, None)


def explain_layers(
    subject: Subject,
    x: Any,
    method: str = "gradcam",
    target: int | str | None = None,
    layers: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    **params: Any,
) -> dict[str, Explanation]:
    """``method`` at every one of ``layers`` (default ``subject.layers()``), input → output."""
    spec, bound = layer_method(method, params)
    names = resolve_layers(subject, layers)
    ctx = subject.context(subject.prepare(x), target, None, progress, should_stop)
    with preserved(ctx.model):
        attributions = layer_attributions(spec, ctx, names, bound)
        target_index, score = ctx.target, ctx.score
    return layer_explanations(spec, ctx, attributions, bound, target_index, score)


class LayerSession:
    """One input, many layers, any target: the forward pass is kept and reused.

    ``explain(method, target)`` answers every layer. For methods with ``combine`` (Grad-CAM,
    Grad-CAM++, LayerCAM) a new target costs one backward through the kept graph, and another
    such method for a seen target costs no pass; other layer methods fall back to
    ``explain_layers``. Recent results are cached (``cache`` entries). The kept graph holds the
    forward's saved tensors (tens of MB for a ResNet-50 at 224); ``close()`` (or leaving a
    ``with`` block) frees it. If the model's weights or buffers change afterwards, the next
    call redoes the forward (and forgets what it cached).
    """

    def __init__(self, subject: Subject, x: Any, layers: Sequence[str] | None = None, *, cache: int = 8):
        check_count(cache, "cache", minimum=0)
        self.subject = subject
        self.model = subject.model
        self.layers = resolve_layers(subject, layers)
        self.x = subject.prepare(x)
        self.cache = cache
        self._results: OrderedDict[tuple, dict[str, Explanation]] = OrderedDict()
        self._gradients: OrderedDict[int, list[torch.Tensor]] = OrderedDict()
        self._logits: torch.Tensor | None = None
        self._outputs: list[torch.Tensor] | None = None
        self._clean: torch.Tensor | None = None
        self._seen: tuple = ()
        self._closed = False

    # -- lifetime ----------------------------------------------------------------------------
    def __enter__(self) -> LayerSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the kept graph, activations, gradients and cached results."""
        self._logits = self._outputs = None
        self._gradients.clear()
        self._results.clear()
        self._closed = True

    # -- queries -----------------------------------------------------------------------------
    def logits(self) -> torch.Tensor:
        """The input's logits (1-D, CPU), from the kept forward."""
        self._forward_once()
        return self._clean[0].cpu()

    def explain(
        self,
        method: str = "gradcam",
        target: int | str | None = None,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        **params: Any,
    ) -> dict[str, Explanation]:
        """``method`` for ``target`` at every layer of the session (as ``explain_layers``);
        ``progress``/``should_stop`` reach the methods answered by ``explain_layers``."""
        if self._closed:
            raise RuntimeError("this LayerSession is closed; start a new one")
        spec, bound = layer_method(method, params)
        index = self._target(target)
        key = (spec.name, index, tuple(sorted((k, _key(v)) for k, v in bound.items())))
        if key in self._results:
            self._results.move_to_end(key)
            return dict(self._results[key])
        combine = spec.combine
        if combine is None:
            result = explain_layers(self.subject, self.x, spec.name, index, self.layers,
                                    progress=progress, should_stop=should_stop, **bound)
        else:
            result = self._combined(spec, combine, bound, index)
        if self.cache:
            self._results[key] = result
            while len(self._results) > self.cache:
                self._results.popitem(last=False)
        return dict(result)

    # -- internals ---------------------------------------------------------------------------
    def _state(self) -> tuple:
        """Identity and in-place version of every weight and buffer: changes when they do."""
        model = self.model
        return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))

    def _forward_once(self) -> None:
        if self._outputs is not None and self._state() == self._seen:
            return
        self._gradients.clear()
        self._results.clear()
        model = self.model
        ctx = self.subject.context(self.x)

        def run(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            with preserved(model), capture(model, self.layers) as captured, torch.enable_grad():
                logits = ctx.logits(x)
                return logits, [captured[name] for name in self.layers]

        self._logits, self._outputs = ctx.in_layout(self.x, run)
        self._clean = self._logits.detach()[:1].float()
        self._seen = self._state()

    def _context(self, target: int | str | None) -> Context:
        self._forward_once()
        ctx = self.subject.context(self.x, target)
        ctx.clean_logits, ctx.classes = self._clean, self._clean.shape[1]
        return ctx

    def _target(self, target: int | str | None) -> int:
        return self._context(target).target

    def _gradients_for(self, index: int) -> list[torch.Tensor]:
        self._forward_once()
        if index in self._gradients:
            self._gradients.move_to_end(index)
            return self._gradients[index]
        logit = self._logits[0, index]
        grads = torch.autograd.grad(logit, self._outputs, retain_graph=True, allow_unused=True)
        pairs = zip(self._outputs, grads, strict=True)
        grads = [torch.zeros_like(out) if g is None else g for out, g in pairs]
        self._gradients[index] = grads
        while len(self._gradients) > 2:
            self._gradients.popitem(last=False)
        return grads

    def _combined(self, spec, combine, bound, index: int) -> dict[str, Explanation]:
        grads = self._gradients_for(index)
        ctx = self._context(index)
        score = ctx.score
        with torch.no_grad():
            attributions = {
                name: combine(ctx.feature_map(name, out), ctx.feature_map(name, grad), **bound)
                for name, out, grad in zip(self.layers, self._outputs, grads, strict=True)
            }
        return layer_explanations(spec, ctx, attributions, bound, index, score)


def _key(value: Any) -> Any:
    return id(value) if isinstance(value, torch.Tensor) else value
