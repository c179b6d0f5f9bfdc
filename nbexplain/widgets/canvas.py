"""HeatmapCanvas: the picture with its heatmap on a browser canvas (anywidget).

The kernel sends the picture once (exact RGBA bytes) and each new map at the method's own
resolution (float32 bytes, e.g. 7×7 for Grad-CAM); the browser upsamples, colours and composites
it, so opacity and colormap changes never round-trip to the kernel. Brush strokes and the patch
occluder come back as custom messages, coalesced by the browser to at most one per animation
frame (trait updates would be dropped while the kernel is busy). The browser paints strokes at
once; this class applies the same integer rasterization to its own copy of the mask
(see ``js/src/lib/raster.js``), so both agree pixel for pixel.

The front-end source lives in ``js/src/`` and ships bundled as ``nbexplain/static/canvas.js``.
"""

from __future__ import annotations

import itertools
import math
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from .. import render

_STATIC = Path(__file__).resolve().parent.parent / "static"
MODES = ("explain", "brush", "patch")  # the canvas modes (also the Explorer's mode values)


def _luts() -> dict[str, list[int]]:
    return {name: render.lut(name).reshape(-1).tolist() for name in render.colormaps()}


# -- rasterization shared with the browser (js/src/lib/raster.js) ---------------------------------
def bresenham(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Pixels of the Bresenham line from (x0, y0) to (x1, y1), both ends included."""
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


_DISCS: dict[int, np.ndarray] = {}


def disc(radius: int) -> np.ndarray:
    """Boolean (2r+1)×(2r+1) disc: offsets with dx² + dy² <= r² + r."""
    r = max(0, int(radius))
    if r not in _DISCS:
        d = np.arange(-r, r + 1)
        _DISCS[r] = (d[:, None] ** 2 + d[None, :] ** 2) <= r * r + r
    return _DISCS[r]


def stamp_disc(mask: np.ndarray, x: int, y: int, radius: int, value: int) -> None:
    """Write ``value`` into the disc of ``radius`` at (x, y) of ``mask`` (H×W uint8), clipped."""
    h, w = mask.shape
    r = max(0, int(radius))
    x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + r + 1), min(h, y + r + 1)
    if x0 >= x1 or y0 >= y1:
        return
    d = disc(r)[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
    mask[y0:y1, x0:x1][d] = value


def paint_stroke(mask: np.ndarray, points: Sequence[Sequence[int]], radius: int, value: int) -> np.ndarray:
    """Paint the polyline ``points`` with discs of ``radius`` along Bresenham lines (in order)."""
    pts = [(int(p[0]), int(p[1])) for p in points]
    if len(pts) == 1:
        stamp_disc(mask, pts[0][0], pts[0][1], radius, value)
    for (ax, ay), (bx, by) in itertools.pairwise(pts):
        for x, y in bresenham(ax, ay, bx, by):
            stamp_disc(mask, x, y, radius, value)
    return mask


def square_bounds(x: int, y: int, size: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The clipped square of side ``size`` centred at (x, y): (x0, y0, x1, y1), ends exclusive."""
    size = max(1, int(size))
    x0, y0 = x - size // 2, y - size // 2
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(width, x0 + size), min(height, y0 + size)
    if bx0 >= bx1 or by0 >= by1:
        return None
    return bx0, by0, bx1, by1


def _pixel(value: Any) -> int:
    return math.floor(float(value))


# -- the widget -------------------------------------------------------------------------------
class HeatmapCanvas(anywidget.AnyWidget):
    """The picture, its heatmap and a paintable mask on a browser canvas.

    ``set_image``/``set_heatmap``/``set_mask`` feed it; ``on_mask``/``on_patch``/``on_pick``
    register callbacks for the user's brush strokes, patch occluder and clicks. Exceptions in
    callbacks are shown over the canvas (``error``) and kept in ``errors``.
    """

    _esm = _STATIC / "canvas.js"

    image = t.Bytes(b"").tag(sync=True)
    image_shape = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)
    heatmap = t.Bytes(b"").tag(sync=True)
    heatmap_shape = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)
    signed = t.Bool(False).tag(sync=True)
    cmap = t.Unicode("auto").tag(sync=True)
    luts = t.Dict().tag(sync=True)
    opacity = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    mode = t.Enum(MODES, default_value="explain").tag(sync=True)
    brush_size = t.Int(12, min=0).tag(sync=True)
    mask_version = t.Int(0).tag(sync=True)
    mask_bytes = t.Bytes(b"").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    display_width = t.Int(448, min=16).tag(sync=True)

    def __init__(self, image: np.ndarray | None = None, heatmap: np.ndarray | None = None, **kwargs: Any):
        kwargs.setdefault("luts", _luts())
        super().__init__(**kwargs)
        self._mask = np.zeros((0, 0), np.uint8)
        self._mask_callbacks: list[Callable[[np.ndarray, bool], Any]] = []
        self._patch_callbacks: list[Callable[[np.ndarray | None], Any]] = []
        self._pick_callbacks: list[Callable[[int, int], Any]] = []
        self._rendered_callbacks: list[Callable[[float], Any]] = []
        self.errors: list[str] = []
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.last_latency_ms: float | None = None
        self.patch: tuple[int, int, int] | None = None
        if image is not None:
            self.set_image(image)
        if heatmap is not None:
            self.set_heatmap(heatmap)

    @t.validate("cmap")
    def _check_cmap(self, proposal):
        value = proposal["value"]
        if value != "auto" and value not in render.colormaps():
            raise t.TraitError(f"unknown cmap {value!r}; valid: {['auto', *render.colormaps()]}")
        return value

    # -- data in ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the picture."""
        return tuple(self.image_shape)  # type: ignore[return-value]

    def set_image(self, rgb: Any) -> None:
        """Show ``rgb`` (H×W×3 or H×W×4 uint8 array, a PIL image, or floats in [0, 1]).
        A new size clears the mask."""
        array = np.asarray(rgb.convert("RGB")) if hasattr(rgb, "convert") else np.asarray(rgb)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"image must be H×W×3 (or ×4); got shape {array.shape}")
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
                array = array * 255.0
            array = np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)
        h, w = array.shape[:2]
        rgba = np.empty((h, w, 4), np.uint8)
        rgba[..., :3] = array[..., :3]
        rgba[..., 3] = 255 if array.shape[2] == 3 else array[..., 3]
        with self.hold_sync():
            if (h, w) != self.shape or self._mask.shape != (h, w):
                self._mask = np.zeros((h, w), np.uint8)
                self.mask_bytes = self._mask.tobytes()
                self.mask_version += 1
                self.patch = None
            self.image_shape = (h, w)
            self.image = rgba.tobytes()

    def set_heatmap(self, map01: Any | None, signed: bool = False) -> None:
        """Show ``map01`` (h×w, values in [0, 1]; signed maps have 0 at 0.5) at its own resolution;
        ``None`` removes the heatmap."""
        with self.hold_sync():
            if map01 is None:
                self.heatmap = b""
                self.heatmap_shape = (0, 0)
                self.signed = bool(signed)
                return
            values = np.asarray(map01.detach().cpu().numpy() if hasattr(map01, "detach") else map01,
                                dtype=np.float32)
            values = np.squeeze(values) if values.ndim > 2 else values
            if values.ndim != 2:
                raise ValueError(f"heatmap must be 2-D (h, w); got shape {values.shape}")
            values = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0).astype("<f4")
            self.signed = bool(signed)
            self.heatmap_shape = values.shape
            self.heatmap = values.tobytes()

    def set_mask(self, mask: Any | None) -> None:
        """Replace the painted mask (H×W bool or floats in [0, 1]); ``None`` clears it.
        Does not call the ``on_mask`` callbacks."""
        h, w = self.shape
        if mask is None:
            new = np.zeros((h, w), np.uint8)
        else:
            values = np.asarray(mask)
            if values.shape != (h, w):
                raise ValueError(f"mask must have the image's shape {(h, w)}; got {values.shape}")
            if values.dtype == np.uint8:
                new = values.copy()
            else:
                new = (np.clip(np.nan_to_num(values.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
        self._mask = new
        with self.hold_sync():
            self.mask_bytes = new.tobytes()
            self.mask_version += 1

    def clear_mask(self) -> None:
        self.set_mask(None)

    @property
    def mask(self) -> np.ndarray:
        """The painted mask as float32 H×W in [0, 1] (a copy; kept in sync with the strokes)."""
        return self._mask.astype(np.float32) / 255.0

    @property
    def mask_u8(self) -> np.ndarray:
        """The painted mask as uint8 H×W (0..255), exactly as the browser holds it (a copy)."""
        return self._mask.copy()

    def patch_mask(self, x: int, y: int, size: int) -> np.ndarray:
        """float32 H×W mask with 1 on the square of side ``size`` centred at (x, y)."""
        h, w = self.shape
        out = np.zeros((h, w), np.float32)
        bounds = square_bounds(int(x), int(y), int(size), w, h)
        if bounds:
            x0, y0, x1, y1 = bounds
            out[y0:y1, x0:x1] = 1.0
        return out

    # -- callbacks -------------------------------------------------------------------------
    @staticmethod
    def _register(callbacks: list, callback: Callable, remove: bool) -> None:
        if remove:
            if callback in callbacks:
                callbacks.remove(callback)
        elif callback not in callbacks:
            callbacks.append(callback)

    def on_mask(self, callback: Callable[[np.ndarray, bool], Any], remove: bool = False) -> None:
        """``callback(mask, final)`` after each batch of brush points (``mask``: float32 H×W;
        ``final``: the stroke ended)."""
        self._register(self._mask_callbacks, callback, remove)

    def on_patch(self, callback: Callable[[np.ndarray | None], Any], remove: bool = False) -> None:
        """``callback(mask)`` when the patch occluder moves (float32 H×W, 1 on the square), or
        ``callback(None)`` when the cursor leaves the canvas."""
        self._register(self._patch_callbacks, callback, remove)

    def on_pick(self, callback: Callable[[int, int], Any], remove: bool = False) -> None:
        """``callback(x, y)`` on a click in "explain" mode (input pixels)."""
        self._register(self._pick_callbacks, callback, remove)

    def on_rendered(self, callback: Callable[[float], Any], remove: bool = False) -> None:
        """``callback(latency_ms)`` when the browser reports an input-to-repaint latency."""
        self._register(self._rendered_callbacks, callback, remove)

    def _call(self, callbacks: Iterable[Callable], *args: Any) -> None:
        for callback in list(callbacks):
            try:
                callback(*args)
            except Exception as error:  # shown over the canvas, never swallowed silently
                self.show_error(error)

    def show_error(self, error: BaseException | str) -> None:
        """Show ``error`` over the canvas (and keep its traceback in ``errors``)."""
        if isinstance(error, BaseException):
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.errors.append(text)
            self.error = f"{type(error).__name__}: {error}"
        else:
            self.errors.append(str(error))
            self.error = str(error)

    def clear_error(self) -> None:
        self.error = ""

    # -- messages from the browser ---------------------------------------------------------
    def _handle_custom_msg(self, content: Any, buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "stroke":
                self._stroke(content)
            elif kind == "patch":
                self._patch(content)
            elif kind == "pick":
                x, y = _pixel(content["x"]), _pixel(content["y"])
                self._call(self._pick_callbacks, x, y)
            elif kind == "rendered":
                self._rendered(content)
        except Exception as error:  # a malformed message: show it rather than lose it
            self.show_error(error)
        super()._handle_custom_msg(content, buffers)

    def _stroke(self, content: dict) -> None:
        h, w = self.shape
        if self._mask.shape != (h, w):
            self._mask = np.zeros((h, w), np.uint8)
        points = [(_pixel(p[0]), _pixel(p[1])) for p in content.get("points") or []]
        final = bool(content.get("final", False))
        if points:
            value = 0 if content.get("erase") else 255
            paint_stroke(self._mask, points, int(content.get("size", self.brush_size)), value)
        if final:
            # New views (the same widget displayed again) start from the painted mask; live views
            # only reload it when mask_version changes, so this does not disturb a stroke.
            self.mask_bytes = self._mask.tobytes()
        self._call(self._mask_callbacks, self.mask, final)

    def _patch(self, content: dict) -> None:
        if content.get("x") is None:
            self.patch = None
            self._call(self._patch_callbacks, None)
            return
        x, y = _pixel(content["x"]), _pixel(content["y"])
        size = int(content.get("size", self.brush_size))
        self.patch = (x, y, size)
        self._call(self._patch_callbacks, self.patch_mask(x, y, size))

    def _rendered(self, content: dict) -> None:
        latency = content.get("latency_ms")
        if latency is None:
            latency = float(content["t_paint"]) - float(content["t_event"])
        self.last_latency_ms = float(latency)
        self.latencies_ms.append(self.last_latency_ms)
        self._call(self._rendered_callbacks, self.last_latency_ms)
