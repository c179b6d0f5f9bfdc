"""Where occlusion's windows lie, the order they are evaluated in, and their scores as a map.

Windows follow Captum's ``Occlusion``: they start at 0, stride, 2·stride, … until the image is
covered, so when the stride does not divide the image evenly the last window is cut off at the
border. They are evaluated on a coarse lattice first, so an estimated full map comes early.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Window = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive, clipped to the image)


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start of each window along one axis (Captum: ceil((size - patch) / stride) + 1 windows)."""
    return [i * stride for i in range(math.ceil((size - patch) / stride) + 1)]


def check_geometry(size: tuple[int, int], patch: int, stride: int, where: str = "occlusion") -> None:
    height, width = size
    if patch > height or patch > width:
        raise ValueError(
            f"{where}: parameter 'patch' ({patch}) must not exceed the image size "
            f"({height}×{width}); use a patch of at most {min(height, width)}"
        )
    if stride > patch and (patch < height or patch < width):
        raise ValueError(
            f"{where}: parameter 'stride' ({stride}) must not exceed 'patch' ({patch}), "
            "or some pixels would never be occluded"
        )


def coverage(size: int, patch: int, stride: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(size, windows)`` 0/1 matrix: is pixel ``y`` inside window ``i`` along this axis."""
    starts = torch.tensor(window_starts(size, patch, stride), device=device)
    pixels = torch.arange(size, device=device)[:, None]
    return ((pixels >= starts) & (pixels < starts + patch)).to(dtype)


def scores_to_map(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The ``(H, W)`` map of window ``scores`` (nh, nw): per pixel, the mean over covering windows.

    A window's mask is the outer product of a row and a column indicator, so the per-pixel sum
    is ``rows @ scores @ cols.T`` and the count ``rowcount ⊗ colcount``.
    """
    total = rows @ scores.to(rows.dtype) @ cols.T
    return total / (rows.sum(1)[:, None] * cols.sum(1)[None, :])


def progressive_order(nh: int, nw: int, first_points: int = 3) -> tuple[list[tuple[int, int]], int, list]:
    """Every window (i, j) once, coarse lattices first.

    Returns the order, how many windows the first (coarse) lattice has, and the lattices as
    ``(end, rows, cols)``: after the first ``end`` windows, lattice ``rows × cols`` is complete.
    """
    step = max(1, math.ceil((max(nh, nw) - 1) / max(1, first_points - 1)))
    order: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    lattices = []
    while True:
        rows = sorted(set(range(0, nh, step)) | {nh - 1})
        cols = sorted(set(range(0, nw, step)) | {nw - 1})
        for i in rows:
            for j in cols:
                if (i, j) not in seen:
                    seen.add((i, j))
                    order.append((i, j))
        lattices.append((len(order), rows, cols))
        if step == 1:
            break
        step = max(1, step // 2)
    return order, lattices[0][0], lattices


def _nearest(indices: Sequence[int], count: int) -> torch.Tensor:
    """For each of ``range(count)``, the nearest entry of the sorted ``indices``."""
    grid = torch.tensor(indices, dtype=torch.float64)
    return torch.tensor(indices)[(torch.arange(count, dtype=torch.float64)[:, None] - grid).abs().argmin(1)]


def estimate_scores(scores: torch.Tensor, done: torch.Tensor, rows: Sequence[int], cols: Sequence[int]):
    """Window scores with the not-yet-computed ones taken from the nearest point of a complete
    lattice ``rows × cols`` (a coarse map that refines into the exact one)."""
    nh, nw = scores.shape
    filled = scores[_nearest(rows, nh)[:, None], _nearest(cols, nw)[None, :]]
    return torch.where(done, scores, filled)
