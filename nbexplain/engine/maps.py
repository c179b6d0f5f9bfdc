"""A map's values and its colour scale: what each colour stands for, in the method's own units.

A method's raw attribution becomes ``MapValues``: a 2-D array (at the method's resolution —
a layer's grid, or the input's pixels) and the raw values at the two ends of the colour scale.
The display map (``normalized``) and every colour bar, caption and hover readout come from it,
so they always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import render

PERCENTILE = 99.5  # gradient maps are dominated by a few pixels: the scale ends at this percentile


def upsample(values: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A (h, w) map resized bilinearly to ``size``."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    return F.interpolate(values[None, None].float(), size=tuple(size), mode="bilinear",
                         align_corners=False)[0, 0]


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.ascontiguousarray(values, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class MapValues:
    """``values`` (h, w) float32 in ``unit``; ``low`` and ``high`` are the values at the first and
    last colour (a signed scale is symmetric, zero in the middle); values beyond are clipped."""

    values: np.ndarray
    low: float
    high: float
    signed: bool = False
    unit: str = ""

    def normalized(self, size: Sequence[int] | None = None) -> np.ndarray:
        """The values on the colour scale, in [0, 1], resized bilinearly to ``size`` first."""
        values = self.values
        if size is not None and tuple(values.shape) != tuple(size):
            values = upsample(torch.from_numpy(values), size).numpy()
        return render.on_scale(values, self.low, self.high, self.signed)

    def with_unit(self, unit: str) -> MapValues:
        return MapValues(self.values, self.low, self.high, self.signed, unit)


Array = np.ndarray | torch.Tensor


def signed_scale(values: Array, percentile: float = PERCENTILE, unit: str = "") -> MapValues:
    """Zero in the middle; the ends at ± the ``percentile`` of |values|."""
    values = _numpy(values)
    return MapValues(values, *render.signed_range(values, percentile), signed=True, unit=unit)


def unsigned_scale(values: Array, percentile: float = PERCENTILE, unit: str = "") -> MapValues:
    """From the minimum (or 0) to the ``percentile`` above it."""
    values = _numpy(values)
    return MapValues(values, *render.unsigned_range(values, percentile), unit=unit)


def minmax_scale(values: Array, size: Sequence[int] | None = None, unit: str = "") -> MapValues:
    """From the minimum to the maximum of the values as shown at ``size`` (the input's)."""
    values = _numpy(values)
    shown = values if size is None else upsample(torch.from_numpy(values), size).numpy()
    return MapValues(values, *render.minmax_range(shown), unit=unit)
