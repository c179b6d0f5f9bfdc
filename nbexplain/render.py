"""Turn attributions into pictures: normalization, colormaps, overlays. No engine imports.

Maps are float arrays in [0, 1]. Signed maps put zero at 0.5 and are meant for a diverging
colormap; unsigned maps start at 0. The canvas's front end (js/src/lib/lut.js, scale.js) composites
exactly as ``overlay`` does.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Anchor colours of the colormaps (evenly spaced stops, linearly interpolated).
_STOPS: dict[str, list[tuple[int, int, int]]] = {
    # matplotlib's "jet", the classic CAM look
    "jet": [(0, 0, 127), (0, 0, 255), (0, 127, 255), (0, 255, 255), (127, 255, 127),
            (255, 255, 0), (255, 127, 0), (255, 0, 0), (127, 0, 0)],
    # perceptually uniform, from matplotlib's viridis / inferno
    "viridis": [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
                (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)],
    "inferno": [(0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
                (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)],
    "gray": [(0, 0, 0), (255, 255, 255)],
    # diverging, for signed maps: blue (negative) – white (zero) – red (positive)
    "bwr": [(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
            (247, 247, 247), (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43),
            (103, 0, 31)],
}
UNSIGNED_CMAPS = ("jet", "viridis", "inferno", "gray")
SIGNED_CMAPS = ("bwr",)
# Gray over a photo is nearly invisible as a colour; drawn as a spotlight it reads at a glance:
# the photo keeps its brightness where the map is high and darkens where it is low.
SPOTLIGHT = "gray"


def colormaps() -> list[str]:
    return list(_STOPS)


def lut(cmap: str, size: int = 256) -> np.ndarray:
    """A ``(size, 3)`` uint8 lookup table for colormap ``cmap``."""
    if cmap not in _STOPS:
        raise ValueError(f"unknown cmap {cmap!r}; valid: {colormaps()}")
    stops = np.asarray(_STOPS[cmap], dtype=np.float64)
    at = np.linspace(0, 1, len(stops))
    grid = np.linspace(0, 1, size)
    return np.stack([np.interp(grid, at, stops[:, c]) for c in range(3)], 1).round().astype(np.uint8)


def _as_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def on_scale(values, low: float, high: float, signed: bool = False) -> np.ndarray:
    """``values`` placed on the colour scale from ``low`` to ``high``: [0, 1], clipped beyond;
    an empty scale gives 0 (or 0.5, the middle, for a signed one)."""
    values = _as_numpy(values)
    if not high - low > 0:
        return np.full(values.shape, 0.5 if signed else 0.0, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0, 1).astype(np.float32)


def _top(values: np.ndarray, percentile: float) -> float:
    if not values.size:
        return 0.0
    return float(np.percentile(values, percentile)) if percentile < 100 else float(values.max())


def unsigned_range(values, percentile: float = 100.0) -> tuple[float, float]:
    """The scale of non-negative ``values``: from their minimum (or 0) to the ``percentile`` above
    it (gradient maps are dominated by a few pixels; ending at 99–99.5 shows the rest)."""
    values = _as_numpy(values)
    low = min(float(values.min()), 0.0) if values.size else 0.0
    return low, low + max(_top(values - low, percentile), 0.0)


def minmax_range(values) -> tuple[float, float]:
    """The scale of CAM-style maps: their minimum to their maximum."""
    values = _as_numpy(values)
    return (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)


def signed_range(values, percentile: float = 99.5) -> tuple[float, float]:
    """A symmetric scale, zero in the middle: ± the ``percentile`` of |values|."""
    top = _top(np.abs(_as_numpy(values)), percentile)
    return -top, top


def normalize_unsigned(values, percentile: float = 100.0) -> np.ndarray:
    """Non-negative ``values`` on their ``unsigned_range`` (0 at the minimum or 0)."""
    return on_scale(values, *unsigned_range(values, percentile))


def normalize_minmax(values) -> np.ndarray:
    """``values`` scaled to [0, 1] by min and max (CAM-style maps)."""
    return on_scale(values, *minmax_range(values))


def normalize_signed(values, percentile: float = 99.5) -> np.ndarray:
    """Signed ``values`` on their ``signed_range``: 0 at 0.5."""
    return on_scale(values, *signed_range(values, percentile), signed=True)


def colorize(map01, cmap: str = "jet") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image of the [0, 1] map through ``cmap``."""
    map01 = _as_numpy(map01)
    if map01.ndim != 2:
        raise ValueError(f"map must be 2-D (H, W); got shape {map01.shape}")
    index = np.clip(np.nan_to_num(map01) * 255 + 0.5, 0, 255).astype(np.uint8)
    return lut(cmap)[index]


def signed_weight(map01, alpha: float = 0.5) -> np.ndarray:
    """How opaque a signed map is at each pixel: 0 where the value is zero (the photo shows, no
    white wash), min(1, 2·alpha·sqrt(|2m − 1|)) elsewhere. At the default alpha 0.5 a value at the
    scale's end shows its colour-bar colour itself (a plain alpha-blend would halve it, and the
    diverging map's pale middle would vanish twice over); the square root keeps weak values seen."""
    return np.minimum(1.0, 2 * alpha * np.sqrt(np.abs(2 * _as_numpy(map01) - 1))).astype(np.float32)


def overlay(image, map01, cmap: str = "jet", alpha: float = 0.5, signed: bool = False) -> Image.Image:
    """``map01`` colorized and blended over ``image`` (resized to the image if needed): a
    ``signed`` map in proportion to its magnitude (``signed_weight``); the ``SPOTLIGHT`` colormap
    by dimming the photo where the map is low (c = img·(1 − alpha) + img·gray·alpha)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    base = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    base = base.convert("RGB")
    heat = Image.fromarray(colorize(map01, cmap))
    if heat.size != base.size:
        heat = heat.resize(base.size, Image.BILINEAR)
    photo, colours = np.asarray(base, np.float32), np.asarray(heat, np.float32)
    if cmap == SPOTLIGHT:
        mixed = photo * (1 - alpha) + photo * colours / 255 * alpha
    elif signed:
        weight = Image.fromarray(signed_weight(map01, alpha))
        if weight.size != base.size:
            weight = weight.resize(base.size, Image.BILINEAR)
        weight = np.clip(np.asarray(weight), 0, 1)[..., None]
        mixed = photo * (1 - weight) + colours * weight
    else:
        return Image.blend(base, heat, alpha)
    return Image.fromarray((mixed + 0.5).astype(np.uint8))


def figure(picture: Image.Image, cmap: str, scale: tuple[float, float], caption: str,
           signed: bool = False) -> Image.Image:
    """``picture`` with ``caption`` above it and a vertical colour bar at its right whose ticks
    give the raw values at the ends (and zero, for a signed scale)."""
    from PIL import ImageDraw

    font, caption = _font(caption)
    width, height = picture.size
    bar, gap, labels = 12, 6, 64
    lines = _wrap(caption, font, width + gap + bar + labels - 8)
    top = 6 + 15 * len(lines)
    out = Image.new("RGB", (width + gap + bar + labels, height + top + 6), "white")
    draw = ImageDraw.Draw(out)
    for row, line in enumerate(lines):
        draw.text((4, 4 + 15 * row), line, fill=(20, 20, 20), font=font)
    out.paste(picture, (0, top))
    ramp = np.linspace(1, 0, height, dtype=np.float32)[:, None].repeat(bar, 1)
    out.paste(Image.fromarray(colorize(ramp, cmap)), (width + gap, top))
    low, high = scale
    ticks = [(0, high), (height - 1, low)] + ([(height // 2, 0.0)] if signed else [])
    for y, value in ticks:
        draw.line([(width + gap + bar, top + y), (width + gap + bar + 2, top + y)], fill=(20, 20, 20))
        text_y = min(max(top + y - 7, top), top + height - 14)
        draw.text((width + gap + bar + 6, text_y), f"{value:.3g}", fill=(20, 20, 20), font=font)
    return out


_ASCII = str.maketrans({"−": "-", "×": "x", "∂": "d", "–": "-", "—": "-"})


def _font(text: str):
    """DejaVu Sans where the system has it (it draws −, ∂, ×); else Pillow's own font, with
    the text in the characters that font has."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", 12), text
    except OSError:
        return ImageFont.load_default(size=12), text.translate(_ASCII)


def _wrap(text: str, font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels: at its `` · `` separators
    where a part fits, else at spaces."""
    lines, line = [], ""
    for part in text.split(" · "):
        trial = f"{line} · {part}" if line else part
        if not line or font.getlength(trial) <= width:
            line = trial
            continue
        lines.append(line)
        line = part
    wrapped = []
    for piece in [*lines, line]:
        current = ""
        for word in piece.split(" "):
            trial = f"{current} {word}".strip()
            if current and font.getlength(trial) > width:
                wrapped.append(current)
                current = word
            else:
                current = trial
        wrapped.append(current)
    return wrapped
