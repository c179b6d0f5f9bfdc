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
import torch.nn.functional as F

from .. import render
from ..explanation import Explanation
from .context import Context
from .display import to_display
from .registry import Method


def upsample(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (h, w) map resized bilinearly to ``size``."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    return F.interpolate(values[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def default_map(spec: Method, attribution: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Display map for the common shapes: pixel (C,H,W) and layer (h,w) attributions."""
    if spec.space == "pixel":
        if spec.signed:
            return render.normalize_signed(attribution.sum(0), percentile=99.5)
        return render.normalize_unsigned(attribution.abs().amax(0), percentile=99.5)
    if attribution.ndim == 2:
        return render.normalize_minmax(upsample(attribution, size))
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
        map01 = np.asarray(spec.to_map(attribution, ctx, params), dtype=np.float32)
    else:  # needs only the attribution: made when first read
        map01 = functools.partial(default_map, spec, attribution, tuple(ctx.x.shape[-2:]))
    return Explanation(
        attribution=attribution,
        map_source=map01,
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
