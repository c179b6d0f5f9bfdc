"""CAM family: class activation maps at a layer, from its activations A and gradients g = ∂y/∂A.

Every map is ``(h, w)`` at the layer's own resolution (the explainer upsamples for display).
The gradient methods are one ``combine(activation, gradient)`` each — the formula of the paper
on one image's ``(K, h, w)`` tensors; the shared code below runs the pass (one forward, one
backward, for one layer or for many at once) and the registry gets both a single-layer ``fn``
and a ``layerwise`` function, plus ``combine`` (a declared field) so a kept graph can answer
another target with one backward (see ``engine/layerwise.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.context import Context
from ..engine.maps import MapValues, signed_scale
from ..engine.rectifiers import RectifierRule
from ..engine.registry import Param, register

FAMILY = "cam"
Combine = Callable[..., torch.Tensor]


# -- the formulas: (K, h, w) activation and gradient → (h, w) map ------------------------------
def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """Σ_k weights_k · A_k for (K,) weights and a (K, h, w) activation (one vector–matrix product)."""
    return (weights @ activation.reshape(activation.shape[0], -1)).reshape(activation.shape[1:])


def gradcam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ReLU(Σ_k α_k A_k), α_k the spatial mean of ∂y/∂A_k (Selvaraju et al. 2017)."""
    return weighted_sum(gradient.mean((1, 2)), activation).clamp(min=0)


GRADCAMPP_EPS = 1e-6  # in the denominator, as pytorch-grad-cam has it (see gradcampp_weights)


def gradcampp_weights(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (closed form, Chattopadhyay et al. 2018, eq. 19):
    w_k = Σ_ij a_ij^k ReLU(g_ij^k), a = g² / (2g² + Σ_ab A_ab · g³ + ε), 0 where g = 0.

    ε = 1e-6 as in pytorch-grad-cam, so the two agree: with signed activations (transformers)
    the denominator has a pole at Σ A · g = −2, where any ε decides the value."""
    g2 = gradient.square()
    g3 = g2 * gradient  # the reference's order of operations: near the pole, rounding shows
    denominator = 2 * g2 + activation.sum((1, 2), keepdim=True) * g3 + GRADCAMPP_EPS
    valid = (gradient != 0) & (denominator != 0)
    alpha = torch.where(valid, g2 / torch.where(valid, denominator, 1.0), 0.0)
    return (alpha * gradient.clamp(min=0)).sum((1, 2))


def gradcampp_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++: ReLU(Σ_k w_k A_k) with the closed-form weights."""
    return weighted_sum(gradcampp_weights(activation, gradient), activation).clamp(min=0)


def layercam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """LayerCAM: ReLU(Σ_k ReLU(g_k) ⊙ A_k) (Jiang et al. 2021)."""
    return (gradient.clamp(min=0) * activation).sum(0).clamp(min=0)


# -- the shared pass ---------------------------------------------------------------------------
def layer_maps(ctx: Context, layers: list[str], combine: Combine, **params) -> dict[str, torch.Tensor]:
    """``combine(A, g)`` for every layer, from one forward and one backward; each layer's tensors
    are dropped as soon as its map is made."""
    layers = list(dict.fromkeys(layers))
    captured, gradients = ctx.layer_pass(layers)
    maps = {}
    for name in layers:
        activation = ctx.feature_map(name, captured[name])
        maps[name] = combine(activation, ctx.feature_map(name, gradients.pop(name)), **params)
        captured.calls[name].clear()
    return maps


def register_gradient_cam(name: str, combine: Combine, summary: str, unit: str) -> None:
    """Register ``combine`` as a layer method with its single-layer and all-layers forms."""

    def fn(ctx: Context) -> torch.Tensor:
        return layer_maps(ctx, [ctx.layer], combine)[ctx.layer]

    def layerwise(ctx: Context, layers: list[str]) -> dict[str, torch.Tensor]:
        return layer_maps(ctx, list(layers), combine)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = combine.__doc__
    register(name, family=FAMILY, space="layer", summary=summary, layerwise=layerwise, combine=combine,
             unit=unit)(fn)


register_gradient_cam("gradcam", gradcam_map, unit="Grad-CAM",
                      summary="ReLU of activations weighted by their mean gradient (Selvaraju et al. 2017).")
register_gradient_cam("gradcampp", gradcampp_map, unit="Grad-CAM++",
                      summary="Grad-CAM++: positive gradients weighted per pixel "
                              "(Chattopadhyay et al. 2018).")
register_gradient_cam("layercam", layercam_map, unit="Layer-CAM",
                      summary="Positive gradients times activations, per position (Jiang et al. 2021).")


# -- CAM: needs a global-average-pool + linear head --------------------------------------------
def linear_head(ctx: Context, activation: torch.Tensor) -> nn.Linear | None:
    """The ``nn.Linear`` with logits = linear(mean over (h, w) of the layer output) on this input."""
    logits = ctx.clean()[0]
    pooled = activation.mean((1, 2))
    tolerance = 1e-3 * max(1.0, float(logits.abs().max()))
    for module in ctx.model.modules():
        if not isinstance(module, nn.Linear) or module.in_features != pooled.numel():
            continue
        if module.out_features != logits.numel():
            continue
        weight = module.weight.detach().float()
        bias = module.bias.detach().float() if module.bias is not None else 0.0
        predicted = weight @ pooled.to(weight.device) + bias
        if float((predicted.cpu() - logits.cpu()).abs().max()) <= tolerance:
            return module
    return None


@register("cam", family=FAMILY, space="layer", last_layer_only=True, unit="CAM (logit units)",
          summary="Class activation map: the head's weights over the last feature maps (Zhou et al. 2016).")
def cam(ctx: Context) -> torch.Tensor:
    """Σ_k w_target,k A_k; only where the logits are a linear map of the layer's spatial mean."""
    captured, _ = ctx.layer_pass([ctx.layer], grads=False)
    activation = ctx.feature_map(ctx.layer, captured[ctx.layer])
    head = linear_head(ctx, activation)
    if head is None:
        raise ValueError(
            f"cam needs the layer's output to feed a global average pool and a single linear layer "
            f"that gives the logits; layer {ctx.layer!r} does not (checked on this input). Use "
            "method='gradcam' (the same map for such a head, and defined for any layer)"
        )
    weights = head.weight.detach()[ctx.target].float().to(activation.device)
    return weighted_sum(weights, activation)


# -- Score-CAM ---------------------------------------------------------------------------------
@register(
    "scorecam", family=FAMILY, space="layer", unit="Score-CAM",
    summary="Channels weighted by the target score of the input masked by each (Wang et al. 2020).",
    params=(Param("batch_size", int, 32, "masked inputs per forward pass", range=(1, 4096)),),
)
def scorecam(ctx: Context, batch_size: int) -> torch.Tensor:
    """ReLU(Σ_k softmax_k(s) A_k), s_k the target logit of x ⊙ norm(upsample(A_k)) — as
    pytorch-grad-cam's ScoreCAM: bilinear (align_corners) upsampling, per-channel min-max."""
    captured, _ = ctx.layer_pass([ctx.layer], grads=False)
    activation = ctx.feature_map(ctx.layer, captured[ctx.layer])
    x, target = ctx.x, ctx.target
    channels = activation.shape[0]
    scores = torch.empty(channels, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, channels, batch_size):
            stop = min(channels, start + batch_size)
            masks = activation[start:stop, None].to(x.device, x.dtype)
            masks = F.interpolate(masks, size=x.shape[-2:], mode="bilinear", align_corners=True)
            low = masks.amin((2, 3), keepdim=True)
            high = masks.amax((2, 3), keepdim=True)
            masks = (masks - low) / (high - low + 1e-8)
            scores[start:stop] = ctx.logits(x * masks)[:, target].float().cpu()
            seen = scores[:stop].softmax(0).to(activation.device)
            partial = weighted_sum(seen, activation[:stop]).clamp(min=0)
            ctx.report(stop / channels, partial)
    return weighted_sum(scores.softmax(0).to(activation.device), activation).clamp(min=0)


# -- Guided Grad-CAM: pixel detail × layer localization -----------------------------------------
def guided_gradcam_map(attribution: torch.Tensor, ctx: Context, params: dict) -> MapValues:
    return signed_scale(attribution.sum(0))


def guided_times(guided: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Guided backprop ``(C, H, W)`` ⊙ the Grad-CAM map upsampled (bilinear) and scaled to max 1."""
    heat = F.interpolate(heat[None, None], size=guided.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    heat = heat.to(guided.device)
    top = float(heat.max())
    return guided * (heat / top if top > 0 else heat)


def guided_backprop(ctx: Context) -> torch.Tensor:
    return ctx.input_gradients(ctx.x, clean_row=0, rule=RectifierRule("guided"))[0].float()


def guided_gradcam_layerwise(ctx: Context, layers: list[str]) -> dict[str, torch.Tensor]:
    """Grad-CAM at every layer from one pass; guided backprop (the same for all) once."""
    heats = layer_maps(ctx, list(layers), gradcam_map)
    guided = guided_backprop(ctx)
    return {name: guided_times(guided, heat) for name, heat in heats.items()}


@register("guided_gradcam", family=FAMILY, space="layer", signed=True, to_map=guided_gradcam_map,
          unit="guided gradient × Grad-CAM",
          layerwise=guided_gradcam_layerwise,
          summary="Guided backprop times the upsampled Grad-CAM (Selvaraju et al. 2017); pixel detail.")
def guided_gradcam(ctx: Context) -> torch.Tensor:
    """(C, H, W): guided backprop ⊙ Grad-CAM upsampled to the input and scaled to max 1."""
    return guided_gradcam_layerwise(ctx, [ctx.layer])[ctx.layer]
