"""What the page may send the canvas, checked before the kernel acts on it.

The page is not trusted: a custom message is a dict of JSON values, any of which may be missing,
of the wrong type, NaN, infinite or huge, and a synced trait can be written with any value. Each
reader here returns the values the canvas acts on, bounded (coordinates within ``MAX_COORD``, at
most ``MAX_POINTS`` points, a brush radius no larger than can matter on the image), or raises
``MessageError`` naming the field, what is valid and (shortened) what came.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any

MAX_POINTS = 4096  # a stroke message carries one animation frame's points: a few, rarely hundreds
MAX_COORD = 2**20  # input pixels; the browser sends pixels on the image only
MAX_LATENCY_MS = 600_000.0
MAX_ERRORS = 50  # tracebacks a canvas keeps
_SHORT = reprlib.Repr()  # keywords need Python 3.12
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxdict = 4


class MessageError(ValueError):
    """A message from the page that the kernel does not act on."""


def short(value: Any) -> str:
    """``repr(value)``, cut to a few dozen characters (a page may send megabytes)."""
    return _SHORT.repr(value)


def number(value: Any, where: str, low: float = -MAX_COORD, high: float = MAX_COORD) -> float:
    """``value`` if it is a finite JSON number (not a boolean) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise MessageError(f"{where} must be a finite number in [{low:g}, {high:g}]; got {short(value)}")
    return float(value)


def pixel(value: Any, where: str) -> int:
    """The pixel a coordinate falls in (``floor``), checked as ``number``."""
    return math.floor(number(value, where))


def flag(content: dict, key: str, kind: str) -> bool:
    """A strict boolean (missing: ``False``): the string "false" is not a yes."""
    value = content.get(key, False)
    if not isinstance(value, bool):
        raise MessageError(f"{kind} {key!r} must be true or false; got {short(value)}")
    return value


def size(content: dict, default: int, kind: str, largest: int) -> int:
    """The message's brush size (its own, else ``default``): any finite size >= 0, cut to ``largest``."""
    value = content.get("size", default)
    return min(math.floor(number(value, f"{kind} 'size'", 0, math.inf)), largest)


@dataclass(frozen=True)
class Stroke:
    points: list[tuple[int, int]]
    size: int
    erase: bool
    final: bool


def stroke(content: dict, default_size: int, largest: int) -> Stroke:
    """A brush stroke: ``points`` ([[x, y], …], at most ``MAX_POINTS``), ``size``, ``erase``, ``final``."""
    points = content.get("points") or []
    if not isinstance(points, (list, tuple)):
        raise MessageError(f"stroke 'points' must be a list of [x, y]; got {short(points)}")
    if len(points) > MAX_POINTS:
        raise MessageError(f"stroke 'points' holds {len(points)} points; at most {MAX_POINTS} a message")
    pixels = []
    for i, point in enumerate(points):
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise MessageError(f"stroke points[{i}] must be [x, y]; got {short(point)}")
        pixels.append((pixel(point[0], f"stroke points[{i}][0]"), pixel(point[1], f"stroke points[{i}][1]")))
    return Stroke(pixels, size(content, default_size, "stroke", largest), flag(content, "erase", "stroke"),
                  flag(content, "final", "stroke"))


def patch(content: dict, default_size: int, largest: int) -> tuple[int, int, int] | None:
    """The patch occluder at (x, y) with side ``size``; ``None`` when it left the canvas (x null)."""
    if content.get("x") is None:
        return None
    x, y = pixel(content["x"], "patch 'x'"), pixel(content["y"], "patch 'y'")
    return x, y, max(1, size(content, default_size, "patch", largest))


def pick(content: dict) -> tuple[int, int]:
    return pixel(content["x"], "pick 'x'"), pixel(content["y"], "pick 'y'")


def latency(content: dict) -> float:
    """Milliseconds from an input to its repaint (``latency_ms``, else ``t_paint - t_event``)."""
    if content.get("latency_ms") is not None:
        return number(content["latency_ms"], "rendered 'latency_ms'", 0, MAX_LATENCY_MS)
    paint = number(content["t_paint"], "rendered 't_paint'", -1e15, 1e15)
    return number(paint - number(content["t_event"], "rendered 't_event'", -1e15, 1e15),
                  "rendered latency", 0, MAX_LATENCY_MS)
