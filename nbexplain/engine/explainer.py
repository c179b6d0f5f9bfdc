"""The Explainer: attach to any PyTorch classifier and explain its decisions."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import check_count
from . import layerwise, registry
from .context import Context, Progress
from .display import to_display
from .explanation import Explanation
from .grid import Layouts, check_layouts, prefix_tokens
from .guard import preserved
from .hooks import find_module
from .inputs import ImageLike, declared_input_size, to_batch
from .layers import candidate_layers
from .outputs import OutputSpec, check_output_spec
from .perturb import occlude as occlude_masked
from .results import explanation
from .targets import Labels, Prediction, resolve_target, top_predictions

LAYER_SIZES = 8  # input sizes whose layer lists are remembered


def model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """Where the model's weights are (CPU for a model without any), checked against ``device``."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    found = tensor.device if tensor is not None else None
    if device is None:
        return found or torch.device("cpu")
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device, e.g. 'cpu' or 'cuda:0'; got {device!r}") from error
    if found is not None and (found.type, found.index or 0) != (wanted.type, wanted.index or 0):
        raise ValueError(
            f"device={str(wanted)!r}, but the model's weights are on {str(found)!r}; nbexplain never "
            f"moves your model: call model.to({str(wanted)!r}) first, or leave device= out"
        )
    return wanted if found is None else found


class Explainer:
    """Explanations of ``model``'s decisions, computed with hooks that never outlive a call.

    ``preprocess`` turns a PIL image into a model-ready ``(C,H,W)`` tensor (needed for image
    inputs); ``labels`` names the classes; ``output`` picks the logits out of a model that
    returns a tuple, dict or object. ``device`` is where inputs go: the model's own by default;
    the model is never moved (a ``device`` other than the one its weights are on is an error).
    ``layout={layer: "nchw" | "nhwc" | "tokens" | nbx.tokens(prefix, h, w)}`` says how a layer's
    output lies on the image where its shape cannot tell (``engine/grid.py``).
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
        layout: Layouts | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be callable; got {type(preprocess).__name__}")
        self.model = model
        self.preprocess = preprocess
        self.labels = Labels(labels)
        self.output = check_output_spec(output)
        self.device = model_device(model, device)
        self.layout = check_layouts(layout)
        self.prefix_tokens = prefix_tokens(model)
        self.input_size = tuple(input_size) if input_size is not None else declared_input_size(model)
        self._layers: dict[tuple[int, ...], list[str]] = {}  # by input size

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
        """Candidate layers (dotted ``named_modules()`` names), input → output, at the size of the
        last input (a 1×1 image has none; the next, larger one finds them again). Token layers
        whose patches cannot reach the logits (a ViT's last block and norm, read only through
        its class token) are left out: every gradient and CAM there is zero."""
        size = self.input_size or (3, 224, 224)
        if size not in self._layers:
            example = torch.zeros((1, *size), device=self.device)
            with preserved(self.model):
                found = candidate_layers(self.model, example, prefix=self.prefix_tokens, layouts=self.layout)
                found = self._reaching(found, example)
            if len(self._layers) >= LAYER_SIZES:
                self._layers.pop(next(iter(self._layers)))
            self._layers[size] = found
        return list(self._layers[size])

    def _reaching(self, names: list[str], example: torch.Tensor) -> list[str]:
        """``names`` less the token layers whose patch tokens get no gradient from the logits
        while their prefix (class) tokens do: the decision reads them only through the prefix."""
        ctx = self.context(torch.randn(example.shape, generator=torch.Generator().manual_seed(0)).to(example))
        with torch.no_grad():
            captured, _ = ctx.layer_pass(names, grads=False)
        grids = {name: ctx.grid(name, captured[name]) for name in names}
        tokens = [name for name in names if grids[name].kind == "tokens" and grids[name].prefix > 0]
        if not tokens:
            return names
        captured, gradients = ctx.layer_pass(tokens)
        dead = {name for name in tokens if not grids[name].maps(gradients[name]).any()
                and gradients[name][:, : grids[name].prefix].any()}
        return [name for name in names if name not in dead]

    def default_layer(self) -> str:
        layers = self.layers()
        if not layers:
            raise ValueError("the model has no layer with spatial output; pass layer= explicitly")
        return layers[-1]

    # -- predictions -------------------------------------------------------------------------
    def logits(self, x: ImageLike) -> torch.Tensor:
        """Raw model output (logits) for one input, as a 1-D CPU tensor."""
        ctx = self.context(self.prepare(x))
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
        ctx = self.context(batch, target, layer, progress, should_stop)
        with preserved(self.model):
            attribution = spec.fn(ctx, **bound)
            target_index, score = ctx.target, ctx.score
        return explanation(spec, ctx, attribution, bound, target_index, score)

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
        return layerwise.explain_layers(
            self, x, method, target, layers, progress=progress, should_stop=should_stop, **params
        )

    def layer_session(
        self, x: ImageLike, layers: Sequence[str] | None = None, *, cache: int = 8
    ) -> layerwise.LayerSession:
        """A ``LayerSession``: one forward of ``x`` kept, so ``session.explain(method, target)``
        answers every layer with one backward per new target (close it, or use ``with``)."""
        return layerwise.LayerSession(self, x, layers, cache=cache)

    def occlude(
        self, x: ImageLike, mask: Any, baseline: float | str = "blur", topk: int = 5
    ) -> list[Prediction]:
        """Predictions (as ``predict`` gives them) for ``x`` with the ``mask``ed pixels replaced
        by ``baseline``; one forward, cheap enough for every brush stroke."""
        return occlude_masked(self, x, mask, baseline=baseline, topk=topk)

    def context(
        self,
        batch: torch.Tensor,
        target: int | str | None = None,
        layer: str | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Context:
        """What a method sees for one call on the model-ready ``batch`` (see ``prepare``)."""
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
            labels=self.labels,
            prefix=self.prefix_tokens,
            layouts=self.layout,
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
