"""Gradient-family methods: gradient, saliency, gradient × input, SmoothGrad, integrated gradients."""

from __future__ import annotations

import numpy as np
import torch

from ..engine.context import Context
from ..engine.perturb import blur
from ..engine.registry import Param, register

GRADIENT = "gradient"


@register("gradient", family=GRADIENT, space="pixel", signed=True, unit="∂logit/∂x",
          summary="∂y/∂x: how each input value moves the target logit.")
def gradient(ctx: Context) -> torch.Tensor:
    return ctx.input_gradients(ctx.x, clean_row=0)[0]


@register("saliency", family=GRADIENT, space="pixel", unit="|∂logit/∂x|",
          summary="|∂y/∂x| (Simonyan et al. 2014); the map is the max over colour channels.")
def saliency(ctx: Context) -> torch.Tensor:
    return ctx.input_gradients(ctx.x, clean_row=0)[0].abs()


@register("input_x_gradient", family=GRADIENT, space="pixel", signed=True, unit="x·∂logit/∂x",
          summary="x · ∂y/∂x (Shrikumar et al. 2016).")
def input_x_gradient(ctx: Context) -> torch.Tensor:
    return (ctx.x * ctx.input_gradients(ctx.x, clean_row=0))[0]


@register(
    "smoothgrad", family=GRADIENT, space="pixel", signed=True, unit="mean ∂logit/∂x",
    summary="Gradients averaged over noisy copies of the input (Smilkov et al. 2017).",
    params=(
        Param("samples", int, 25, "noisy copies (computed in batches)", range=(1, 1024)),
        Param("noise", float, 0.15, "noise std as a fraction of the input's value range", range=(0.0, 10.0)),
        Param("magnitude", bool, False, "average squared gradients (SmoothGrad-squared)"),
        Param("seed", int, 0, "random seed for the noise (reproducible maps)", range=(0, None)),
    ),
)
def smoothgrad(ctx: Context, samples: int, noise: float, magnitude: bool, seed: int) -> torch.Tensor:
    x = ctx.x
    sigma = noise * float(x.max() - x.min())
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eps = torch.randn((samples, *x.shape[1:]), generator=generator).to(x.device, x.dtype)
    grads = ctx.input_gradients(x + sigma * eps)
    return (grads.square() if magnitude else grads).mean(0)


def _baseline(ctx: Context, baseline) -> torch.Tensor:
    x = ctx.x
    if isinstance(baseline, torch.Tensor):
        where = "integrated_gradients: parameter 'baseline'"
        if baseline.is_complex():
            raise TypeError(f"{where} must be a real tensor; got dtype {baseline.dtype}")
        tensor = baseline.detach().to(x.device, x.dtype)
        if tensor.shape == x.shape[1:]:
            tensor = tensor[None]
        if tensor.shape != x.shape:
            raise ValueError(f"{where} tensor must have the input's shape {tuple(x.shape[1:])}; "
                             f"got {tuple(baseline.shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{where} contains NaN or infinite values")
        return tensor
    if baseline == "zeros":
        return torch.zeros_like(x)
    return blur(x)


def ig_points(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation points α in [0, 1] and their quadrature weights for ``rule``."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("integrated_gradients: rule 'riemann_trapezoid' needs steps >= 2")
        alphas = np.linspace(0, 1, steps)
        weights = np.full(steps, 1 / (steps - 1))
        weights[[0, -1]] /= 2
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1 / steps)


@register(
    "integrated_gradients", family=GRADIENT, space="pixel", signed=True, unit="logit share",
    summary="Path integral of gradients from a baseline (Sundararajan et al. 2017).",
    params=(
        Param("steps", int, 32, "points on the path (computed in batches); ReLU nets need many for the "
              "attributions to sum to y(x) − y(baseline)", range=(1, 1024)),
        Param("baseline", (str, torch.Tensor), "zeros", "the reference input: 'zeros', 'blur' or a tensor",
              choices=("zeros", "blur")),
        Param("rule", str, "gausslegendre", "quadrature rule",
              choices=("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                       "riemann_middle")),
    ),
)
def integrated_gradients(ctx: Context, steps: int, baseline, rule: str) -> torch.Tensor:
    x = ctx.x
    base = _baseline(ctx, baseline)
    alphas, weights = ig_points(steps, rule)
    order = np.argsort(alphas != 1, kind="stable")  # x itself (α = 1) first: its logits come free
    alphas, weights = alphas[order], weights[order]
    alpha = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    weight = torch.as_tensor(weights, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    path = base + alpha * (x - base)
    clean_row = None
    if alphas[0] == 1:
        path[0], clean_row = x[0], 0
    grads = ctx.input_gradients(path, clean_row=clean_row)
    return ((x - base) * (grads * weight).sum(0, keepdim=True))[0]
