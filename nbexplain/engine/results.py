"""From a method's raw attribution to an ``Explanation``: the display map and what was explained.

One place for ``Explainer.explain``, ``explain_layers`` and ``LayerSession`` alike, so a map
made by any of them is the same map.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .context import Context
from .display import to_display
from .explanation import Explanation
from .maps import MapValues, minmax_scale, signed_scale, unsigned_scale
from .registry import Method


def default_values(spec: Method, attribution: torch.Tensor, size: tuple[int, int]) -> MapValues:
    """Map values for the common shapes: pixel (C,H,W) attributions (summed over colour channels
    when signed, else the largest magnitude) and layer (h,w) attributions."""
    if spec.space == "pixel":
        if spec.signed:
            return signed_scale(attribution.sum(0), unit=spec.unit)
        return unsigned_scale(attribution.abs().amax(0), unit=spec.unit)
    if attribution.ndim == 2:
        return minmax_scale(attribution, size, unit=spec.unit)
    raise ValueError(f"method {spec.name!r} needs a to_map for attribution shape {tuple(attribution.shape)}")


def explanation(
    spec: Method,
    ctx: Context,
    attribution: torch.Tensor,
    params: dict[str, Any],
    target: int,
    score: float,
    layer: str | None = None,
    image: np.ndarray | None = None,
) -> Explanation:
    """``image``: the display picture of ``ctx.x`` when already made (shared by many results)."""
    attribution = attribution.detach().float().cpu()
    if spec.to_map is not None:
        values = spec.to_map(attribution, ctx, params)
        values = values if values.unit else values.with_unit(spec.unit)
    else:  # needs only the attribution: made when first read
        values = functools.partial(default_values, spec, attribution, tuple(ctx.x.shape[-2:]))
    return Explanation(
        attribution=attribution,
        values_source=values,
        target=target,
        label=ctx.labels.name(target) if ctx.labels is not None else str(target),
        score=score,
        method=spec.name,
        layer=layer if layer is not None else ctx.layer,
        params=dict(params),
        image=to_display(ctx.x, ctx.preprocess) if image is None else image,
        signed=spec.signed,
    )


def layer_explanations(
    spec: Method,
    ctx: Context,
    attributions: Mapping[str, torch.Tensor],
    params: dict[str, Any],
    target: int,
    score: float,
) -> dict[str, Explanation]:
    """Explanations from raw attributions by layer; they share one read-only display image."""
    image = to_display(ctx.x, ctx.preprocess)
    image.flags.writeable = False
    return {
        name: explanation(spec, ctx, attribution, params, target, score, name, image)
        for name, attribution in attributions.items()
    }
