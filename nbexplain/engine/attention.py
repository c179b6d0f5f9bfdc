"""Attention probabilities of a transformer, captured while it runs — also where it calls a fused
kernel (``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``) that never forms them.

While ``AttentionCapture`` is active, each attention call is answered by the model's own op
(its output is the fused op's, bit for bit) and the probabilities ``softmax(q·kᵀ·scale + mask)``
are recomputed from its q and k, one ``(N, heads, L, L)`` tensor per call, in call order. With
``grad=True`` the output also carries the explicit path ``A @ v`` as a zero-valued term
(``x - x.detach()``), so ``∂y/∂A`` can be taken (gradient rollout), the value unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

SDPA = {F.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention}


class UnsupportedAttention(ValueError):
    """An attention call of a form the capture does not recompute (masks, dropout, GQA …)."""


def _probabilities(q: torch.Tensor, k: torch.Tensor, scale: float | None, mask: Any) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(-1)


class AttentionCapture(TorchFunctionMode):
    """Records every attention call's probabilities (``self.maps``) while active."""

    def __init__(self, grad: bool = False):
        super().__init__()
        self.grad = grad
        self.maps: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SDPA:
            return self._sdpa(func, args, kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head(func, args, kwargs)
        return func(*args, **kwargs)

    def _keep(self, exact: torch.Tensor, explicit: torch.Tensor) -> torch.Tensor:
        """The exact output, with the explicit path's gradient where one is wanted."""
        if self.grad and torch.is_grad_enabled() and explicit.requires_grad:
            return exact.detach() + (explicit - explicit.detach())
        return exact

    def _sdpa(self, func, args, kwargs) -> torch.Tensor:
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        if given.get("dropout_p", 0.0) or given.get("is_causal") or given.get("enable_gqa"):
            raise UnsupportedAttention("attention with dropout, a causal mask or grouped queries "
                                       "is not captured")
        q, k, v = given["query"], given["key"], given["value"]
        exact = func(*args, **kwargs)
        attention = _probabilities(q, k, given.get("scale"), given.get("attn_mask"))
        self.maps.append(attention)
        return self._keep(exact, attention @ v if self.grad else exact)

    def _multi_head(self, func, args, kwargs):
        """``nn.MultiheadAttention`` (torchvision's ViT): q, k, v projected as it does, in its
        (L, N, E) layout; the plain self-attention form only."""
        names = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight",
                 "in_proj_bias", "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight",
                 "out_proj_bias", "training")
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        plain = (given.get("bias_k") is None and not given.get("add_zero_attn")
                 and given.get("attn_mask") is None and given.get("key_padding_mask") is None
                 and not given.get("use_separate_proj_weight") and not given.get("is_causal")
                 and not (given.get("training") and given.get("dropout_p")))
        if not plain:
            raise UnsupportedAttention("nn.MultiheadAttention with masks, bias_k/v, separate projections or "
                                       "dropout is not captured")
        exact = func(*args, **kwargs)
        x, heads = given["query"], given["num_heads"]
        length, batch, embed = x.shape
        qkv = F.linear(x, given["in_proj_weight"], given["in_proj_bias"])
        q, k, v = (t.reshape(length, batch * heads, embed // heads).transpose(0, 1) for t in qkv.chunk(3, -1))
        attention = _probabilities(q, k, None, None).view(batch, heads, length, length)
        self.maps.append(attention)
        if not self.grad:
            return exact
        mixed = attention.view(batch * heads, length, length) @ v
        mixed = mixed.transpose(0, 1).reshape(length, batch, embed)
        explicit = F.linear(mixed, given["out_proj_weight"], given["out_proj_bias"])
        return (self._keep(exact[0], explicit), exact[1])
