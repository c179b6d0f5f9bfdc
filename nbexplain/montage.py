"""Grids of small pictures: a convolution's filters, a layer's feature maps. Numpy only.

Tiles are laid out row by row, ``columns`` to a row (default: a near-square grid), with ``pad``
pixels of ``background`` between them and around the border: tile ``i`` starts at row
``pad + (i // columns) * (tile_h + pad)``, column ``pad + (i % columns) * (tile_w + pad)``.
Arrays may be numpy arrays or CPU torch tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .checks import check_count


def _array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array or tensor; got dtype {array.dtype}")
    return array.astype(np.float32)


def grid_shape(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``count`` tiles."""
    if count < 1:
        raise ValueError(f"a grid needs at least one tile; got {count}")
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    else:
        check_count(columns, "columns")
    columns = min(columns, count)
    return math.ceil(count / columns), columns


def tile(tiles: np.ndarray, columns: int | None = None, pad: int = 1, background: float = 0.0) -> np.ndarray:
    """``tiles`` (N, h, w) or (N, h, w, C) laid out in a grid: (H, W) or (H, W, C), same dtype."""
    tiles = np.asarray(tiles)
    if tiles.ndim not in (3, 4):
        raise ValueError(f"tiles must be (N, h, w) or (N, h, w, C); got shape {tiles.shape}")
    check_count(pad, "pad", minimum=0)
    count, height, width = tiles.shape[:3]
    rows, columns = grid_shape(count, columns)
    shape = (pad + rows * (height + pad), pad + columns * (width + pad), *tiles.shape[3:])
    grid = np.full(shape, background, dtype=tiles.dtype)
    for index in range(count):
        top = pad + (index // columns) * (height + pad)
        left = pad + (index % columns) * (width + pad)
        grid[top:top + height, left:left + width] = tiles[index]
    return grid


def _scale01(values: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
    """Min-max to [0, 1] over ``axes`` (``None``: the whole array); constant parts → 0.5."""
    low = values.min(axis=axes, keepdims=True)
    span = values.max(axis=axes, keepdims=True) - low
    safe = np.where(span > 0, span, 1)
    return np.where(span > 0, (values - low) / safe, 0.5).astype(np.float32)


def _check_normalize(normalize: str, each: str) -> None:
    if normalize not in (each, "all"):
        raise ValueError(
            f"normalize must be {each!r} (each tile on its own) or 'all' (one scale); got {normalize!r}"
        )


def filter_montage(
    weight,
    *,
    input_channel: int | None = None,
    columns: int | None = None,
    pad: int = 1,
    scale: int = 1,
    normalize: str = "filter",
    background: int = 255,
) -> np.ndarray:
    """A convolution's filters as an ``(H, W, 3)`` uint8 picture, one tile per output channel.

    ``weight`` is ``(out, in, kh, kw)``. Filters that read 3 channels (a first layer reading RGB)
    are drawn in colour; others in gray, showing ``input_channel`` or, when ``None``, the mean
    over input channels. ``normalize="filter"`` scales each filter to its own min–max,
    ``"all"`` uses one scale for all. ``scale`` enlarges each tile (nearest neighbour).
    """
    weight = _array(weight, "weight")
    if weight.ndim != 4:
        raise ValueError(f"weight must be a conv weight (out, in, kh, kw); got shape {weight.shape}")
    _check_normalize(normalize, "filter")
    check_count(scale, "scale")
    inputs = weight.shape[1]
    if input_channel is None and inputs == 3:
        tiles = weight.transpose(0, 2, 3, 1)  # (out, kh, kw, RGB)
    else:
        if input_channel is None:
            tiles = weight.mean(1)
        elif not 0 <= input_channel < inputs:
            raise ValueError(
                f"input_channel must be in [0, {inputs - 1}] (the filters read {inputs} channels); "
                f"got {input_channel}"
            )
        else:
            tiles = weight[:, input_channel]
        tiles = tiles[..., None].repeat(3, axis=3)
    tiles = _scale01(tiles, (1, 2, 3) if normalize == "filter" else None)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    pixels = np.clip(tiles * 255 + 0.5, 0, 255).astype(np.uint8)
    return tile(pixels, columns, pad, background)


def feature_grid(
    activations,
    *,
    channels: Sequence[int] | None = None,
    columns: int | None = None,
    pad: int = 1,
    normalize: str = "map",
    background: float = 1.0,
) -> np.ndarray:
    """A layer's feature maps ``(K, h, w)`` as one ``(H, W)`` float32 picture in [0, 1] (colour
    it with ``render.colorize``). ``channels`` picks and orders the maps shown (default: all);
    ``normalize="map"`` scales each map to its own min–max, ``"all"`` uses one scale."""
    activations = _array(activations, "activations")
    if activations.ndim != 3:
        raise ValueError(f"activations must be (K, h, w) feature maps; got shape {activations.shape}")
    _check_normalize(normalize, "map")
    if channels is not None:
        index = np.asarray(channels)
        count = activations.shape[0]
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or index.size == 0:
            raise ValueError(f"channels must be a non-empty sequence of ints; got {channels!r}")
        if index.min() < 0 or index.max() >= count:
            raise ValueError(
                f"channels must be in [0, {count - 1}] ({count} feature maps); got {index.tolist()}"
            )
        activations = activations[index]
    maps = _scale01(activations, (1, 2) if normalize == "map" else None)
    return tile(maps, columns, pad, np.float32(background))


def strongest(activations, count: int | None = None) -> list[int]:
    """Channel indices of ``activations`` (K, h, w), highest mean activation first."""
    values = _array(activations, "activations")
    if values.ndim != 3:
        raise ValueError(f"activations must be (K, h, w) feature maps; got shape {values.shape}")
    means = values.reshape(values.shape[0], -1).mean(1)
    order = np.argsort(-means, kind="stable")
    return [int(i) for i in order[:count]]


def fit(picture: np.ndarray, size: tuple[int, int], background: float = 0.0) -> np.ndarray:
    """``picture`` (h, w[, C]) scaled by nearest neighbour to fit in ``size`` (H, W), aspect kept
    (an integer factor when enlarging, so every source pixel stays square), centred on
    ``background``."""
    picture = np.asarray(picture)
    height, width = picture.shape[:2]
    target_h, target_w = size
    factor = min(target_h / height, target_w / width)
    if factor >= 1:
        factor = math.floor(factor)
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    rows = np.minimum((np.arange(new_h) * height) // new_h, height - 1)
    cols = np.minimum((np.arange(new_w) * width) // new_w, width - 1)
    scaled = picture[rows][:, cols]
    out = np.full((target_h, target_w, *picture.shape[2:]), background, dtype=picture.dtype)
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    out[top:top + new_h, left:left + new_w] = scaled
    return out
