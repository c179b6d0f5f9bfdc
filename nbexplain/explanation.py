"""The result of one explanation: raw attribution, display map, and what was explained."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import render


@dataclass(frozen=True, eq=False)
class Explanation:
    """``attribution`` is the method's raw result (float32, CPU); ``map`` is (H, W) in [0, 1] at
    input resolution for display; ``signed`` maps put zero at 0.5.

    ``map_source`` is the map, or a function that makes it on first use: ``explain_layers``
    returns a result per layer, and the widget shows the method's own low-resolution map, so
    full-size maps nobody reads are never made.
    """

    attribution: torch.Tensor
    map_source: np.ndarray | Callable[[], np.ndarray] = field(repr=False)
    target: int
    label: str
    score: float
    method: str
    layer: str | None
    params: dict[str, Any]
    image: np.ndarray = field(repr=False)
    signed: bool = False

    @property
    def map(self) -> np.ndarray:
        source = self.map_source
        if callable(source):
            source = np.asarray(source(), dtype=np.float32)
            object.__setattr__(self, "map_source", source)  # made once; frozen otherwise
        return source

    def overlay(self, cmap: str | None = None, alpha: float = 0.5) -> Image.Image:
        """The map blended over the model's input picture."""
        cmap = cmap or ("bwr" if self.signed else "jet")
        return render.overlay(self.image, self.map, cmap=cmap, alpha=alpha)

    def heatmap(self, cmap: str | None = None) -> Image.Image:
        """The map alone, colorized."""
        cmap = cmap or ("bwr" if self.signed else "jet")
        return Image.fromarray(render.colorize(self.map, cmap))

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.overlay().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        where = f", layer={self.layer!r}" if self.layer else ""
        return (
            f"Explanation(method={self.method!r}{where}, target={self.target} ({self.label!r}), "
            f"score={self.score:.4g}, attribution={tuple(self.attribution.shape)})"
        )
