"""The Explainer: attach to any PyTorch classifier and explain its decisions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import render
from ..checks import check_count
from ..explanation import Explanation
from . import registry
from .context import Context, Progress
from .display import to_display
from .guard import preserved
from .hooks import find_module
from .inputs import ImageLike, to_batch
from .layers import candidate_layers
from .outputs import OutputSpec, check_output_spec
from .targets import Labels, Prediction, resolve_target, top_predictions


class Explainer:
    """Explanations of ``model``'s decisions, computed with hooks that never outlive a call.

    ``preprocess`` turns a PIL image into a model-ready ``(C,H,W)`` tensor (needed for image
    inputs); ``labels`` names the classes; ``output`` picks the logits out of a model that
    returns a tuple, dict or object. ``device`` defaults to the model's own.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        labels: Sequence[str] | Mapping[int, str] | None = None,
        device: str | torch.device | None = None,
        *,
        output: OutputSpec = None,
        input_size: tuple[int, int, int] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be callable; got {type(preprocess).__name__}")
        self.model = model
        self.preprocess = preprocess
        self.labels = Labels(labels)
        self.output = check_output_spec(output)
        if device is None:
            param = next(model.parameters(), None)
            self.device = param.device if param is not None else torch.device("cpu")
        else:
            self.device = torch.device(device)
            model.to(self.device)
        self.input_size = tuple(input_size) if input_size is not None else None
        self._layers: list[str] | None = None

    @classmethod
    def pretrained(cls, name: str = "efficientnet_lite0", device: str | None = None) -> Explainer:
        """An Explainer on an embedded model with real ImageNet weights (works offline)."""
        from ..models import load_pretrained

        model, preprocess, labels, input_size = load_pretrained(name, device=device)
        return cls(model, preprocess, labels, input_size=input_size)

    # -- inputs ------------------------------------------------------------------------------
    def prepare(self, x: ImageLike) -> torch.Tensor:
        """``x`` as the model-ready ``(1, C, H, W)`` tensor on the explainer's device."""
        batch = to_batch(x, self.preprocess, self.device)
        self.input_size = tuple(batch.shape[1:])
        return batch

    def display_image(self, x: ImageLike) -> np.ndarray:
        """The model's input as an ``(H, W, 3)`` uint8 picture (what heatmaps align with)."""
        return to_display(self.prepare(x), self.preprocess)

    # -- model structure ---------------------------------------------------------------------
    def layers(self) -> list[str]:
        """Candidate layers (dotted ``named_modules()`` names), input → output."""
        if self._layers is None:
            example = torch.zeros((1, *(self.input_size or (3, 224, 224))), device=self.device)
            with preserved(self.model):
                self._layers = candidate_layers(self.model, example)
        return list(self._layers)

    def default_layer(self) -> str:
        layers = self.layers()
        if not layers:
            raise ValueError("the model has no layer with spatial output; pass layer= explicitly")
        return layers[-1]

    # -- predictions -------------------------------------------------------------------------
    def logits(self, x: ImageLike) -> torch.Tensor:
        """Raw model output (logits) for one input, as a 1-D CPU tensor."""
        ctx = self._context(self.prepare(x), None, None)
        with preserved(self.model), torch.no_grad():
            logits = ctx.logits(ctx.x)
        return logits[0].float().cpu()

    def predict(self, x: ImageLike, topk: int = 5) -> list[Prediction]:
        """The ``topk`` classes, best first, as ``(index, label, prob)`` named tuples."""
        check_count(topk, "topk")
        return top_predictions(self.logits(x), self.labels, topk)

    # -- explanations ------------------------------------------------------------------------
    def explain(
        self,
        x: ImageLike,
        method: str = "saliency",
        target: int | str | None = None,
        layer: str | None = None,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        **params: Any,
    ) -> Explanation:
        """Explain the model's ``target`` logit for input ``x`` with ``method``."""
        spec = registry.get(method)
        bound = spec.bind(params)
        layer = self._resolve_layer(spec, layer)
        batch = self.prepare(x)
        ctx = self._context(batch, target, layer, progress, should_stop)
        with preserved(self.model):
            attribution = spec.fn(ctx, **bound)
            target_index, score = ctx.target, ctx.score
        return self._explanation(spec, ctx, attribution, bound, target_index, score)

    def explain_layers(
        self,
        x: ImageLike,
        method: str = "gradcam",
        target: int | str | None = None,
        layers: Sequence[str] | None = None,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        **params: Any,
    ) -> dict[str, Explanation]:
        """``method`` at every layer in ``layers`` (default: ``layers()``) from one forward and
        one backward pass; the same maps as separate ``explain`` calls."""
        from .layerwise import explain_layers

        return explain_layers(
            self, x, method, target, layers, progress=progress, should_stop=should_stop, **params
        )

    def layer_session(self, x: ImageLike, layers: Sequence[str] | None = None, *, cache: int = 8):
        """A ``LayerSession``: one forward of ``x`` kept, so ``session.explain(method, target)``
        answers every layer with one backward per new target (close it, or use ``with``)."""
        from .layerwise import LayerSession

        return LayerSession(self, x, layers, cache=cache)

    def occlude(
        self, x: ImageLike, mask: Any, baseline: float | str = "blur", topk: int = 5
    ) -> list[Prediction]:
        """Predictions (as ``predict`` gives them) for ``x`` with the ``mask``ed pixels replaced
        by ``baseline``; one forward, cheap enough for every brush stroke."""
        from ..methods.occlusion import occlude

        return occlude(self, x, mask, baseline=baseline, topk=topk)

    def _context(self, batch, target, layer, progress=None, should_stop=None) -> Context:
        if progress is not None and not callable(progress):
            raise TypeError("progress must be a callable (fraction, partial) -> None")
        return Context(
            model=self.model,
            x=batch,
            output=self.output,
            requested_target=resolve_target(target, self.labels),
            layer=layer,
            progress=progress,
            should_stop=should_stop,
            preprocess=self.preprocess,
        )

    def _resolve_layer(self, spec: registry.Method, layer: str | None) -> str | None:
        if not spec.needs_layer:
            if layer is not None:
                raise ValueError(
                    f"method {spec.name!r} works on the input pixels and takes no layer "
                    f"(got layer={layer!r}); layer methods: "
                    f"{[m.name for m in registry.all_methods() if m.needs_layer]}"
                )
            return None
        if layer is None:
            return self.default_layer()
        find_module(self.model, layer)
        return layer

    def _explanation(
        self, spec, ctx, attribution, params, target, score, layer=None, image=None
    ) -> Explanation:
        """``image``: the display picture of ``ctx.x`` when already made (shared by many results)."""
        attribution = attribution.detach().float().cpu()
        if spec.to_map is not None:
            map01 = np.asarray(spec.to_map(attribution, ctx, params), dtype=np.float32)
        else:  # needs only the attribution: made when first read
            size = tuple(ctx.x.shape[-2:])
            map01 = functools.partial(default_map, spec, attribution, size)
        return Explanation(
            attribution=attribution,
            map_source=map01,
            target=target,
            label=self.labels.name(target),
            score=score,
            method=spec.name,
            layer=layer if layer is not None else ctx.layer,
            params=dict(params),
            image=to_display(ctx.x, self.preprocess) if image is None else image,
            signed=spec.signed,
        )


def upsample(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (h, w) map resized bilinearly to ``size``."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    return F.interpolate(values[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def default_map(spec: registry.Method, attribution: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Display map for the common shapes: pixel (C,H,W) and layer (h,w) attributions."""
    if spec.space == "pixel":
        if spec.signed:
            return render.normalize_signed(attribution.sum(0), percentile=99.5)
        return render.normalize_unsigned(attribution.abs().amax(0), percentile=99.5)
    if attribution.ndim == 2:
        return render.normalize_minmax(upsample(attribution, size))
    raise ValueError(f"method {spec.name!r} needs a to_map for attribution shape {tuple(attribution.shape)}")
