"""How a layer's output lies on the image grid.

A 4-D output is read as (N, C, H, W) unless that reading cannot be the image seen at one
stride while (N, H, W, C) can — Swin's stages and timm's channels-last blocks. Such layers are
not offered and a method asked for one says why (the architectures issue reads them fully).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Layout = Literal["nchw", "nhwc"]


def on_grid(size: Sequence[int], image: Sequence[int]) -> bool:
    """Whether an ``(h, w)`` map can be the ``(H, W)`` image seen at one stride (±1 cell for
    rounding and unpadded borders), with more than one position."""
    h, w = int(size[0]), int(size[1])
    height, width = int(image[0]), int(image[1])
    if h < 1 or w < 1 or h * w < 2:
        return False
    stride = (height + width) / (h + w)
    return abs(height / stride - h) <= 1 and abs(width / stride - w) <= 1


def layout(shape: Sequence[int], image: Sequence[int]) -> Layout | None:
    """``"nchw"``, ``"nhwc"`` or ``None`` (not 4-D) for an output of ``shape`` from an input
    whose spatial size is ``image`` (H, W)."""
    if len(shape) != 4:
        return None
    if not on_grid(shape[2:], image) and on_grid(shape[1:3], image):
        return "nhwc"
    return "nchw"


def check_channels_first(name: str, shape: Sequence[int], image: Sequence[int]) -> None:
    """A clear error for a layer whose output lies channels-last on the image grid."""
    if layout(shape, image) == "nhwc":
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(shape)}, channels-last (N, H, W, C) on the "
            f"{int(image[0])}×{int(image[1])} image; nbexplain reads (N, C, H, W) layers only so far "
            "— pick one of Explainer.layers(), which leaves channels-last layers out"
        )
