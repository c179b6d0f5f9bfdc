"""Unit ablation (Zhou et al. 2018, "Revisiting the importance of individual units in CNNs via
ablation"): zero one channel of a layer at a time and measure how much the target logit drops.

All channels are ablated in batches: a hook on the layer turns its output into a batch whose row
i has channel i zeroed. When the model allows it, the layers before run once per batch on the
single input and the hook expands their output to the batch, so only the rest of the network runs
per channel (the expansion is checked against the unablated score, else the input is repeated).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..engine.context import Context
from ..engine.grid import Grid
from ..engine.hooks import HookHandles, capture, find_module, primary, with_primary
from ..engine.maps import MapValues, minmax_scale
from ..engine.outputs import select_logits
from ..engine.registry import Param, register

_ACTIVATION, _GRID = "ablation.activation", "ablation.grid"


@contextmanager
def zeroed(
    model: torch.nn.Module, layer: str, channels: torch.Tensor, grid: Grid | None = None
) -> Iterator[None]:
    """While the body runs, ``layer``'s output becomes a batch of ``len(channels)`` rows where row i
    has channel ``channels[i]`` zeroed (-1: none). A batch-1 output is expanded to the batch.
    ``grid``: where the channels are in the output (default: dimension 1)."""
    module = find_module(model, layer)

    def hook(module, inputs, whole):
        output = primary(whole)
        if output is None or output.ndim < 2:
            raise ValueError(f"ablation: layer {layer!r} must return a tensor (N, C, ...) to ablate channels")
        if output.shape[0] not in (1, len(channels)):
            raise ValueError(f"ablation: layer {layer!r} returned a batch of {output.shape[0]}, "
                             f"expected 1 or {len(channels)}")
        count = grid.channels(output) if grid is not None else output.shape[1]
        keep = torch.ones((len(channels), count), dtype=output.dtype, device=output.device)
        rows = torch.nonzero(channels >= 0).flatten()
        keep[rows, channels[rows]] = 0
        if grid is not None:
            return with_primary(whole, output * grid.channel_view(keep, output))
        return with_primary(whole, output * keep.view(*keep.shape, *[1] * (output.ndim - 2)))

    with HookHandles() as hooks:
        hooks.forward(module, hook)
        yield


def _scores(ctx: Context, channels: torch.Tensor, expand: bool) -> torch.Tensor:
    """The target logit with each of ``channels`` zeroed (one row each)."""
    xs = ctx.x if expand else ctx.x.repeat(len(channels), *[1] * (ctx.x.ndim - 1))
    with zeroed(ctx.model, ctx.layer, channels.to(ctx.x.device), ctx.state[_GRID]):
        logits = select_logits(ctx.model(xs), ctx.output, len(channels))
    return logits[:, ctx.target].float().cpu()


@register(
    "ablation", family="perturbation", space="unit", unit="activation × logit drop",
    summary="Drop of the target logit when each channel of the layer is zeroed (Zhou et al. 2018); "
            "the map combines the activations of the most important channels.",
    params=(Param("top", int, 5, "how many of the most important channels the map combines",
                  range=(1, 4096)),),
    to_map=lambda attribution, ctx, params: ablation_map(attribution, ctx, params["top"]),
)
def ablation(ctx: Context, top: int) -> torch.Tensor:
    with torch.inference_mode():
        with capture(ctx.model, [ctx.layer], track_grad=False) as captured:
            logits = ctx.logits(ctx.x)
        ctx.observe_clean(logits[0])
        activation = captured[ctx.layer]
        grid = ctx.state[_GRID] = ctx.grid(ctx.layer, activation)
        ctx.state[_ACTIVATION] = ctx.feature_map(ctx.layer, activation).cpu()
        count, score = grid.channels(activation), ctx.score
        if _expansion_works(ctx, score):
            # Only the layers after run per row: size the batches by the layer's output, not the input.
            rows = max(1, ctx.batch_elements // activation[0].numel())
            parts, expand = [slice(i, min(count, i + rows)) for i in range(0, count, rows)], True
        else:
            parts, expand = ctx.chunks(count), False
        drops = torch.empty(count)
        for part in parts:
            drops[part] = score - _scores(ctx, torch.arange(part.start, part.stop), expand)
            ctx.report(part.stop / count)
    return drops


def _expansion_works(ctx: Context, score: float) -> bool:
    """Whether the layers after ``ctx.layer`` give the clean score when its batch-1 output is
    expanded to a batch. They do unless they mix batch rows or shapes (e.g. concatenate with a
    tensor from before the layer); then the whole input is repeated instead."""
    try:
        scores = _scores(ctx, torch.tensor([-1, 0]), expand=True)
    except (RuntimeError, ValueError):  # shape errors in the layers after, or logits of the wrong batch
        return False
    return abs(float(scores[0]) - score) <= 1e-4 * max(1.0, abs(score))


def ablation_map(attribution: torch.Tensor, ctx: Context, top: int) -> MapValues:
    """The clean activations of the ``top`` channels with the largest drops, weighted by their
    (positive) drops; scaled min to max as shown at the input's size."""
    activation = ctx.state[_ACTIVATION]
    if activation.ndim != 3:
        raise ValueError(
            f"ablation: layer {ctx.layer!r} has output shape {(1, *activation.shape)}; a map needs a "
            "spatial layer (N, C, H, W) (see Explainer.layers())"
        )
    drops, channels = attribution.topk(min(top, attribution.numel()))
    combined = (drops.clamp(min=0).view(-1, 1, 1) * activation[channels]).sum(0)
    return minmax_scale(combined, tuple(ctx.x.shape[-2:]))
