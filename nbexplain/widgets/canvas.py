"""HeatmapCanvas: the picture with its heatmap on a browser canvas (anywidget).

The kernel sends the picture once (exact RGBA bytes) and each new map at the method's own
resolution (raw float32 values, e.g. 7×7 for Grad-CAM) with the raw values at its colour scale's
ends, its unit and a caption; the browser upsamples, puts the values on the scale, colours and
composites them, and draws the caption and a colour bar, so opacity and colormap changes never
round-trip to the kernel and the hover readout shows raw values. Brush strokes and the patch
occluder come back as custom messages, coalesced by the browser to at most one per animation
frame (trait updates would be dropped while the kernel is busy). The browser paints strokes at
once; this class applies the same integer rasterization to its own copy of the mask
(``raster.py``, as ``js/src/lib/raster.js``), so both agree pixel for pixel. The page is not
trusted: every message is checked and bounded (``messages.py``), is taken in its own mode only,
and the picture's size is the kernel's own record; a trait write from the page is taken only
where the page's own view writes one (``PAGE_WRITES``).

The front-end source lives in ``js/src/`` and ships bundled as ``nbexplain/static/canvas.js``.
"""

from __future__ import annotations

import math
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from .. import render
from . import messages
from .raster import bresenham, disc, paint_stroke, square_bounds, stamp_disc  # noqa: F401  (the canvas's API)

_STATIC = Path(__file__).resolve().parent.parent / "static"
MODES = ("explain", "brush", "patch")  # the canvas modes (also the Explorer's mode values)
# What the page may write (its view dismisses an error; ipywidgets counts the views); a write to
# any other trait (image_shape, mode, brush_size, mask_version, …) is answered with the kernel's value.
PAGE_WRITES: dict[str, Callable[[Any], bool]] = {
    "error": lambda value: value == "",
    "_view_count": lambda value: value is None or (type(value) is int and 0 <= value <= 2**20),
}


def _luts() -> dict[str, list[int]]:
    return {name: render.lut(name).reshape(-1).tolist() for name in render.colormaps()}


# -- the widget -------------------------------------------------------------------------------
class HeatmapCanvas(anywidget.AnyWidget):
    """The picture, its heatmap and a paintable mask on a browser canvas.

    ``set_image``/``set_heatmap``/``set_mask`` feed it; ``on_mask``/``on_patch``/``on_pick``
    register callbacks for the user's brush strokes, patch occluder and clicks. Exceptions in
    callbacks are shown over the canvas (``error``) and kept in ``errors``.
    """

    # the bundle's text, not its path: for a path anywidget makes a class-wide FileContents whose
    # change signal holds a closure over every instance, so no canvas could ever be freed
    _esm = (_STATIC / "canvas.js").read_text()

    image = t.Bytes(b"").tag(sync=True)
    image_shape = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)
    heatmap = t.Bytes(b"").tag(sync=True)
    heatmap_shape = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)
    signed = t.Bool(False).tag(sync=True)
    scale = t.Tuple(t.Float(), t.Float(), default_value=(0.0, 1.0)).tag(sync=True)  # raw low, high
    unit = t.Unicode("").tag(sync=True)
    caption = t.Unicode("").tag(sync=True)
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
        self.errors: deque[str] = deque(maxlen=messages.MAX_ERRORS)  # the latest tracebacks
        self.refused: Counter[str] = Counter()  # messages and trait writes from the page not acted on
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
        """(H, W) of the picture: the kernel's own record (the synced ``image_shape`` is the page's copy)."""
        return self._mask.shape  # type: ignore[return-value]

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

    def set_heatmap(self, values: Any | None, signed: bool = False, scale: tuple[float, float] | None = None,
                    unit: str = "", caption: str = "") -> None:
        """Show a map at its own resolution (h×w; the browser upsamples it); ``None`` removes it.

        ``values`` are raw values with ``scale`` = (low, high), the values at the colour scale's
        ends (the browser colours (v − low) / (high − low), clipped, and its readout prints ``v``
        with ``unit``); or a ``MapValues``, which carries all three. Without a scale they are
        taken as already on the scale, in [0, 1] (signed maps with zero at 0.5), and clipped.
        """
        if hasattr(values, "low") and hasattr(values, "values"):  # a MapValues
            values, signed, scale, unit = values.values, values.signed, (values.low, values.high), values.unit
        with self.hold_sync():
            self.caption = str(caption) if values is not None else ""
            self.unit = str(unit)
            self.signed = bool(signed)
            if values is None:
                self.heatmap = b""
                self.heatmap_shape = (0, 0)
                self.scale = (0.0, 1.0)
                return
            array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values,
                               dtype=np.float32)
            array = np.squeeze(array) if array.ndim > 2 else array
            if array.ndim != 2:
                raise ValueError(f"heatmap must be 2-D (h, w); got shape {array.shape}")
            if scale is None:
                low, high = 0.0, 1.0
                array = np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)
            else:
                low, high = (float(v) for v in scale)
                if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                    raise ValueError(f"scale must be two finite numbers (low, high), low <= high; "
                                     f"got {scale}")
                array = np.nan_to_num(array, nan=0.0, posinf=high, neginf=low)
            self.scale = (low, high)
            self.heatmap_shape = array.shape
            self.heatmap = array.astype("<f4").tobytes()

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

    # -- what the page sends (it is not trusted: messages.py checks and bounds it all) ----------
    def set_state(self, sync_data: dict) -> None:
        """A trait write from the page: taken only for ``PAGE_WRITES``, else answered with ours."""
        taken = {name: value for name, value in sync_data.items()
                 if name in PAGE_WRITES and PAGE_WRITES[name](value)}
        refused = [name for name in sync_data if name not in taken and name in self.keys]
        try:
            super().set_state(taken)
        except Exception:  # a value the trait refuses after all
            refused += list(taken)
        if refused:
            self.refused["state"] += 1
            self.send_state(refused)

    def _handle_custom_msg(self, content: Any, buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {"stroke": self._stroke, "patch": self._patch, "pick": self._pick,
                   "rendered": self._rendered}.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            try:
                handler(content)
            except Exception as error:  # malformed: refused, and shown rather than lost
                self.refused[kind] += 1
                if kind == "stroke":
                    self._resend_mask()
                self.show_error(error)
        super()._handle_custom_msg(content, buffers)

    @t.observe("mode")
    def _left_patch_mode(self, change: dict) -> None:
        if change["new"] != "patch":
            self.patch = None

    def _in_mode(self, kind: str, mode: str) -> bool:
        """A message of another mode (sent before a mode change arrived) is dropped quietly."""
        if self.mode != mode:
            self.refused[kind] += 1
        return self.mode == mode

    def _resend_mask(self) -> None:
        """The page shows the kernel's mask again (it may have painted a stroke refused here)."""
        with self.hold_sync():
            self.mask_bytes = self._mask.tobytes()
            self.mask_version += 1

    def _stroke(self, content: dict) -> None:
        h, w = self.shape
        if not self._in_mode("stroke", "brush") or not h or not w:
            self._resend_mask()
            return
        # a radius past the picture's diagonal paints nothing more from a point on it
        stroke = messages.stroke(content, self.brush_size, math.ceil(math.hypot(h, w)))
        if stroke.points:
            paint_stroke(self._mask, stroke.points, stroke.size, 0 if stroke.erase else 255)
        if stroke.final:
            # New views (the same widget displayed again) start from the painted mask; live views
            # only reload it when mask_version changes, so this does not disturb a stroke.
            self.mask_bytes = self._mask.tobytes()
        self._call(self._mask_callbacks, self.mask, stroke.final)

    def _patch(self, content: dict) -> None:
        if not self._in_mode("patch", "patch"):
            return
        self.patch = messages.patch(content, self.brush_size, 2 * max(self.shape) + 1)
        self._call(self._patch_callbacks, None if self.patch is None else self.patch_mask(*self.patch))

    def _pick(self, content: dict) -> None:
        if not self._in_mode("pick", "explain"):
            return
        (x, y), (h, w) = messages.pick(content), self.shape
        if not (0 <= x < w and 0 <= y < h):
            raise messages.MessageError(f"pick ({x}, {y}) is off the {h}×{w} picture")
        self._call(self._pick_callbacks, x, y)

    def _rendered(self, content: dict) -> None:
        self.last_latency_ms = messages.latency(content)
        self.latencies_ms.append(self.last_latency_ms)
        self._call(self._rendered_callbacks, self.last_latency_ms)
