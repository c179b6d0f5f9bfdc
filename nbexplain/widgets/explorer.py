"""``Explorer``: an image, its heatmap and live controls; every move recomputes in the background.

The state (method, layer, target, params, opacity, cmap, mode, brush_size, baseline, mask,
image, index) is traitlets fields (``state.py``): observable, checked by the validators below
whether set from code (a bad value raises) or from a control (the error shows inside the
widget), and ``reactions`` declares what each change makes happen. Engine calls run on one
worker thread (``scheduler.py``); a cache serves what was computed before, synchronously, so
going back is instant.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
import traitlets as t

from ..checks import check_count
from ..engine import registry
from ..engine.perturb import BASELINES, check_baseline, check_mask
from ..engine.targets import resolve_target
from .arguments import (
    as_explainer,
    check_brush_size,
    check_cmap,
    check_index,
    check_layer,
    check_method,
    check_mode,
    check_opacity,
    check_params,
    default_layer,
)
from .cache import CACHE_BYTES, mask_digest, same_frozen, same_mask
from .cached import CachedExplainer
from .canvas import HeatmapCanvas
from .controls import Controls, cmap_option, cmap_value
from .host import WidgetHost
from .images import ImageList
from .panels import FeaturePanel, FilterPanel, PredictionsPanel
from .scheduler import Scheduler
from .state import Field, Reactions, StateHost, bind, mirror, proposed, show, start
from .view import MapView

OPTIONS = ("opacity", "cmap", "mode", "brush_size", "baseline", "topk", "cache_size", "cache_bytes")
MODEL_OPTIONS = ("preprocess", "labels", "device", "output")
LANES = ("predict", "explain", "panel")  # served in this order


def _always_new(a: Any, b: Any) -> bool:
    return False  # an image set again may have changed in place: it is a new image


class Explorer(StateHost, WidgetHost):
    """Explore a model's explanations of ``image`` (or a list of images) in a notebook.

    ``nbx.Explorer(explainer_or_model, image, method="gradcam", layer=None, target=None, **kw)``:
    ``kw`` holds the method's parameters, the view options ``opacity`` (0..1), ``cmap``
    (``None`` = jet, or bwr for signed maps), ``mode`` ("explain", "brush", "patch"),
    ``brush_size``, ``baseline`` (what occluded pixels become), ``topk``, ``cache_size`` (results
    kept) and ``cache_bytes`` (their memory, default 512 MiB);
    with a model (not an Explainer) also ``preprocess``, ``labels``, ``device``, ``output``.

    Every state value is a traitlets field: ``explorer.observe(fn, names="layer")`` hears each
    change, from code (``explorer.layer = ...``, ``explorer.set(...)``) or from a control.
    Read ``explanation``, ``predictions`` (top-k under the current mask), ``status``,
    ``error`` and ``last_ms``; call ``wait()`` before reading them in a script, ``close()`` when
    done. Engine calls on one model take turns (the engine's ``model_lock``), so your own cells
    may use the same Explainer while the widget computes; they wait for the widget's call.
    """

    method = Field("The method shown (a name of ``nbx.methods()``); its params reset.")
    layer = Field("The layer of a layer method (kept while a pixel method is shown).")
    target = Field("The class explained: ``None`` (top-1), an index or a label.")
    params = Field("The method's parameters (every one, defaults filled in); set a dict of some of them.",
                   same=same_frozen, read=dict)
    opacity = Field("The heatmap's opacity, 0..1 (the browser blends; no recompute).")
    cmap = Field("The colormap; ``None``: jet, or bwr for signed maps.")
    mode = Field('"explain", "brush" (paint an occlusion mask) or "patch" (a square occluder).')
    brush_size = Field("The brush radius / patch side, in input pixels.")
    baseline = Field("What occluded pixels become: a number, 'zeros', 'mean' or 'blur'.")
    mask = Field("The occlusion mask, ``(H, W)`` float32 in [0, 1] (zeros when nothing is painted).",
                 same=same_mask, read=np.copy)
    image = Field("The image shown (as given); setting replaces it in ``images``.", same=_always_new)
    index = Field("Which of ``images`` is shown.")

    reactions = Reactions(
        # the canvas
        show("image", "index", do="_show_image"),
        show("mask", do="_show_mask"),
        mirror("opacity", "canvas.opacity"),
        mirror("cmap", "canvas.cmap", show=cmap_option),
        mirror("mode", "canvas.mode"),
        mirror("brush_size", "canvas.brush_size"),
        # the controls
        bind("method", "controls.method"),
        bind("layer", "controls.layer", choices=True, show="controls.inside.block"),  # a sub-layer: its block
        show("layer", "method", do="controls.inside.show"),  # the block's sub-layers, one step away
        bind("opacity", "controls.opacity"),
        bind("cmap", "controls.cmap", show=cmap_option, read=cmap_value),
        bind("mode", "controls.mode"),
        bind("brush_size", "controls.brush_size"),
        bind("brush_size", "controls.patch_size"),
        bind("baseline", "controls.baseline", choices=True),
        show("method", do="controls.show_method"),
        show("mode", do="controls.show_mode"),
        show("method", "params", "layer", "cmap", do="features.show_choice"),
        show("method", "params", do="controls.show_params"),
        show("target", "image", "index", do="controls.show_target"),
        show("image", "index", do="controls.show_index"),
        # the computations
        start("mode", do="_drop_patch"),
        start("mask", "baseline", "image", "index", do="top_k.request"),
        start("method", "params", "target", "image", "index", do="_request_explanation"),
        start("layer", do="_request_explanation", when=lambda explorer: explorer.method_info.needs_layer),
        start("layer", "image", "index", do="_refresh_panels"),
    )
    baselines = BASELINES

    def __init__(self, model_or_explainer: Any, image: Any, *, method: str = "gradcam",
                 layer: str | None = None, target: int | str | None = None, **kw: Any):
        super().__init__()
        self._closed = False
        model_options = {k: kw.pop(k) for k in MODEL_OPTIONS if k in kw}
        self.explainer = as_explainer(model_or_explainer, model_options)
        spec = check_method(method)
        params = {k: kw.pop(k) for k in spec.param_names() if k in kw}
        unknown = sorted(set(kw) - set(OPTIONS))
        if unknown:
            raise TypeError(
                f"Explorer got unexpected keyword argument(s) {unknown}; valid: method, layer, target, "
                f"{list(OPTIONS)}, the parameters of {method!r} {spec.param_names()}"
                + (f", and with a model {list(MODEL_OPTIONS)}" if model_options else "")
            )
        self.topk = check_count(kw.get("topk", 5), "topk")
        self._images = ImageList(self.explainer, image)  # raises for a list of mixed sizes
        self.engine = CachedExplainer(self.explainer, size=kw.get("cache_size", 256),
                                      max_bytes=kw.get("cache_bytes", CACHE_BYTES))
        self.scheduler = Scheduler(LANES, on_error=lambda job, error: self._show_error(error, job.lane))
        self.image_shape = tuple(self._images.tensor(0).shape[-2:])
        self._last_layer = default_layer(self.explainer)  # where a last_layer_only method (cam) is pinned
        given = dict(method=method, target=target, params=params, opacity=kw.get("opacity", 0.5),
                     cmap=kw.get("cmap"), mode=kw.get("mode", "explain"),
                     brush_size=kw.get("brush_size", max(1, max(self.image_shape) // 14)),
                     baseline=kw.get("baseline", "blur"), **({} if layer is None else {"layer": layer}))
        self._start(given, layer=self._last_layer, mask=np.zeros(self.image_shape, np.float32),
                    image=self._images[0], index=0)

        self._error, self._error_source = "", ""  # a control's value, the predictions (not the map)
        self._build()
        self._follow_views()
        self._show_all()

    # -- the widget --------------------------------------------------------------------------
    def _build(self) -> None:
        self.canvas = HeatmapCanvas()
        self.canvas.on_mask(self._on_canvas_mask)
        self.canvas.on_patch(self._on_canvas_patch)
        self.view = MapView(self.canvas, self.engine, self.scheduler, "explain", on_change=self._render)
        self.controls = Controls(self)
        self.status_label = W.HTML()
        self.error_label = W.HTML(layout=W.Layout(display="none"))
        self.top_k = PredictionsPanel(self)
        self.predictions_panel = self.top_k.widget
        self.features = FeaturePanel(self)
        self.filters = FilterPanel(self)
        c = self.controls
        panels = W.Accordion(children=[self.features.widget, self.filters.widget], selected_index=None)
        panels.set_title(0, "feature maps of this layer (click one)")
        panels.set_title(1, "filters of this layer")
        panels.observe(lambda change: self._refresh_panels(), names="selected_index")
        self.panels = panels
        side = W.VBox([
            c.method, c.layer, c.inside.dropdown, c.target.box, c.params,
            W.HBox([c.opacity, c.cmap]), c.mode, W.HBox([c.brush_size, c.patch_size, c.baseline]),
            W.HBox([c.clear, c.occlusion]), c.progress_row,
            W.HTML("<b>predictions</b>"), self.predictions_panel,
        ], layout=W.Layout(width="392px", min_width="392px"))  # beside a 448-pixel canvas in ~850 px
        # the canvas shows every error, over the picture (bounded, wrapping, dismissible): the
        # error label is not shown again under it, and nothing long can widen this column
        wide = f"{self.canvas.display_width}px"
        left = W.VBox([self.canvas, c.navigation, self.status_label],
                      layout=W.Layout(width=wide, min_width=wide, overflow="hidden"))
        self.widget = W.VBox([W.HBox([left, side]), panels])
        self._render()

    def _parts(self) -> list[Any]:
        return [self.features, self.filters, self.top_k, self.canvas, *self.controls.widgets(),
                self.status_label, self.error_label, self.panels, self.widget]

    def _map_views(self) -> list[MapView]:
        return [self.view]

    def _release(self) -> None:
        self.top_k.clean.clear()
        self.top_k.predictions = None
        self._images.release()

    # -- checks (set() calls them for a whole batch before anything changes) ------------------
    @t.validate("method")
    def _valid_method(self, proposal: t.Bunch) -> str:
        return check_method(proposal.value).name

    @t.validate("params")
    def _valid_params(self, proposal: t.Bunch) -> dict[str, Any]:
        return check_params(proposal.value, registry.get(proposed(proposal, "method")))

    @t.validate("layer")
    def _valid_layer(self, proposal: t.Bunch) -> str:
        layer, method = check_layer(self.explainer, proposal.value), proposed(proposal, "method")
        if registry.get(method).last_layer_only and layer != self._last_layer:
            raise ValueError(f"layer: method {method!r} applies at the last feature map only, "
                             f"{self._last_layer!r}; got {layer!r}")
        return layer

    @t.validate("target")
    def _valid_target(self, proposal: t.Bunch) -> int | None:
        return resolve_target(proposal.value, self.explainer.labels)

    @t.validate("opacity", "cmap", "mode", "brush_size", "baseline")
    def _valid_view(self, proposal: t.Bunch) -> Any:
        check = {"opacity": check_opacity, "cmap": check_cmap, "mode": check_mode,
                 "brush_size": lambda size: check_brush_size(size, max(self.image_shape) // 2),
                 "baseline": lambda baseline: check_baseline(baseline, "Explorer")}[proposal.trait.name]
        return check(proposal.value)

    @t.validate("mask")
    def _valid_mask(self, proposal: t.Bunch) -> np.ndarray:
        if proposal.value is None:
            return np.zeros(self.image_shape, np.float32)
        return check_mask(proposal.value, self.image_shape).numpy().astype(np.float32)

    @t.validate("index")
    def _valid_index(self, proposal: t.Bunch) -> int:
        index = check_index(proposal.value, len(self._images))
        self._images.tensor(index)  # raises for an image the engine cannot take
        return index

    @t.validate("image")
    def _valid_image(self, proposal: t.Bunch) -> Any:
        return self._images.check(proposal.value, self.image_shape)

    def _derive(self, new: dict[str, Any], given: dict[str, Any]) -> None:
        if "method" in new and "params" not in given:
            new["params"] = registry.get(new["method"]).bind({})
        if "method" in new and registry.get(new["method"]).last_layer_only and "layer" not in given:
            new["layer"] = self._last_layer  # cam: the head pools this feature map only
        params = new.get("params", self.params)
        if "layer" in new and "params" not in given and params.get("channel", -1) != -1:
            new["params"] = {**params, "channel": -1}  # a channel number means a unit of its layer only
        if "index" in new and "image" not in given:
            new["image"] = self._images[new["index"]]
        if "index" in new or "image" in new:
            new["mask"] = np.zeros(self.image_shape, np.float32)  # a new picture starts unpainted

    def _settle(self, new: dict[str, Any], given: dict[str, Any]) -> None:
        if "image" in given:  # a new image at this index: a new name in the cache
            self._images.replace(self.index, new["image"])

    # -- reading -----------------------------------------------------------------------------
    @property
    def method_info(self) -> registry.Method:
        """The registry's declaration of the current method."""
        return registry.get(self.method)

    @property
    def images(self) -> tuple:
        return tuple(self._images.items)

    @property
    def image_token(self) -> int:
        """The cache's name for the current image (a new one for every image set)."""
        return self._images.token(self.index)

    @property
    def image_tensor(self):
        """The current image as the model-ready ``(1, C, H, W)`` tensor."""
        return self._images.tensor(self.index)

    @property
    def explanation(self):
        """The explanation on screen (``None`` before the first one is computed)."""
        return self.view.explanation

    @property
    def predictions(self) -> list | None:
        """Top-k predictions for the image under the current mask (or patch)."""
        return self.top_k.predictions

    @property
    def clean_predictions(self) -> list | None:
        """Top-k predictions for the image without any mask."""
        return self.top_k.clean.get(self.image_token)

    @property
    def status(self) -> str:
        """"ready", "computing", "error" (the map failed), "stopped" or "closed"."""
        return "closed" if self._closed else self.view.status

    @property
    def error(self) -> str:
        """The error shown in the widget ("" when none)."""
        return self._error or self.view.error

    @property
    def last_ms(self) -> float | None:
        """Milliseconds from the last explanation request to its map being on the canvas."""
        return self.view.last_ms

    # -- what follows a change (the reactions) -----------------------------------------------
    def _show_image(self) -> None:
        self.top_k.patch = None
        self.canvas.set_image(self.explainer.display_image(self.image_tensor))

    def _show_mask(self) -> None:
        """The canvas shows the mask, unless it has it already (it was painted there)."""
        mask = self.mask
        if mask_digest(self.canvas.mask) != mask_digest(mask):
            self.canvas.set_mask(mask)

    def _drop_patch(self) -> None:
        if self.mode != "patch" and self.top_k.patch is not None:
            self.top_k.patch = None
            self.top_k.request()

    def _request_explanation(self) -> None:
        layer = self.layer if self.method_info.needs_layer else None
        self.view.request(self.image_token, self.image_tensor, self.method, self.target, self.params, layer,
                          progress=self._progress)

    def _progress(self, fraction: float) -> None:
        """Progress of a long map (worker thread): the bar and a stop button show, and the brush
        stays live."""
        self.controls.show_progress(fraction)
        self.scheduler.service(["predict"])

    def _refresh_panels(self) -> None:
        for panel, index in ((self.features, 0), (self.filters, 1)):
            if self.panels.selected_index == index:
                panel.refresh()

    # -- the user's moves that are not a control's value -------------------------------------
    def select_channel(self, channel: int) -> None:
        """Show feature map ``channel`` of the current layer (method "activations")."""
        self.from_controls({"method": "activations", "params": {"channel": int(channel)}})

    def stop(self) -> None:
        """Stop the running explanation (the full occlusion map, say)."""
        self.view.stop()

    def _on_canvas_mask(self, mask: np.ndarray, final: bool) -> None:
        self.from_control("mask", mask)

    def _on_canvas_patch(self, mask: np.ndarray | None) -> None:
        self.top_k.patch = None if mask is None or not mask.any() else mask
        self.top_k.request()

    # -- showing errors and the status (any thread) -------------------------------------------
    def _show_error(self, error: BaseException, source: str) -> None:
        """An error outside the map's own computation (the map's is the view's): a control's
        value, the predictions, or (last resort) a job's unhandled exception."""
        with self._state_lock:
            self._error, self._error_source = f"{type(error).__name__}: {error}", source
            self.canvas.error = self._error
            self._render()

    def _clear_error(self, source: str) -> None:
        with self._state_lock:
            if self._error and self._error_source == source:
                self._error = ""
                self.canvas.error = self.view.error
                self._render()

    def _render(self, view: MapView | None = None) -> None:
        """Status line, error box and progress bar from the current state (any thread)."""
        view = self.view
        self.status_label.value = f"<small>{html.escape(view.summary())}</small>"
        if view.status != "computing":
            self.controls.show_progress(None)
        message = self.error
        self.error_label.value = (
            f"<div style='color:#b00020;white-space:pre-wrap'>{html.escape(message)}</div>" if message else ""
        )
        self.error_label.layout.display = "" if message else "none"

    def __repr__(self) -> str:
        return (
            f"Explorer(method={self.method!r}, layer={self.layer!r}, target={self.target!r}, "
            f"params={self.params!r}, status={self.status!r})"
        )
