"""What a method sees during one explanation: the model, the input, the target, the layer.

Methods are small functions ``fn(ctx, **params)``; the shared work — running the model,
picking the logits, resolving the target, taking gradients with hooks attached — lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from .grid import Grid, LayoutSpec, find_grid
from .hooks import Captured, capture
from .inputs import input_mismatch, match_model_dtype
from .layout import conv_profile, in_layout, pays
from .outputs import OutputSpec, select_logits
from .targets import Labels

T = TypeVar("T")

Progress = Callable[[float, "torch.Tensor | None"], None]


class Cancelled(Exception):
    """Raised inside a method when the caller asked it to stop."""


@dataclass
class Context:
    model: nn.Module
    x: torch.Tensor
    output: OutputSpec = None
    requested_target: int | None = None
    layer: str | None = None
    progress: Progress | None = None
    should_stop: Callable[[], bool] | None = None
    preprocess: Any = None
    labels: Labels = field(default_factory=lambda: Labels(None))
    prefix: int | None = None  # the model's leading tokens (timm's num_prefix_tokens), if declared
    layouts: dict[str, LayoutSpec] = field(default_factory=dict)  # per-layer overrides (grid.py)
    batch_elements: int = 32 * 3 * 224 * 224
    # per gradient pass; None: 8 images of 3×224×224 on CPU (faster there than 32 at once),
    # else batch_elements
    grad_batch_elements: int | None = None
    clean_logits: torch.Tensor | None = field(default=None, repr=False)
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    classes: int | None = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("progress", "should_stop"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a callable or None; got {type(value).__name__}")
        self.x = match_model_dtype(self.x, self.model)

    # -- running the model -------------------------------------------------------------------
    def logits(self, xs: torch.Tensor) -> torch.Tensor:
        """The model's logits ``(N, classes)`` for the batch ``xs``."""
        try:
            result = self.model(xs)
        except RuntimeError as error:
            problem = input_mismatch(self.model, xs)
            if problem is None:
                raise
            raise ValueError(problem) from error
        logits = select_logits(result, self.output, xs.shape[0])
        self.classes = logits.shape[1]
        return logits

    def observe_clean(self, logits: torch.Tensor) -> None:
        """Record logits of the unmodified input (row of a batch), so no extra forward is needed."""
        if self.clean_logits is None:
            self.clean_logits = logits.detach().reshape(1, -1).float()

    def clean(self) -> torch.Tensor:
        """Logits of the unmodified input (computed once, without gradients)."""
        if self.clean_logits is None:
            with torch.no_grad():
                self.observe_clean(self.logits(self.x))
        return self.clean_logits

    @property
    def target(self) -> int:
        """The class explained: the requested one, else the top-1 class of the input."""
        if self.requested_target is None:
            self.requested_target = int(self.clean()[0].argmax())
        if self.classes is not None and not 0 <= self.requested_target < self.classes:
            raise ValueError(
                f"target={self.requested_target} is out of range; valid: 0..{self.classes - 1} "
                f"(the model has {self.classes} classes)"
            )
        return self.requested_target

    @property
    def score(self) -> float:
        return float(self.clean()[0, self.target])

    def chunks(self, count: int, elements: int | None = None, *, even: bool = False) -> Iterable[slice]:
        """Slices of ``range(count)`` sized so a batch stays within the memory budget
        (``elements`` input values per batch, default ``batch_elements``); ``even``: as few
        slices, of near-equal sizes (25 at 8 a batch: 7, 7, 7, 4 rather than 8, 8, 8, 1)."""
        size = max(1, (elements or self.batch_elements) // max(1, self.x[0].numel()))
        if even:
            parts = -(-count // size)
            size = -(-count // parts) if parts else size
        for start in range(0, count, size):
            yield slice(start, min(count, start + size))

    def report(self, fraction: float, partial: torch.Tensor | None = None) -> None:
        """Tell the caller how far along we are; stop if it asked us to."""
        if self.should_stop is not None and self.should_stop():
            raise Cancelled()
        if self.progress is not None:
            self.progress(fraction, partial)

    # -- layers as maps ----------------------------------------------------------------------
    def grid(self, name: str, output: torch.Tensor) -> Grid:
        """How layer ``name``'s ``output`` lies on the image grid; a clear error if it does not."""
        found = find_grid(output.shape, self.x.shape[-2:], prefix=self.prefix, layout=self.layouts.get(name))
        if found is None:
            raise ValueError(
                f"layer {name!r} outputs shape {tuple(output.shape)}, which is no spatial map of the "
                f"{self.x.shape[-2]}×{self.x.shape[-1]} image: not (N, C, H, W), (N, H, W, C) or patch "
                "tokens (N, L, D) — pick one of Explainer.layers(), or say its layout with "
                "Explainer(layout={layer: ...})"
            )
        return found

    def feature_map(self, name: str, output: torch.Tensor) -> torch.Tensor:
        """Row 0 of layer ``name``'s ``output`` (or of a gradient with respect to it) as
        ``(C, h, w)`` float32, contiguous, whatever the layer's layout."""
        return self.grid(name, output).maps(output)[0].detach().float().contiguous()

    # -- gradients ---------------------------------------------------------------------------
    def input_gradients(
        self, xs: torch.Tensor, *, clean_row: int | None = None, rule: Any = None
    ) -> torch.Tensor:
        """∂y_target/∂x for every image of the batch ``xs``, chunked to bound memory.

        ``clean_row``: the row of ``xs`` that is the unmodified input, so its logits give the
        target and score for free. ``rule``: a context (e.g. ``RectifierRule``) active in both
        the forward and the backward. Progress is reported (and a stop honoured) after each chunk.
        """
        grads = []
        budget = self.grad_batch_elements
        if budget is None:
            budget = 8 * 3 * 224 * 224 if xs.device.type == "cpu" else self.batch_elements
        for part in self.chunks(xs.shape[0], budget, even=True):

            def gradient(batch: torch.Tensor, part: slice = part) -> torch.Tensor:
                batch = batch.detach().requires_grad_(True)
                with torch.enable_grad(), rule if rule is not None else nullcontext():
                    logits = self.logits(batch)
                    if not logits.requires_grad:
                        raise ValueError(
                            "the logits do not depend on the input through autograd, so gradients "
                            "cannot be taken: the model detaches them or runs under torch.no_grad(), "
                            "or output= picks a tensor that is not the logits"
                        )
                    if clean_row is not None and part.start <= clean_row < part.stop:
                        self.observe_clean(logits[clean_row - part.start])
                    return torch.autograd.grad(logits[:, self.target].sum(), batch)[0]

            grads.append(self.in_layout(xs[part], gradient))
            self.report(part.stop / xs.shape[0])
        return torch.cat(grads).contiguous()

    def in_layout(self, batch: torch.Tensor, run: Callable[[torch.Tensor], T]) -> T:
        """``run(batch)``, the batch in channels-last order where that measured faster (see
        ``layout``) and the model accepts it."""
        if "convs" not in self._memo:
            self._memo["convs"] = conv_profile(self.model)
        return in_layout(self.model, batch, run, pays(self._memo["convs"], batch))

    def layer_pass(
        self, layers: Iterable[str], xs: torch.Tensor | None = None, *, grads: bool = True
    ) -> tuple[Captured, dict[str, torch.Tensor]]:
        """One forward (and, with ``grads``, one backward) capturing ``layers``.

        Returns the captured outputs (last call of each module) and ∂y/∂output per layer, in
        the memory order ``in_layout`` chose for the pass.
        """
        clean = xs is None
        layers = list(layers)

        def run(xs: torch.Tensor) -> tuple[Captured, dict[str, torch.Tensor]]:
            with capture(self.model, layers, track_grad=grads) as captured, torch.set_grad_enabled(grads):
                logits = self.logits(xs)
                if clean:
                    self.observe_clean(logits[0])
                if not grads:
                    return captured, {}
                outputs = [captured[name] for name in layers]
                gradients = torch.autograd.grad(logits[:, self.target].sum(), outputs, allow_unused=True)
            result = {}
            for name, out, grad in zip(layers, outputs, gradients, strict=True):
                result[name] = torch.zeros_like(out) if grad is None else grad
            return captured, result

        return self.in_layout(self.x if clean else xs, run)
