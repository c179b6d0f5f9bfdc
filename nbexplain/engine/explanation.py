"""The result of one explanation: raw attribution, the map's values and scale, what was explained."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import render
from .maps import MapValues


@dataclass(frozen=True, eq=False)
class Explanation:
    """``attribution`` is the method's raw result (float32, CPU). ``values`` are the 2-D values
    the map shows, in the method's ``unit``, at its own resolution, with the colour scale's ends
    (``scale``); ``map`` is them on that scale, (H, W) in [0, 1] at input resolution; ``signed``
    maps put zero at 0.5. ``caption`` says what the map is; ``figure()`` draws it with a colour bar.

    ``values_source`` is the values, or a function that makes them on first use:
    ``explain_layers`` returns a result per layer, and the widget shows the method's own
    low-resolution map, so full-size maps nobody reads are never made.
    """

    attribution: torch.Tensor
    values_source: MapValues | Callable[[], MapValues] = field(repr=False)
    target: int
    label: str
    score: float
    method: str
    layer: str | None
    params: dict[str, Any]
    image: np.ndarray = field(repr=False)
    signed: bool = False

    @property
    def values(self) -> MapValues:
        source = self.values_source
        if callable(source):
            source = source()
            object.__setattr__(self, "values_source", source)  # made once; frozen otherwise
        return source

    @property
    def map(self) -> np.ndarray:
        made = self.__dict__.get("_map")
        if made is None:
            made = self.values.normalized(self.image.shape[:2])
            object.__setattr__(self, "_map", made)
        return made

    @property
    def scale(self) -> tuple[float, float]:
        """The raw values at the first and last colour of the map's scale."""
        return self.values.low, self.values.high

    @property
    def caption(self) -> str:
        """Method, class, layer, and what the colours mean, in one line."""
        where = f" · layer {self.layer}" if self.layer else ""
        low, high = self.scale
        colours = "signed: red +, blue −, photo at 0" if self.signed else "unsigned"
        unit = f"{self.values.unit} " if self.values.unit else ""
        return (f"{self.method} · class {self.target} {self.label!r} (logit {self.score:.3g}){where} · "
                f"{colours} · {unit}from {low:.3g} to {high:.3g}")

    def overlay(self, cmap: str | None = None, alpha: float = 0.5) -> Image.Image:
        """The map blended over the model's input picture."""
        return render.overlay(self.image, self.map, cmap=self._cmap(cmap), alpha=alpha, signed=self.signed)

    def heatmap(self, cmap: str | None = None) -> Image.Image:
        """The map alone, colorized."""
        return Image.fromarray(render.colorize(self.map, self._cmap(cmap)))

    def figure(self, cmap: str | None = None, alpha: float = 0.5) -> Image.Image:
        """The overlay with its caption and a colour bar labelled in raw values."""
        return render.figure(self.overlay(cmap, alpha), self._cmap(cmap), self.scale, self.caption,
                             signed=self.signed)

    def _cmap(self, cmap: str | None) -> str:
        return cmap or ("bwr" if self.signed else "jet")

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        where = f", layer={self.layer!r}" if self.layer else ""
        return (
            f"Explanation(method={self.method!r}{where}, target={self.target} ({self.label!r}), "
            f"score={self.score:.4g}, attribution={tuple(self.attribution.shape)})"
        )
