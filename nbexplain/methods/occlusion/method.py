"""The ``occlusion`` method (Zeiler & Fergus 2014), computed coarse-to-fine.

Occlusion slides a ``patch`` × ``patch`` window over the image with step ``stride``, replaces
the window by a baseline and records how much the target logit drops. A pixel's attribution is
the mean drop over every window covering it (``windows``).

Speed: every perturbed image runs under ``torch.inference_mode`` in chunks sized from the input
(``Context.chunks``), and where the model traces with ``torch.fx`` only the part of each feature
map the window can reach is recomputed from the cached unoccluded activations (``runner``,
Krypton-style; exact). The coarse lattice comes first, so the first progress report already
carries a full (estimated) map that then refines.
"""

from __future__ import annotations

import torch

from ...engine.context import Context
from ...engine.maps import MapValues, signed_scale
from ...engine.perturb import BASELINE, baseline_image, check_baseline
from ...engine.registry import Param, register
from .evaluators import make_evaluator
from .windows import (
    check_geometry,
    coverage,
    estimate_scores,
    progressive_order,
    scores_to_map,
    window_starts,
)


def occlusion_map(
    ctx: Context, patch: int, stride: int, baseline: float | str, engine: str = "auto"
) -> torch.Tensor:
    """The ``(C, H, W)`` occlusion attribution of ``ctx.x`` (same value in every channel)."""
    x = ctx.x
    height, width = x.shape[-2:]
    check_geometry((height, width), patch, stride)
    baseline = check_baseline(baseline, "occlusion")
    ctx.report(0.0, None)
    with torch.inference_mode():
        base = baseline_image(x, baseline)
        starts_y = window_starts(height, patch, stride)
        starts_x = window_starts(width, patch, stride)
        nh, nw = len(starts_y), len(starts_x)
        order, first, lattices = progressive_order(nh, nw)
        chunks = [slice(0, first)] + [
            slice(first + part.start, first + part.stop) for part in ctx.chunks(len(order) - first)
        ]
        evaluate = make_evaluator(ctx, base, engine, chunks=len(chunks) - 1)
        clean = evaluate.clean_logits()
        ctx.classes = clean.shape[1]  # lets ctx.target check a requested class
        ctx.observe_clean(clean[0])
        target = ctx.target
        reference = clean[0, target]
        rows = coverage(height, patch, stride, x.dtype, x.device)
        cols = coverage(width, patch, stride, x.dtype, x.device)
        scores = torch.zeros((nh, nw), dtype=x.dtype, device=x.device)
        done = torch.zeros((nh, nw), dtype=torch.bool, device=x.device)
        for part in chunks:
            if part.stop <= part.start:
                continue
            positions = order[part]
            windows = [
                (starts_y[i], min(starts_y[i] + patch, height), starts_x[j], min(starts_x[j] + patch, width))
                for i, j in positions
            ]
            logits = evaluate(windows)
            index = torch.tensor(positions, device=x.device)
            scores[index[:, 0], index[:, 1]] = (reference - logits[:, target]).to(scores.dtype)
            done[index[:, 0], index[:, 1]] = True
            if part.stop < len(order):
                complete = max((lat for lat in lattices if lat[0] <= part.stop), key=lambda lat: lat[0])
                partial = scores_to_map(estimate_scores(scores, done, complete[1], complete[2]), rows, cols)
                ctx.report(part.stop / len(order), partial.expand(x.shape[1], -1, -1).clone())
        attribution = scores_to_map(scores, rows, cols).expand(x.shape[1], -1, -1).clone()
    ctx.report(1.0, attribution)
    return attribution


def occlusion_values(attribution: torch.Tensor, ctx: Context | None, params: dict) -> MapValues:
    """The logit drop per pixel: a window hides every colour channel at once, so the channels
    hold the same drop (summing them, as for gradients, would triple it). Reads no context."""
    return signed_scale(attribution[0], unit="logit drop when hidden")


@register(
    "occlusion", family="perturbation", space="pixel", signed=True, unit="logit drop when hidden",
    to_map=occlusion_values,
    summary="Logit drop when a sliding window is replaced by a baseline (Zeiler & Fergus 2014); "
            "coarse map first, then refined.",
    params=(
        Param("patch", int, 32, "window side in pixels", range=(1, None)),
        Param("stride", int, 16, "step between windows in pixels (at most patch)", range=(1, None)),
        BASELINE,
    ),
)
def occlusion(ctx: Context, patch: int, stride: int, baseline: float | str) -> torch.Tensor:
    return occlusion_map(ctx, patch, stride, baseline)
