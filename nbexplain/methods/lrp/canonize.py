"""What LRP needs to know about a model's structure, without touching the model.

- Module kinds: which modules carry a linear rule, which pass relevance through, which leaves
  need no rule, and which LRP cannot handle.
- ``LinearOp``: a conv or linear module as an affine map with its own effective weight and bias;
  a BatchNorm that directly follows it is folded into those, for the relevance computation only
  (new tensors: the model's parameters are never written).

Residual additions need no per-architecture code here: the additions themselves are seen while
the model runs (see ``propagate.py``), where zennit's ResNet canonizer replaces each block's
``forward`` to expose them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LINEAR = (*CONV, nn.Linear)
BATCHNORM = (nn.modules.batchnorm._BatchNorm,)
# zennit's ``Activation`` types: relevance passes through them unchanged.
ACTIVATIONS = (nn.ELU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardtanh, nn.Hardswish, nn.LeakyReLU,
               nn.LogSigmoid, nn.PReLU, nn.ReLU, nn.ReLU6, nn.RReLU, nn.SELU, nn.CELU, nn.GELU,
               nn.Sigmoid, nn.SiLU, nn.Softplus, nn.Softshrink, nn.Softsign, nn.Tanh, nn.Tanhshrink,
               nn.Threshold)
# Parameter-free leaves: their functions are either glue the plain gradient may cross (reshapes,
# max pooling, dropout in eval mode) or get the ``Norm`` rule where they are called (average pooling).
STATELESS = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
             nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)

SUPPORTED = (
    "conv nets built from Conv1d/2d/3d and Linear layers, BatchNorm (folded into a conv or linear layer "
    "it directly follows, else an affine layer with the epsilon rule, as DenseNet needs), ReLU-like "
    "activations, squeeze-excite gates x * sigmoid(...) (the gate a constant weight), max and average "
    "pooling, means and sums, flatten/reshape, dropout, "
    "concatenation and residual additions a + b (VGG, torchvision ResNet, DenseNet, "
    "MobileNetV3, EfficientNet, timm EfficientNet-Lite / MobileNet blocks)"
)


class UnsupportedModel(ValueError):
    """The model has a structure LRP has no rule for (the message names it)."""


class LinearOp:
    """``module`` (conv or linear) as ``op(x, weight, bias)`` — the module's own forward (padding,
    groups, 'same' convs) with other parameters — and its effective ``weight`` and ``bias`` (zeros
    when the module has none), detached."""

    def __init__(self, module: nn.Module, name: str):
        self.module, self.name = module, name
        self.weight = module.weight.detach()
        bias = module.bias
        self.bias = bias.detach() if bias is not None else self.weight.new_zeros(self.weight.shape[0])
        self.folded: str | None = None

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        has_bias = self.module.bias is not None
        params = {"weight": weight}
        if has_bias:
            params["bias"] = bias if bias is not None else torch.zeros_like(self.bias)
        out = functional_call(self.module, params, (x,))
        if bias is not None and not has_bias:
            out = out + (bias if isinstance(self.module, nn.Linear) else bias.view(-1, *[1] * (out.ndim - 2)))
        return out

    def fold(self, bn: nn.Module, bn_name: str) -> None:
        """Fold the eval-mode BatchNorm ``bn`` that follows this layer into the copies."""
        if self.folded is not None:
            raise UnsupportedModel(
                f"lrp: layer {self.name!r} feeds two BatchNorms ({self.folded!r}, {bn_name!r}); "
                f"supported: {SUPPORTED}"
            )
        if bn.num_features != self.weight.shape[0]:
            raise UnsupportedModel(
                f"lrp: BatchNorm {bn_name!r} normalizes {bn.num_features} features but {self.name!r} "
                f"has {self.weight.shape[0]} outputs"
            )
        scale, shift = running_affine(bn, bn_name)
        self.weight = self.weight * scale.view(-1, *[1] * (self.weight.ndim - 1))
        self.bias = self.bias * scale + shift
        self.folded = bn_name


def running_affine(bn: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of the eval-mode BatchNorm ``bn``: bn(x) = x · scale + shift."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModel(
            f"lrp: BatchNorm {name!r} has no running statistics (track_running_stats=False), so it is "
            "no fixed affine map LRP can propagate through"
        )
    std = (bn.running_var.detach() + bn.eps).sqrt()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean.detach() * scale


class AffineOp:
    """A BatchNorm that follows no conv or linear layer (DenseNet's ``norm → relu → conv``, whose
    ReLU forbids merging into the conv after it) as its own per-channel affine layer, with the same
    ``op(x, weight, bias)`` / ``weight`` / ``bias`` interface as ``LinearOp``, so any linear rule
    applies (zennit's maintainers suggest the epsilon rule for these, chr5tphr/zennit#165)."""

    def __init__(self, module: nn.Module, name: str):
        self.name = name
        self.weight, self.bias = running_affine(module, name)

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        shape = (1, -1, *[1] * (x.ndim - 2))
        out = x * weight.view(shape)
        return out + bias.view(shape) if bias is not None else out


def check_leaf(name: str, module: nn.Module) -> None:
    """Raise for a leaf module with parameters (or a transposed conv) that LRP has no rule for."""
    if isinstance(module, (*LINEAR, *BATCHNORM, *ACTIVATIONS, *STATELESS)):
        return
    stateful = next(module.parameters(recurse=False), None) is not None
    if isinstance(module, nn.modules.conv._ConvTransposeNd) or (stateful and not list(module.children())):
        raise UnsupportedModel(
            f"lrp: module {name!r} ({type(module).__name__}) has no LRP rule; supported: {SUPPORTED}"
        )
