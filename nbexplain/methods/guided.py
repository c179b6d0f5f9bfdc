"""Guided backpropagation and deconvnet: gradients through rectifiers with a changed backward."""

from __future__ import annotations

import torch

from ..engine.context import Context
from ..engine.rectifiers import RectifierRule
from ..engine.registry import register

FAMILY = "backprop"


@register("guided_backprop", family=FAMILY, space="pixel", signed=True, unit="guided gradient",
          summary="Only positive gradients through positive activations (Springenberg et al. 2015).")
def guided_backprop(ctx: Context) -> torch.Tensor:
    return ctx.input_gradients(ctx.x, clean_row=0, rule=RectifierRule("guided"))[0]


@register("deconvnet", family=FAMILY, space="pixel", signed=True, unit="deconvnet signal",
          summary="Rectified gradients, ignoring the forward mask (Zeiler & Fergus 2014).")
def deconvnet(ctx: Context) -> torch.Tensor:
    return ctx.input_gradients(ctx.x, clean_row=0, rule=RectifierRule("deconvnet"))[0]
