"""The Explorer's side panels: predictions (HTML), feature maps and filters (ipycanvas).

The predictions follow the mask (or the patch occluder) live: a cached answer is shown at once,
anything else is computed on the worker's "predict" lane, which a long map keeps serving
(``Scheduler.service``), and only the latest request is shown.

The ipycanvas panels are drawn in Python (``montage``) and sent as RGBA image data (RGB would
travel as lossy JPEG). They are computed on the worker thread ("panel" lane), only while open,
by the engine's "activations" and "filters" methods through the explorer's cache.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch.nn.functional as F
from ipycanvas import Canvas, hold_canvas

from .. import montage, render
from .cache import mask_digest

MAX_TILES = 64
COLUMNS = 8
GAP = 2
TILE = 48


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
            f"<div style='width:150px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap' "
            f"title='{html.escape(p.label)} ({p.index})'>{html.escape(p.label)}</div>"
            f"<div style='width:120px;background:#eee'><div style='width:{width:.1f}%;height:10px;"
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


class CanvasPanel:
    """A grid of tiles on an ipycanvas, computed on the owner's worker thread while it is open
    (method ``method`` at the current layer, through the owner's cache); a click on a tile calls
    ``on_tile(index)``."""

    method = ""

    def __init__(self, owner: Any):
        self.owner = owner
        self.canvas = Canvas(width=COLUMNS * (TILE + GAP) + GAP, height=TILE + 2 * GAP)
        self.note = W.HTML()
        self.tiles: list[int] = []  # what each tile shows (a channel or a filter index)
        self.tile = TILE
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
                    picture, self.tiles, text = self.draw(explanation)
                    with hold_canvas():
                        self.canvas.width, self.canvas.height = picture.shape[1], picture.shape[0]
                        self.canvas.clear()
                        self.canvas.put_image_data(rgba(picture), 0, 0)
                    self.note.value = f"<small>{html.escape(text)}</small>"
            except Exception as error:  # shown in the panel, the rest keeps working
                message = html.escape(f"{type(error).__name__}: {error}")
                self.note.value = f"<small style='color:#b00020'>{message}</small>"

        self.note.value = f"<small>computing for {html.escape(layer)} …</small>"
        owner.scheduler.submit("panel", run)

    def params(self) -> dict[str, Any]:
        return {}

    def draw(self, explanation: Any) -> tuple[np.ndarray, list[int], str]:
        """(RGB picture, what each tile shows, a caption)."""
        raise NotImplementedError

    def tile_at(self, x: float, y: float) -> int | None:
        """The index shown by the tile under canvas pixel (x, y), if any."""
        step = self.tile + GAP
        column, row = int((x - GAP) // step), int((y - GAP) // step)
        inside = (x - GAP) % step < self.tile and (y - GAP) % step < self.tile
        index = row * COLUMNS + column
        if not inside or not 0 <= column < COLUMNS or not 0 <= index < len(self.tiles):
            return None
        return self.tiles[index]

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
    """The most active feature maps of the current layer (method "activations"); a click shows
    one over the image."""

    method = "activations"

    def params(self) -> dict[str, Any]:
        return {"channel": -1}

    def draw(self, explanation: Any):
        maps = explanation.attribution  # (K, h, w)
        order = montage.strongest(maps, MAX_TILES)
        h, w = maps.shape[1:]
        enlarged = F.interpolate(maps[order][None], size=(self.tile, self.tile), mode="bilinear",
                                 align_corners=False)[0]
        grid = montage.feature_grid(enlarged, columns=COLUMNS, pad=GAP, background=-1.0)
        picture = render.colorize(grid, "viridis")
        picture[grid < 0] = 255  # white between the tiles
        caption = (f"{explanation.layer}: {len(order)} of {maps.shape[0]} channels ({h}×{w}), "
                   "most active first; click one to show it over the image")
        return picture, order, caption

    def on_tile(self, index: int) -> None:
        self.owner.select_channel(index)


class FilterPanel(CanvasPanel):
    """The filters of the convolution behind the current layer (method "filters")."""

    method = "filters"

    def draw(self, explanation: Any):
        weight = explanation.attribution  # (out, in, kh, kw)
        shown = weight[:MAX_TILES]
        scale = max(1, self.tile // max(weight.shape[-2:]))
        picture = montage.filter_montage(shown, columns=COLUMNS, pad=GAP, scale=scale)
        self.tile = scale * max(weight.shape[-2:])
        kind = "in colour (RGB)" if weight.shape[1] == 3 else f"mean over {weight.shape[1]} input channels"
        caption = (f"{explanation.layer}: {len(shown)} of {weight.shape[0]} filters "
                   f"{weight.shape[2]}×{weight.shape[3]}, {kind}")
        return picture, list(range(len(shown))), caption
