"""Turn what a user hands over (PIL image, HxWxC array, tensor) into one model-ready batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

ImageLike = Any  # PIL.Image.Image | np.ndarray | torch.Tensor

_ACCEPTED = "a PIL image, an HxWxC numpy array, or a tensor (C,H,W) / (1,C,H,W)"


WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1}


def as_pil(image: ImageLike, name: str = "x") -> Image.Image:
    """An RGB PIL image from a PIL image or an HxW / HxWxC array (uint8, or float in [0, 1]).

    16-bit and 32-bit PIL images (modes ``I;16``, ``I``, ``F``) are scaled from their full range
    (0..65535; 0..1 for float), which ``convert("RGB")`` would clip to white or black."""
    if isinstance(image, Image.Image):
        if image.mode in WIDE_MODES:
            return _from_wide(image, name)
        return image.convert("RGB")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be {_ACCEPTED}; got {type(image).__name__}")
    array = image
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"{name}: a numpy image must be HxW or HxWxC with C in (1, 3, 4); got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"{name}: a float numpy image must have values in [0, 1]; "
                f"got [{array.min():.3g}, {array.max():.3g}]"
            )
        array = (array * 255).round().astype(np.uint8)
    else:
        raise TypeError(f"{name}: a numpy image must be uint8 or float; got dtype {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def _from_wide(image: Image.Image, name: str) -> Image.Image:
    """A 16/32-bit gray PIL image as 8-bit RGB; values outside the mode's range are an error."""
    top = WIDE_MODES[image.mode]
    array = np.asarray(image, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: the {image.mode!r} image contains NaN or infinite values")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < 0 or high > top:
        raise ValueError(
            f"{name}: a PIL image of mode {image.mode!r} must have values in [0, {top}]; got "
            f"[{low:.6g}, {high:.6g}] — rescale it, or pass an HxW float numpy array in [0, 1]"
        )
    return Image.fromarray((array * (255 / top)).round().astype(np.uint8)).convert("RGB")


def to_batch(
    x: ImageLike,
    preprocess: Callable[[Image.Image], torch.Tensor] | None,
    device: torch.device,
    name: str = "x",
) -> torch.Tensor:
    """``x`` as a float (1, C, H, W) tensor on ``device``, detached and checked."""
    if isinstance(x, torch.Tensor):
        tensor = x
    else:
        if not isinstance(x, (Image.Image, np.ndarray)):
            raise TypeError(f"{name} must be {_ACCEPTED}; got {type(x).__name__}")
        if preprocess is None:
            raise ValueError(
                f"{name} is an image, so the Explainer needs preprocess= (a callable that turns "
                "a PIL image into a model-ready (C,H,W) tensor); or pass a tensor"
            )
        tensor = preprocess(as_pil(x, name))
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"preprocess must return a torch.Tensor; got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {tensor.dtype}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[0] != 1:
        raise ValueError(f"{name} must have shape (C,H,W) or (1,C,H,W); got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor.detach().to(device)


def match_model_dtype(x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """``x`` in the floating dtype of ``model``'s parameters (a float64 tensor from numpy for a
    float32 model, float32 for a half-precision one); unchanged for a model without any."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return x if x.dtype == tensor.dtype else x.to(tensor.dtype)
    return x


def input_mismatch(model: torch.nn.Module, x: torch.Tensor, name: str = "x") -> str | None:
    """Why ``model`` cannot take ``x``, when its first convolution or linear layer says so
    (used to explain an error the model raised); ``None`` when nothing is found."""
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            if x.ndim >= 2 and x.shape[1] != module.in_channels:
                return (
                    f"{name} has {x.shape[1]} channels (shape {tuple(x.shape)}), but the model's first "
                    f"convolution {module_name!r} expects {module.in_channels}"
                )
            return None
        if isinstance(module, torch.nn.Linear):
            features = x[0].numel() if x.ndim > 1 else x.numel()
            if features != module.in_features and x.shape[-1] != module.in_features:
                return (
                    f"{name} has shape {tuple(x.shape[1:])} ({features} values), but the model's first "
                    f"layer {module_name!r} is linear with {module.in_features} input features"
                )
            return None
    return None


def declared_input_size(model: torch.nn.Module) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` a model says it takes: timm's ``pretrained_cfg["input_size"]`` (or its
    ``patch_embed.img_size``), a Hugging Face config's ``image_size`` (and ``num_channels``),
    torchvision's ViT ``image_size``; else
    ``None``. Layer discovery probes at it before any image is seen (a ViT rejects 224 × 224
    when it was built for another size)."""
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(config, dict) and len(config.get("input_size") or ()) == 3:
        return tuple(int(n) for n in config["input_size"])  # type: ignore[return-value]
    hf = getattr(model, "config", None)
    size = getattr(hf, "image_size", None) if hf is not None else getattr(model, "image_size", None)
    if size is None:  # a timm ViT built directly: its patch embedding knows the size it takes
        size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    channels = int(getattr(hf, "num_channels", 3) or 3) if hf is not None else 3
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return channels, size, size
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(n, int) for n in size):
        return channels, int(size[0]), int(size[1])
    return None
