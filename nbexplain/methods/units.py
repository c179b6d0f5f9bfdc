"""The units of a layer: its feature maps (``activations``) and a convolution's filters (``filters``).

Neither needs gradients: ``activations`` is one forward without autograd, ``filters`` reads the
weights (the explainer's target and score cost one forward without autograd).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import montage
from ..engine.context import Context
from ..engine.hooks import find_module
from ..engine.layers import Trace
from ..engine.maps import MapValues, minmax_scale
from ..engine.registry import Param, register

FAMILY = "units"


# -- activations -------------------------------------------------------------------------------
def _check_channel(channel: int, channels: int, layer: str) -> None:
    if channel != -1 and not 0 <= channel < channels:
        raise ValueError(
            f"activations: parameter 'channel' must be -1 (the mean over channels) or in "
            f"[0, {channels - 1}] for layer {layer!r}, which has {channels} channels; got {channel}"
        )


def activations_layerwise(ctx: Context, layers: list[str], channel: int) -> dict[str, torch.Tensor]:
    """The ``(K, h, w)`` feature maps of every one of ``layers``, from one forward."""
    layers = list(dict.fromkeys(layers))
    captured, _ = ctx.layer_pass(layers, grads=False)
    maps = {}
    for name in layers:
        maps[name] = ctx.feature_map(name, captured[name])
        _check_channel(channel, maps[name].shape[0], name)
    return maps


def activations_map(attribution: torch.Tensor, ctx: Context, params: dict) -> MapValues:
    """The chosen channel (or the channel mean), scaled min to max as shown at the input's size."""
    channel = params["channel"]
    values = attribution.mean(0) if channel == -1 else attribution[channel]
    return minmax_scale(values, tuple(ctx.x.shape[-2:]))


@register(
    "activations", family=FAMILY, space="layer", unit="activation",
    summary="The layer's feature maps: one channel, or the mean over channels.",
    params=(Param("channel", int, -1, "feature map shown; -1: the mean over channels", range=(-1, None)),),
    to_map=activations_map,
    layerwise=activations_layerwise,
)
def activations(ctx: Context, channel: int) -> torch.Tensor:
    """The layer's output ``(K, h, w)`` for the input."""
    return activations_layerwise(ctx, [ctx.layer], channel)[ctx.layer]


# -- filters -----------------------------------------------------------------------------------
def conv_layer(trace: Trace, layer: str) -> str:
    """The ``Conv2d`` whose filters stand for ``layer``, by the traced forward: the layer itself
    if it is one; else the first ``Conv2d`` run inside it (a block); else the last ``Conv2d``
    run before it (the one whose output a norm, activation or pool ``layer`` takes)."""
    module = trace.modules[layer]
    if isinstance(module, nn.Conv2d):
        return layer
    call = trace.once(layer)
    if call is None:
        raise ValueError(f"filters: layer {layer!r} must run exactly once in the forward; it ran "
                         f"{len(trace.calls[layer])} times")
    ran = [(calls[0], name) for name, calls in trace.calls.items()
           if calls and isinstance(trace.modules[name], nn.Conv2d)]
    inside = [(c.start, name) for c, name in ran if call.start < c.start and c.end < call.end]
    before = [(c.end, name) for c, name in ran if c.end < call.start]
    if inside or before:
        return min(inside)[1] if inside else max(before)[1]
    convs = [name for _, name in sorted(ran, key=lambda item: item[0].start)]
    if not convs:
        raise ValueError("filters: the model runs no Conv2d layer")
    shown = convs[:8] + (["…"] if len(convs) > 8 else [])
    raise ValueError(
        f"filters: layer {layer!r} ({type(module).__name__}) runs no Conv2d and none runs before "
        f"it; pick a conv layer, e.g. {shown}"
    )


def filters_map(attribution: torch.Tensor, ctx: Context, params: dict) -> MapValues:
    """The filter montage in gray (0: the most negative weight, 1: the most positive), fitted
    into the input's size."""
    channel = params["input_channel"]
    picture = montage.filter_montage(attribution, input_channel=None if channel == -1 else channel)
    gray = picture.mean(2, dtype=np.float32) / 255
    return MapValues(montage.fit(gray, tuple(ctx.x.shape[-2:]), background=1.0), 0.0, 1.0)


@register(
    "filters", family=FAMILY, space="layer", unit="filter weight, gray",
    summary="A convolution's filters (weights); a block shows its first conv, a norm or "
            "activation the conv before it (Explanation.layer names the conv shown).",
    params=(Param("input_channel", int, -1, "input channel drawn in gray; -1: RGB for filters that "
                  "read 3 channels, else the mean over input channels", range=(-1, None)),),
    to_map=filters_map,
    picker=False,  # the Explorer shows filters in a montage panel of their own
)
def filters(ctx: Context, input_channel: int) -> torch.Tensor:
    """The conv's weight ``(out, in, kh, kw)``, a CPU copy. The forward that finds the conv in
    the order the model runs also gives the target and score."""
    trace = Trace(ctx.model, lambda: ctx.observe_clean(ctx.logits(ctx.x)[0]))
    name = conv_layer(trace, ctx.layer)
    weight = find_module(ctx.model, name).weight.detach().float().cpu().clone()
    if input_channel >= weight.shape[1]:
        raise ValueError(
            f"filters: parameter 'input_channel' must be -1 (the mean) or in [0, {weight.shape[1] - 1}] "
            f"for layer {name!r}, whose filters read {weight.shape[1]} channels; got {input_channel}"
        )
    ctx.layer = name  # the explanation reports the conv actually shown
    return weight
