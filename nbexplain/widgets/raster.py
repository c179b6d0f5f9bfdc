"""Brush and patch rasterization: the browser's integer algorithm (``js/src/lib/raster.js``), bounded.

Both sides paint a stroke as discs of radius r (the offsets with dx² + dy² <= r² + r) stamped at
every pixel of the Bresenham line between consecutive points, so the browser's mask and the
kernel's agree pixel for pixel. The browser only sends points on the image; the kernel must also
survive any others, so here a segment is clipped, exactly, to the pixels whose disc can reach the
image (a line to (1e18, 1e18) costs what one across the image costs), and the discs are painted as
one union, row by row: time in r × the area they cover, memory in that area, never stamps × r².
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np

MAX_COORDINATE = 2**40  # beyond this the int64 arithmetic below could overflow


def bresenham(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Pixels of the Bresenham line from (x0, y0) to (x1, y1), both ends included (the reference
    walk; ``line_pixels`` gives the same pixels without walking the part off the image)."""
    points = []
    dx, sx = abs(x1 - x0), (1 if x0 < x1 else -1)
    dy, sy = -abs(y1 - y0), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        points.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return points
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


@functools.lru_cache(maxsize=16)
def disc(radius: int) -> np.ndarray:
    """Boolean (2r+1)×(2r+1) disc: offsets with dx² + dy² <= r² + r (read-only; a few are kept)."""
    r = max(0, int(radius))
    d = np.arange(-r, r + 1)
    out = (d[:, None] ** 2 + d[None, :] ** 2) <= r * r + r
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def disc_spans(radius: int) -> np.ndarray:
    """Half-widths of the disc's rows: ``spans[dy + r]`` = the largest |dx| with dx² + dy² <= r² + r."""
    r = max(0, int(radius))
    limit = r * r + r - np.arange(-r, r + 1, dtype=np.int64) ** 2
    spans = np.floor(np.sqrt(limit)).astype(np.int64)
    spans += (spans + 1) ** 2 <= limit  # float rounding, either way
    spans -= spans**2 > limit
    spans.flags.writeable = False
    return spans


def stamp_disc(mask: np.ndarray, x: int, y: int, radius: int, value: int) -> None:
    """Write ``value`` into the disc of ``radius`` at (x, y) of ``mask`` (H×W uint8), clipped."""
    h, w = mask.shape
    r = max(0, int(radius))
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + r + 1), min(h, y + r + 1)
    if x0 >= x1 or y0 >= y1:
        return
    d = disc(r)[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
    mask[y0:y1, x0:x1][d] = value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def line_pixels(x0: int, y0: int, x1: int, y1: int,
                box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of ``bresenham(x0, y0, x1, y1)`` inside ``box`` = (xlo, ylo, xhi, yhi) (ends
    included), in order, as (xs, ys) — found without walking the line: step k of n = max(|dx|, |dy|)
    is at major offset k and minor offset (2·k·d_minor + n) // (2·n) (ties round up, as the walk)."""
    if abs(x1 - x0) >= abs(y1 - y0):  # x is the major axis
        a0, b0, da, db = x0, y0, x1 - x0, y1 - y0
        alo, blo, ahi, bhi = box
        swap = False
    else:
        a0, b0, da, db = y0, x0, y1 - y0, x1 - x0
        blo, alo, bhi, ahi = box
        swap = True
    n, m = abs(da), abs(db)
    sa, sb = (1 if da > 0 else -1), (1 if db > 0 else -1)
    k0, k1 = (alo - a0, ahi - a0) if sa > 0 else (a0 - ahi, a0 - alo)  # the major coordinate in range
    k0, k1 = max(k0, 0), min(k1, n)
    lo, hi = (blo - b0, bhi - b0) if sb > 0 else (b0 - bhi, b0 - blo)  # minor offsets in range
    if m == 0:
        if not lo <= 0 <= hi:
            return np.empty(0, np.int64), np.empty(0, np.int64)
    else:
        k0 = max(k0, _ceil_div(2 * n * lo - n, 2 * m))
        k1 = min(k1, _ceil_div(2 * n * (hi + 1) - n, 2 * m) - 1)
    if k0 > k1:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    steps = np.arange(k1 - k0 + 1, dtype=np.int64)
    if m == 0:
        minor = np.zeros_like(steps)
    else:
        base, rest = divmod(2 * k0 * m + n, 2 * n)  # exact in Python ints, small from here on
        minor = base + (rest + 2 * m * steps) // (2 * n)
    major = (a0 + sa * k0) + sa * steps
    minor = b0 + sb * minor
    return (minor, major) if swap else (major, minor)


def fill_discs(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: int, value: int) -> None:
    """Write ``value`` into the union of the discs of ``radius`` centred at (xs, ys) (clipped to
    ``mask``): each centre row's distance to its nearest centre, then one comparison per disc row."""
    h, w = mask.shape
    r = max(0, int(radius))
    keep = (xs >= -r) & (xs <= w - 1 + r) & (ys >= -r) & (ys <= h - 1 + r)
    xs, ys = xs[keep], ys[keep]
    if xs.size == 0:
        return
    top, bottom = max(0, int(ys.min()) - r), min(h - 1, int(ys.max()) + r)  # rows painted
    left, right = max(0, int(xs.min()) - r), min(w - 1, int(xs.max()) + r)  # columns painted
    if top > bottom or left > right:
        return
    c0, c1 = min(int(xs.min()), left), max(int(xs.max()), right)  # columns of the distance table
    r0 = int(ys.min())
    rows, columns = int(ys.max()) - r0 + 1, c1 - c0 + 1
    centres = np.zeros((rows, columns), bool)
    centres[ys - r0, xs - c0] = True
    far = np.int32(2 * (columns + r + 1))
    index = np.arange(columns, dtype=np.int32)
    before = np.maximum.accumulate(np.where(centres, index, -far), axis=1)
    after = np.minimum.accumulate(np.where(centres, index, far)[:, ::-1], axis=1)[:, ::-1]
    distance = np.minimum(index - before, after - index)[:, left - c0 : right - c0 + 1]
    covered = np.zeros((bottom - top + 1, right - left + 1), bool)
    spans = disc_spans(r)
    for dy in range(-r, r + 1):  # output row y takes centre row y - dy
        first, last = max(top, r0 + dy), min(bottom, r0 + rows - 1 + dy)
        if first <= last:
            source = distance[first - dy - r0 : last - dy - r0 + 1]
            covered[first - top : last - top + 1] |= source <= spans[dy + r]
    mask[top : bottom + 1, left : right + 1][covered] = value


def paint_stroke(mask: np.ndarray, points: Sequence[Sequence[int]], radius: int, value: int) -> np.ndarray:
    """Paint the polyline ``points`` with discs of ``radius`` along Bresenham lines (a one-point
    stroke: one disc); the same pixels as stamping every disc, in bounded time."""
    pts = [(int(p[0]), int(p[1])) for p in points]
    if any(abs(c) > MAX_COORDINATE for p in pts for c in p):
        raise ValueError(f"stroke points must lie within ±{MAX_COORDINATE}; got {pts}")
    h, w = mask.shape
    r = max(0, int(radius))
    if not pts or not h or not w:
        return mask
    box = (-r, -r, w - 1 + r, h - 1 + r)
    if len(pts) == 1:
        xs, ys = np.array([pts[0][0]], np.int64), np.array([pts[0][1]], np.int64)
    else:
        parts = [line_pixels(ax, ay, bx, by, box) for (ax, ay), (bx, by) in itertools.pairwise(pts)]
        xs, ys = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    fill_discs(mask, xs, ys, r, value)
    return mask


def square_bounds(x: int, y: int, size: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The clipped square of side ``size`` centred at (x, y): (x0, y0, x1, y1), ends exclusive."""
    size = max(1, int(size))
    x0, y0 = x - size // 2, y - size // 2
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(width, x0 + size), min(height, y0 + size)
    if bx0 >= bx1 or by0 >= by1:
        return None
    return bx0, by0, bx1, by1
