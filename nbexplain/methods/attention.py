"""Transformer explanations from attention: ``attention``, ``rollout``, ``grad_rollout``.

Each reads the class token's row of the attention probabilities over the patch tokens, on the
patch grid: one block and head (``attention``); the heads' mean per block, ½(A + I) with rows
renormalized, multiplied from the first block to the last (``rollout``, Abnar & Zuidema 2020);
or R ← R + mean_heads((∇A ⊙ A)⁺)·R from R = I (``grad_rollout``, Chefer et al. 2021). The
probabilities are captured even where the model calls a fused kernel (``engine/attention.py``).
They apply to models with a class token (ViT, DeiT); any other raises ``UnsupportedModel``.
"""

from __future__ import annotations

import torch

from ..engine.attention import AttentionCapture
from ..engine.context import Context
from ..engine.grid import Grid, find_grid
from ..engine.maps import MapValues, minmax_scale
from ..engine.registry import Param, register
from .lrp.canonize import UnsupportedModel

FAMILY = "attention"


def attention_maps(ctx: Context, grad: bool = False) -> tuple[list[torch.Tensor], torch.Tensor, Grid]:
    """Every attention call's probabilities (N, heads, L, L), the logits, and the token grid."""
    capture = AttentionCapture(grad=grad)
    with torch.set_grad_enabled(grad), capture:
        logits = ctx.logits(ctx.x.detach().requires_grad_(grad))  # A depends on x even if weights are frozen
    ctx.observe_clean(logits[0])
    if not capture.maps:
        raise UnsupportedModel(
            f"{type(ctx.model).__name__} makes no attention call nbexplain captures (F.scaled_dot_product_"
            "attention or nn.MultiheadAttention): attention maps need a ViT-style transformer")
    length = capture.maps[-1].shape[-1]
    grid = find_grid((1, length, 2), ctx.x.shape[-2:], prefix=ctx.prefix)
    if grid is None or grid.kind != "tokens" or grid.prefix < 1:
        raise UnsupportedModel(
            f"{type(ctx.model).__name__}'s attention over {length} tokens has no class token before a "
            "patch grid (as a ViT's): attention maps read the class token's row")
    return capture.maps, logits, grid


def _class_row(matrix: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The class token's row over the patches, on the patch grid: (h, w)."""
    return matrix[0, grid.prefix:].reshape(grid.size).float().cpu()


def _block(maps: list[torch.Tensor], block: int, where: str) -> torch.Tensor:
    if not -len(maps) <= block < len(maps):
        raise ValueError(f"{where}: parameter 'block' must be in [-{len(maps)}, {len(maps) - 1}] "
                         f"(the model runs {len(maps)} attention blocks); got {block}")
    return maps[block]


def _map_values(attribution: torch.Tensor, ctx: Context, params: dict) -> MapValues:
    return minmax_scale(attribution, tuple(ctx.x.shape[-2:]))


@register(
    "attention", family=FAMILY, space="pixel", unit="attention", to_map=_map_values,
    summary="The class token's attention over the patches, at one block and head (or the heads' mean).",
    params=(Param("block", int, -1, "attention block (from 0; -1: the last)", range=(-64, 63)),
            Param("head", int, -1, "attention head (-1: the mean over heads)", range=(-1, 1023))),
)
def attention(ctx: Context, block: int, head: int) -> torch.Tensor:
    with torch.no_grad():
        maps, _, grid = attention_maps(ctx)
        probabilities = _block(maps, block, "attention")[0]
        if head >= probabilities.shape[0]:
            raise ValueError(f"attention: parameter 'head' must be -1 (the mean) or in "
                             f"[0, {probabilities.shape[0] - 1}]; got {head}")
        matrix = probabilities.mean(0) if head == -1 else probabilities[head]
        return _class_row(matrix, grid)


def rollout_matrix(maps: list[torch.Tensor]) -> torch.Tensor:
    """Abnar & Zuidema's rollout: per block Â = ½(mean_heads A + I), rows renormalized; the
    product Â_n ⋯ Â_1 (row i: how much token i's output draws on each input token)."""
    result = None
    for probabilities in maps:
        mean = probabilities[0].double().mean(0)
        mixed = 0.5 * (mean + torch.eye(mean.shape[0], dtype=mean.dtype, device=mean.device))
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


@register(
    "rollout", family=FAMILY, space="pixel", unit="rolled-out attention", to_map=_map_values,
    summary="Attention rollout (Abnar & Zuidema 2020): the heads' mean attention with the residual, "
            "multiplied through the blocks; the class token's row.",
)
def rollout(ctx: Context) -> torch.Tensor:
    with torch.no_grad():
        maps, _, grid = attention_maps(ctx)
        return _class_row(rollout_matrix(maps), grid)


def gradient_rollout_matrix(maps: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """Chefer et al. 2021: R = I, then per block R ← R + mean_heads((∇A ⊙ A)⁺) · R."""
    length = maps[0].shape[-1]
    result = torch.eye(length, dtype=torch.float64, device=maps[0].device)
    for probabilities, gradient in zip(maps, gradients, strict=True):
        weighted = (gradient[0].double() * probabilities[0].double()).clamp(min=0).mean(0)
        result = result + weighted @ result
    return result


@register(
    "grad_rollout", family=FAMILY, space="pixel", unit="relevance (gradient-weighted attention)",
    to_map=_map_values,
    summary="Gradient-weighted attention rollout (Chefer et al. 2021): the class's gradient times "
            "attention, positive part, accumulated through the blocks.",
)
def grad_rollout(ctx: Context) -> torch.Tensor:
    maps, logits, grid = attention_maps(ctx, grad=True)
    held = [probabilities for probabilities in maps if probabilities.requires_grad]
    if len(held) != len(maps):
        raise UnsupportedModel("the attention does not depend on the input through autograd; "
                               "grad_rollout needs gradients")
    gradients = torch.autograd.grad(logits[0, ctx.target], maps, allow_unused=True)
    gradients = [torch.zeros_like(a) if g is None else g for a, g in zip(maps, gradients, strict=True)]
    return _class_row(gradient_rollout_matrix(maps, gradients), grid)
