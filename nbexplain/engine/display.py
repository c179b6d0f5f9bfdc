"""Recover a displayable RGB picture from a model-ready tensor.

The heatmap is at the model's input geometry (after resize/crop), so the picture under it
must be the model input itself: un-normalized when the preprocessing's mean/std are known,
min-max scaled otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def find_normalization(preprocess: Any) -> tuple[list[float], list[float]] | None:
    """(mean, std) of a preprocessing callable: attributes ``mean``/``std``, or a
    torchvision ``Normalize`` inside a ``Compose``."""
    if preprocess is None:
        return None
    mean, std = getattr(preprocess, "mean", None), getattr(preprocess, "std", None)
    if mean is not None and std is not None:
        return list(np.ravel(mean)), list(np.ravel(std))
    for step in getattr(preprocess, "transforms", []) or []:
        found = find_normalization(step)
        if found is not None:
            return found
    return None


def to_display(x: torch.Tensor, preprocess: Any = None) -> np.ndarray:
    """``x`` ((1,)C,H,W) as an ``(H, W, 3)`` uint8 array."""
    image = x.detach().float().cpu()
    if image.ndim == 4:
        image = image[0]
    norm = find_normalization(preprocess)
    channels = image.shape[0]
    if norm is not None and len(norm[0]) in (1, channels):
        mean = torch.tensor(norm[0]).view(-1, 1, 1)
        std = torch.tensor(norm[1]).view(-1, 1, 1)
        image = (image * std + mean).clamp(0, 1)
    else:
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    if channels == 1:
        image = image.expand(3, -1, -1)
    elif channels != 3:
        image = image[:3] if channels > 3 else image.mean(0, keepdim=True).expand(3, -1, -1)
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
