"""The Explorer's side panels: predictions (HTML), feature maps and filters (ipycanvas).

The predictions follow the mask (or the patch occluder) live: a cached answer is shown at once,
anything else is computed on the worker's "predict" lane, which a long map keeps serving
(``Scheduler.service``), and only the latest request is shown.

The ipycanvas panels are drawn in Python (``montage``) and sent as RGBA image data (RGB would
travel as lossy JPEG), at their own size in CSS pixels (never stretched to the output's width).
They are computed on the worker thread ("panel" lane), only while open, by the engine's
"activations" and "filters" methods through the explorer's cache; the feature maps are numbered
by channel, coloured as the overlay is, with the channel shown over the image framed; a 1×1
convolution's filters are drawn as its weight matrix.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch.nn.functional as F
from ipycanvas import Canvas, hold_canvas

from .. import montage
from .cache import mask_digest

MAX_TILES = 64
COLUMNS = 8
GAP = 2
TILE = 40
MATRIX = (320, 400)  # the most pixels (rows, columns) a 1×1 convolution's weight matrix takes


def predictions_html(predictions: Sequence[Any], reference: Sequence[Any] | None = None) -> str:
    """Top-k rows with probability bars; with ``reference`` (the unmasked predictions) each
    row also says what the class had before."""
    before = {p.index: p.prob for p in reference or []}
    floor = min(before.values(), default=0.0)  # a class outside the reference's top-k had less
    rows = []
    for p in predictions:
        width = max(1.0, 100 * p.prob)
        change = ""
        if reference is not None:
            was = f"{100 * before[p.index]:.1f}%" if p.index in before else f"<{100 * floor:.1f}%"
            change = f" <span style='color:#666'>(was {html.escape(was)})</span>"
        rows.append(
            "<div style='display:flex;align-items:center;gap:6px;font-size:12px;line-height:18px'>"
            f"<div style='width:130px;flex:none;overflow:hidden;text-overflow:ellipsis;white-space:nowrap' "
            f"title='{html.escape(p.label)} ({p.index})'>{html.escape(p.label)}</div>"
            f"<div style='width:100px;flex:none;background:#eee'><div style='width:{width:.1f}%;height:10px;"
            f"background:#3b78c4'></div></div><div>{100 * p.prob:.1f}%{change}</div></div>"
        )
    return "".join(rows)


class PredictionsPanel:
    """Top-k predictions of the owner's image under its mask and patch (``owner``: the Explorer),
    and those of the clean image (kept per image: the class picker lists them)."""

    def __init__(self, owner: Any):
        self.owner = owner
        self.widget = W.HTML()
        self.predictions: list | None = None
        self.clean: dict[Any, list] = {}  # image token -> predictions without a mask
        self.patch: np.ndarray | None = None  # the patch occluder's square, while it hovers
        self._seq = 0

    def request(self) -> None:
        owner = self.owner
        token, x, baseline, topk = owner.image_token, owner.image_tensor, owner.baseline, owner.topk
        mask = owner.mask
        mask = mask if mask.any() else None
        if self.patch is not None:
            mask = self.patch if mask is None else np.maximum(mask, self.patch)
        with owner._state_lock:
            self._seq += 1
            seq = self._seq
        key = owner.engine.predictions_key(token, mask_digest(mask), baseline, topk)
        found = owner.engine.predictions.get(key)
        if found is not None:
            owner.scheduler.cancel("predict")
            self._show(found, seq, token, mask is None)
            return

        def run(job: Any) -> None:
            try:
                result = owner.engine.predict(token, x, mask, baseline, topk)
            except Exception as error:
                owner._show_error(error, "predictions")
            else:
                self._show(result, seq, token, mask is None)
                owner._clear_error("predictions")

        owner.scheduler.submit("predict", run)

    def _show(self, predictions: list, seq: int, token: Any, clean: bool) -> None:
        """(main thread for cache hits, worker thread otherwise)"""
        with self.owner._state_lock:
            if clean and token not in self.clean:
                self.clean[token] = predictions
                if token == self.owner.image_token:
                    self.owner.controls.show_target()
            if seq != self._seq:
                return
            self.predictions = predictions
            self.widget.value = predictions_html(predictions, None if clean else self.clean.get(token))

    def close(self) -> None:
        self.widget.close()


def rgba(rgb: np.ndarray) -> np.ndarray:
    """An opaque RGBA copy of an (H, W, 3) uint8 picture (ipycanvas sends RGBA as exact PNG)."""
    out = np.full((*rgb.shape[:2], 4), 255, np.uint8)
    out[..., :3] = rgb
    return out


def _pixels(size: tuple[int, int]) -> dict[str, str]:
    """A canvas's CSS size: its own pixels, never stretched to the output's width."""
    return {"width": f"{size[1]}px", "height": f"{size[0]}px"}


class CanvasPanel:
    """A grid of tiles on an ipycanvas, computed on the owner's worker thread while it is open
    (method ``method`` at the current layer, through the owner's cache); a click on a tile calls
    ``on_tile(index)``. ``draw`` keeps what a result shows, ``compose`` makes the picture from it
    and the owner's state (the chosen tile, the colormap), ``paint`` puts it on the canvas."""

    method = ""

    def __init__(self, owner: Any):
        self.owner = owner
        size = (TILE + 2 * GAP, COLUMNS * (TILE + GAP) + GAP)
        self.canvas = Canvas(width=size[1], height=size[0], layout=W.Layout(**_pixels(size)))
        self.note = W.HTML()
        self.tiles: list[int] = []  # what each tile shows (a channel or a filter index)
        self.tile = TILE
        self.grid: montage.Grid | None = None
        self.picture: np.ndarray | None = None  # what the canvas shows (RGB)
        self.layer_shown: str | None = None
        self._lock = threading.RLock()
        self.widget = W.VBox([self.note, self.canvas])
        self.canvas.on_mouse_down(self._on_click)

    def refresh(self) -> None:
        owner = self.owner
        layer, token, x = owner.layer, owner.image_token, owner.image_tensor
        if layer is None:
            self.note.value = "<small>the model has no spatial layer</small>"
            return

        def run(job: Any) -> None:
            try:
                explanation = owner.engine.explain(token, x, self.method, None, self.params(), layer)
                if not job.should_stop():
                    with self._lock:
                        text = self.draw(explanation)
                        self.layer_shown = explanation.layer
                        self.paint()
                    self.note.value = f"<small>{html.escape(text)}</small>"
            except Exception as error:  # shown in the panel, the rest keeps working
                message = html.escape(f"{type(error).__name__}: {error}")
                self.note.value = f"<small style='color:#b00020'>{message}</small>"

        self.note.value = f"<small>computing for {html.escape(layer)} …</small>"
        owner.scheduler.submit("panel", run)

    def params(self) -> dict[str, Any]:
        return {}

    def draw(self, explanation: Any) -> str:
        """Keep what ``explanation`` shows (``tiles``, ``grid``); the caption."""
        raise NotImplementedError

    def compose(self) -> np.ndarray | None:
        """The picture (RGB) of what was drawn, as the owner's state shows it now."""
        raise NotImplementedError

    def paint(self) -> None:
        """Put the picture on the canvas, unless it is there already (any thread)."""
        with self._lock:
            picture = self.compose()
            if picture is None or (self.picture is not None and np.array_equal(picture, self.picture)):
                return
            self.picture = picture
            with hold_canvas():
                self.canvas.width, self.canvas.height = picture.shape[1], picture.shape[0]
                self.canvas.clear()
                self.canvas.put_image_data(rgba(picture), 0, 0)
            for name, value in _pixels(picture.shape[:2]).items():
                setattr(self.canvas.layout, name, value)

    def show_choice(self) -> None:
        """The owner's choice changed (method, channel, colormap): show it, if the panel is open
        (opening it draws it afresh)."""
        panels = getattr(self.owner, "panels", None)
        shown = panels is None or panels.selected_index == list(panels.children).index(self.widget)
        if self.picture is not None and shown:
            self.paint()

    def tile_at(self, x: float, y: float) -> int | None:
        """The index shown by the tile (or its label) under canvas pixel (x, y), if any."""
        index = None if self.grid is None else self.grid.index_at(x, y)
        return None if index is None or index >= len(self.tiles) else self.tiles[index]

    def _on_click(self, x: float, y: float) -> None:
        index = self.tile_at(x, y)
        if index is not None:
            self.on_tile(index)

    def on_tile(self, index: int) -> None:
        pass

    def close(self) -> None:
        for widget in (self.canvas, self.note, self.widget):
            widget.close()


class FeaturePanel(CanvasPanel):
    """The most active feature maps of the current layer (method "activations"), numbered by
    channel, in the overlay's colormap; the channel shown over the image is framed, and a click
    shows another one."""

    method = "activations"

    def __init__(self, owner: Any):
        super().__init__(owner)
        self.values: np.ndarray | None = None  # the tiles, each on its own min–max

    def params(self) -> dict[str, Any]:
        return {"channel": -1}

    def draw(self, explanation: Any) -> str:
        maps = explanation.attribution  # (K, h, w)
        order = montage.strongest(maps, MAX_TILES)
        enlarged = F.interpolate(maps[order][None].float(), size=(TILE, TILE), mode="bilinear",
                                 align_corners=False)[0]
        self.values, self.tiles = montage.normalize_tiles(enlarged), order
        h, w = maps.shape[1:]
        return (f"{explanation.layer}: {len(order)} of {maps.shape[0]} channels ({h}×{w}), most active "
                "first, numbered by channel, each on its own min–max in the overlay's colours; "
                "click one to show it over the image")

    def cmap(self) -> str:
        """The overlay's colormap for an activation map (unsigned: "auto" is jet)."""
        return self.owner.cmap or "jet"

    def chosen(self) -> int | None:
        """The position of the channel shown over the image, if it is one of these tiles."""
        owner = self.owner
        if owner.method != self.method or owner.layer != self.layer_shown:
            return None
        channel = owner.params.get("channel", -1)
        return self.tiles.index(channel) if channel in self.tiles else None

    def compose(self) -> np.ndarray | None:
        if self.values is None:
            return None
        picture, self.grid = montage.colour_tiles(self.values, self.tiles, cmap=self.cmap(), columns=COLUMNS,
                                                  pad=GAP, labels=True, highlight=self.chosen())
        return picture

    def on_tile(self, index: int) -> None:
        self.owner.select_channel(index)


class FilterPanel(CanvasPanel):
    """The filters of the convolution behind the current layer (method "filters"): a montage,
    numbered, or for a 1×1 convolution its weights as a matrix with a colour scale."""

    method = "filters"

    def __init__(self, owner: Any):
        super().__init__(owner)
        self.drawn: np.ndarray | None = None

    def draw(self, explanation: Any) -> str:
        weight = explanation.attribution  # (out, in, kh, kw)
        out, inputs, kh, kw = weight.shape
        if (kh, kw) == (1, 1):
            matrix = montage.weight_matrix(weight, width=MATRIX[1], height=MATRIX[0])
            self.drawn, self.grid, self.tiles = matrix.picture, None, []
            return (f"{explanation.layer}: a 1×1 convolution, so each filter is one weight per input "
                    f"channel; column j is filter (output channel) j, row i its weight on input channel i: "
                    f"{matrix.outputs} of {out} filters × {matrix.inputs} of {inputs} input channels; "
                    f"blue negative, white 0, red positive (scale ±{matrix.limit:.3g})")
        shown = weight[:MAX_TILES]
        scale = max(1, TILE // max(kh, kw))
        self.drawn = montage.filter_montage(shown, columns=COLUMNS, pad=GAP, scale=scale, labels=True)
        self.tile = scale * max(kh, kw)
        self.grid = montage.layout(len(shown), scale * kh, scale * kw, COLUMNS, GAP, montage.LABEL)
        self.tiles = list(range(len(shown)))
        kind = "in colour (RGB)" if inputs == 3 else f"mean over {inputs} input channels"
        return (f"{explanation.layer}: {len(shown)} of {out} filters {kh}×{kw}, {kind}, numbered; each on "
                "its own min–max (dark: its most negative weight, light: its most positive)")

    def compose(self) -> np.ndarray | None:
        return self.drawn
