"""The ``lrp`` method: layer-wise relevance propagation with one of zennit's composites."""

from __future__ import annotations

import torch

from ...engine.context import Context
from ...engine.display import find_normalization
from ...engine.registry import Param, register
from .composites import COMPOSITES, Settings
from .propagate import relevance


def box_bounds(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest and highest possible input values for the z^B rule: a [0, 1] image through the
    preprocessing's normalization when its mean/std are known (``ctx.preprocess``, where the
    Explainer provides it), per channel; else the input's own minimum and maximum."""
    norm = find_normalization(getattr(ctx, "preprocess", None))
    x = ctx.x
    if norm is not None and len(norm[0]) in (1, x.shape[1]):
        mean = torch.tensor(norm[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(norm[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return -mean / std, (1 - mean) / std
    return x.min(), x.max()


@register(
    "lrp", family="relevance", space="pixel", signed=True, unit="relevance",
    summary="Layer-wise relevance propagation (Bach et al. 2015): the target logit handed back layer "
            "by layer to the pixels, with a composite of rules (biases absorb some).",
    params=(
        Param("composite", str, "epsilon_plus_flat",
              "rules per layer: epsilon_plus_flat (flat first layer, z+ convs, epsilon dense), "
              "epsilon_gamma_box (z^B first conv with bounds from the preprocessing's mean/std, else "
              "the input's min/max; gamma convs), epsilon_alpha2_beta1, epsilon_plus",
              choices=tuple(COMPOSITES)),
        Param("epsilon", float, 1e-6, "stabilizer of the epsilon rule on dense layers (larger: "
              "less noise, relevance absorbed)", range=(0.0, 100.0)),
        Param("gamma", float, 0.25, "weight of positive contributions in the gamma rule "
              "(epsilon_gamma_box only)", range=(0.0, 100.0)),
    ),
)
def lrp(ctx: Context, composite: str, epsilon: float, gamma: float) -> torch.Tensor:
    low, high = box_bounds(ctx)
    rules = COMPOSITES[composite](Settings(epsilon, gamma, low, high))

    def target(logits: torch.Tensor) -> int:
        ctx.observe_clean(logits[0])
        return ctx.target

    result, _ = relevance(ctx.model, ctx.x, rules, ctx.logits, target)
    return result[0]
