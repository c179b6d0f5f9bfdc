"""``Explorer``: an image, its heatmap and live controls; every move recomputes in the background.

The state (method, layer, target, params, opacity, cmap, mode, brush_size, baseline, mask,
image, index) is plain Python properties: set from code they validate and raise; set from a
control they validate the same way and show the error inside the widget. Either way the
controls and the canvas follow. Engine calls run on one worker thread (``scheduler.py``); a
cache serves what was computed before, synchronously, so going back is instant.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as W
import numpy as np

from ..checks import check_count
from ..engine import registry
from ..engine.targets import resolve_target
from ..methods.occlusion import BASELINES, check_baseline, check_mask
from .canvas import HeatmapCanvas
from .controls import MODES, Controls
from .host import WidgetHost
from .panels import FeaturePanel, FilterPanel, predictions_html
from .scheduler import CACHE_BYTES, CachedExplainer, Job, Scheduler, freeze, mask_digest
from .view import (
    MapView,
    as_explainer,
    check_cmap,
    check_layer,
    check_method,
    check_opacity,
    default_layer,
    prepare_image,
)

OPTIONS = ("opacity", "cmap", "mode", "brush_size", "baseline", "topk", "cache_size", "cache_bytes")
MODEL_OPTIONS = ("preprocess", "labels", "device", "output")
STATE = ("method", "layer", "target", "params", "opacity", "cmap", "mode", "brush_size", "baseline",
         "mask", "image", "index")
LANES = ("predict", "explain", "panel")  # served in this order


def check_mode(value: Any) -> str:
    if value not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}; got {value!r}")
    return value


def _state(name: str, doc: str) -> property:
    """A state value: reading gives it, setting goes through ``Explorer.set`` (checked, shown)."""
    return property(lambda self: getattr(self, f"_{name}"), lambda self, value: self.set(**{name: value}),
                    doc=doc)


class Explorer(WidgetHost):
    """Explore a model's explanations of ``image`` (or a list of images) in a notebook.

    ``nbx.Explorer(explainer_or_model, image, method="gradcam", layer=None, target=None, **kw)``:
    ``kw`` holds the method's parameters, the view options ``opacity`` (0..1), ``cmap``
    (``None`` = jet, or bwr for signed maps), ``mode`` ("explain", "brush", "patch"),
    ``brush_size``, ``baseline`` (what occluded pixels become), ``topk``, ``cache_size`` (results
    kept) and ``cache_bytes`` (their memory, default 512 MiB);
    with a model (not an Explainer) also ``preprocess``, ``labels``, ``device``, ``output``.

    Read ``explanation``, ``predictions`` (top-k under the current mask), ``status``,
    ``error`` and ``last_ms``; call ``wait()`` before reading them in a script, ``close()`` when
    done. Engine calls on one model take turns (the engine's ``model_lock``), so your own cells
    may use the same Explainer while the widget computes; they wait for the widget's call.
    """

    def __init__(self, model_or_explainer: Any, image: Any, *, method: str = "gradcam",
                 layer: str | None = None, target: int | str | None = None, **kw: Any):
        self._closed = False
        model_options = {k: kw.pop(k) for k in MODEL_OPTIONS if k in kw}
        self.explainer = as_explainer(model_or_explainer, model_options)
        self._spec = check_method(method)
        params = {k: kw.pop(k) for k in self._spec.param_names() if k in kw}
        unknown = sorted(set(kw) - set(OPTIONS))
        if unknown:
            raise TypeError(
                f"Explorer got unexpected keyword argument(s) {unknown}; valid: method, layer, target, "
                f"{list(OPTIONS)}, the parameters of {method!r} {self._spec.param_names()}"
                + (f", and with a model {list(MODEL_OPTIONS)}" if model_options else "")
            )
        self.topk = check_count(kw.get("topk", 5), "topk")
        self.engine = CachedExplainer(self.explainer, size=kw.get("cache_size", 256),
                                      max_bytes=kw.get("cache_bytes", CACHE_BYTES))
        self.scheduler = Scheduler(LANES, on_error=lambda job, error: self._show_error(error, job.lane))

        self._images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not self._images:
            raise ValueError("image: the list of images is empty")
        self._tensors: dict[int, Any] = {}
        self._tokens = list(range(len(self._images)))
        self._next_token = len(self._images)
        self._index = 0
        self._x = self._prepare(0)
        self.image_shape = tuple(self._x.shape[-2:])
        self._method = self._spec.name
        self._params = self._spec.bind(params)
        self._layer = default_layer(self.explainer) if layer is None else check_layer(self.explainer, layer)
        self._target = resolve_target(target, self.explainer.labels)
        self._opacity = check_opacity(kw.get("opacity", 0.5))
        self._cmap = check_cmap(kw.get("cmap"))
        self._mode = check_mode(kw.get("mode", "explain"))
        self._brush_size = self._check_brush_size(kw.get("brush_size", max(1, max(self.image_shape) // 14)))
        self._baseline = check_baseline(kw.get("baseline", "blur"), "Explorer")
        self._mask: np.ndarray | None = None
        self._patch: np.ndarray | None = None

        self._predictions: list | None = None
        self._clean: dict[int, list] = {}  # image token -> predictions without a mask
        self._error, self._error_source = "", ""  # a control's value, the predictions (not the map)
        self._predict_seq = 0
        self._lock = threading.RLock()
        self._build()
        self._request_predictions()
        self._request_explanation()

    # -- the widget --------------------------------------------------------------------------
    def _build(self) -> None:
        self.canvas = HeatmapCanvas()
        self.canvas.set_image(self.explainer.display_image(self._x))
        self.canvas.opacity = self._opacity
        self.canvas.cmap = self._cmap or "auto"
        self.canvas.mode = self._mode
        self.canvas.brush_size = self._brush_size
        self.canvas.on_mask(self._on_canvas_mask)
        self.canvas.on_patch(self._on_canvas_patch)
        self.view = MapView(self.canvas, self.engine, self.scheduler, "explain", on_change=self._render)
        self.controls = Controls(self)
        self.status_label = W.HTML()
        self.error_label = W.HTML(layout=W.Layout(display="none"))
        self.predictions_panel = W.HTML()
        self.features = FeaturePanel(self)
        self.filters = FilterPanel(self)
        c = self.controls
        panels = W.Accordion(children=[self.features.widget, self.filters.widget], selected_index=None)
        panels.set_title(0, "feature maps of this layer (click one)")
        panels.set_title(1, "filters of this layer")
        panels.observe(lambda change: self._refresh_panels(), names="selected_index")
        self.panels = panels
        side = W.VBox([
            c.method, c.layer, c.target.box, c.params,
            W.HBox([c.opacity, c.cmap]), c.mode, W.HBox([c.brush_size, c.baseline]),
            W.HBox([c.clear, c.occlusion, c.stop, c.progress]),
            W.HTML("<b>predictions</b>"), self.predictions_panel,
        ], layout=W.Layout(width="440px"))
        left = W.VBox([self.canvas, c.navigation, self.status_label, self.error_label])
        self.widget = W.VBox([W.HBox([left, side]), panels])
        self._render()

    # -- checks ------------------------------------------------------------------------------
    baselines = BASELINES

    def _check_brush_size(self, value: Any) -> int:
        limit = max(self.image_shape) // 2
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= limit:
            raise ValueError(f"brush_size must be an int in [1, {limit}]; got {value!r}")
        return int(value)

    def _check_mask(self, value: Any) -> np.ndarray | None:
        if value is None:
            return None
        mask = check_mask(value, self.image_shape).numpy().astype(np.float32)
        return mask if mask.any() else None

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self._images):
            raise ValueError(f"index must be an int in [0, {len(self._images) - 1}]; got {index!r}")
        self._prepare(index)  # raises for an image the engine cannot take
        return index

    def _check_image(self, image: Any):
        x = prepare_image(self.explainer, image)
        if tuple(x.shape[-2:]) != self.image_shape:
            raise ValueError(
                f"image: the model input must stay {self.image_shape} (H, W); got {tuple(x.shape[-2:])}"
            )
        return x

    def _prepare(self, index: int):
        """The model-ready tensor of image ``index`` (prepared once)."""
        token = self._tokens[index]
        if token not in self._tensors:
            self._tensors[token] = prepare_image(self.explainer, self._images[index])
        return self._tensors[token]

    # -- state -------------------------------------------------------------------------------
    method = _state("method", "The method shown (a name of ``nbx.methods()``); its params reset.")
    layer = _state("layer", "The layer of a layer method (kept while a pixel method is shown).")
    target = _state("target", "The class explained: ``None`` (top-1), an index or a label.")
    opacity = _state("opacity", "The heatmap's opacity, 0..1 (the browser blends; no recompute).")
    cmap = _state("cmap", "The colormap; ``None``: jet, or bwr for signed maps.")
    mode = _state("mode", '"explain", "brush" (paint an occlusion mask) or "patch" (a square occluder).')
    brush_size = _state("brush_size", "The brush radius / patch side, in input pixels.")
    baseline = _state("baseline", "What occluded pixels become: a number, 'zeros', 'mean' or 'blur'.")
    index = _state("index", "Which of ``images`` is shown.")

    @property
    def method_info(self) -> registry.Method:
        """The registry's declaration of the current method."""
        return self._spec

    @property
    def params(self) -> dict[str, Any]:
        """The method's parameters (every one, defaults filled in); set a dict of some of them."""
        return dict(self._params)

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        self.set(params=value)

    @property
    def mask(self) -> np.ndarray:
        """The occlusion mask, ``(H, W)`` float32 in [0, 1] (zeros when nothing is painted)."""
        return np.zeros(self.image_shape, np.float32) if self._mask is None else self._mask.copy()

    @mask.setter
    def mask(self, value: Any) -> None:
        self.set(mask=value)

    @property
    def image(self) -> Any:
        """The image shown (as given); setting replaces it in ``images``."""
        return self._images[self._index]

    @image.setter
    def image(self, value: Any) -> None:
        self.set(image=value)

    @property
    def images(self) -> tuple:
        return tuple(self._images)

    @property
    def image_token(self) -> int:
        """The cache's name for the current image (a new one for every image set)."""
        return self._tokens[self._index]

    @property
    def image_tensor(self):
        """The current image as the model-ready ``(1, C, H, W)`` tensor."""
        return self._x

    @property
    def explanation(self):
        """The explanation on screen (``None`` before the first one is computed)."""
        return self.view.explanation

    @property
    def predictions(self) -> list | None:
        """Top-k predictions for the image under the current mask (or patch)."""
        return self._predictions

    @property
    def clean_predictions(self) -> list | None:
        """Top-k predictions for the image without any mask."""
        return self._clean.get(self.image_token)

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

    # -- changing the state ------------------------------------------------------------------
    def set(self, **changes: Any) -> Explorer:
        """Change several state values at once (one recomputation); all are checked before any
        is set, and a bad one raises naming it."""
        unknown = sorted(set(changes) - set(STATE))
        if unknown:
            raise TypeError(f"set() got unexpected keyword argument(s) {unknown}; valid: {list(STATE)}")
        if self._closed:
            raise RuntimeError("this Explorer was closed; create a new one")
        spec = check_method(changes["method"]) if "method" in changes else self._spec
        checks = {
            "method": lambda value: spec.name,
            "params": lambda value: spec.bind(_as_dict(value)),
            "layer": lambda value: check_layer(self.explainer, value),
            "target": lambda value: resolve_target(value, self.explainer.labels),
            "opacity": check_opacity, "cmap": check_cmap, "mode": check_mode,
            "brush_size": self._check_brush_size, "baseline": lambda value: check_baseline(value, "Explorer"),
            "mask": self._check_mask, "index": self._check_index, "image": self._check_image,
        }
        new = {name: checks[name](value) for name, value in changes.items()}
        if spec is not self._spec and "params" not in new:
            new["params"] = spec.bind({})
        if new.get("index") == self._index:
            del new["index"]
        self._apply(new, changes)
        return self

    def _apply(self, new: dict[str, Any], given: dict[str, Any]) -> None:
        c, canvas = self.controls, self.canvas
        explain = predict = panels = False
        if "method" in new and new["method"] != self._method:
            self._spec, self._method = registry.get(new["method"]), new["method"]
            explain = True
        if "params" in new and freeze(new["params"]) != freeze(self._params):
            self._params = new["params"]
            explain = True
        if "method" in new or "params" in new:
            c.sync("method")
        if "layer" in new and new["layer"] != self._layer:
            self._layer = new["layer"]
            explain = explain or self._spec.needs_layer
            panels = True
            c.sync("layer")
        if "target" in new and new["target"] != self._target:
            self._target = new["target"]
            explain = True
            c.sync("target")
        if "index" in new:
            self._index = new["index"]
        if "image" in new or "index" in new:
            if "image" in new:
                token, self._next_token = self._next_token, self._next_token + 1
                self._tensors.pop(self.image_token, None)
                self._tokens[self._index], self._images[self._index] = token, given["image"]
                self._tensors[token] = new["image"]
            self._x = self._prepare(self._index)
            canvas.set_image(self.explainer.display_image(self._x))
            canvas.set_mask(None)
            self._mask = self._patch = None
            new.pop("mask", None)
            explain = predict = panels = True
            c.sync("index")
            c.sync("target")
        if "mask" in new and mask_digest(new["mask"]) != mask_digest(self._mask):
            self._mask = new["mask"]
            canvas.set_mask(self._mask)
            predict = True
        for name in ("opacity", "mode", "brush_size", "baseline"):
            if name in new and new[name] != getattr(self, f"_{name}"):
                setattr(self, f"_{name}", new[name])
                c.sync(name)
                if name == "baseline":
                    predict = True
                else:
                    setattr(canvas, name, new[name])
        if self._mode != "patch" and self._patch is not None:
            self._patch = None
            predict = True
        if "cmap" in new and new["cmap"] != self._cmap:
            self._cmap = new["cmap"]
            canvas.cmap = self._cmap or "auto"
            c.sync("cmap")
        if predict:
            self._request_predictions()
        if explain:
            self._request_explanation()
        if panels:
            self._refresh_panels()

    def from_control(self, name: str, value: Any) -> None:
        """A control changed: set the state; an invalid value is shown, not raised, and the
        control goes back to the state's value."""
        try:
            self.set(**{name: value})
        except Exception as error:
            self._show_error(error, "control")
            self.controls.sync(name)
        else:
            self._clear_error("control")

    def select_channel(self, channel: int) -> None:
        """Show feature map ``channel`` of the current layer (method "activations")."""
        try:
            self.set(method="activations", params={"channel": int(channel)})
        except Exception as error:
            self._show_error(error, "control")
        else:
            self._clear_error("control")

    def stop(self) -> None:
        """Stop the running explanation (the full occlusion map, say)."""
        self.view.stop()

    def _parts(self) -> list[Any]:
        return [self.features, self.filters, self.canvas, *self.controls.widgets(), self.status_label,
                self.error_label, self.predictions_panel, self.panels, self.widget]

    # -- requests ----------------------------------------------------------------------------
    def _request_explanation(self) -> None:
        layer = self._layer if self._spec.needs_layer else None
        self.view.request(self.image_token, self._x, self._method, self._target, self.params, layer,
                          progress=self._progress)

    def _progress(self, fraction: float) -> None:
        """Progress of a long map (worker thread): the bar and a stop button show, and the brush
        stays live."""
        self.controls.show_progress(fraction)
        self.scheduler.service(["predict"])

    def _request_predictions(self) -> None:
        token, x, baseline = self.image_token, self._x, self._baseline
        mask = self._mask
        if self._patch is not None:
            mask = self._patch if mask is None else np.maximum(mask, self._patch)
        with self._lock:
            self._predict_seq += 1
            seq = self._predict_seq
        key = self.engine.predictions_key(token, mask_digest(mask), baseline, self.topk)
        found = self.engine.predictions.get(key)
        if found is not None:
            self.scheduler.cancel("predict")
            self._show_predictions(found, seq, token, mask is None)
            return

        def run(job: Job) -> None:
            try:
                result = self.engine.predict(token, x, mask, baseline, self.topk)
            except Exception as error:
                self._show_error(error, "predictions")
            else:
                self._show_predictions(result, seq, token, mask is None)
                self._clear_error("predictions")

        self.scheduler.submit("predict", run)

    def _refresh_panels(self) -> None:
        for panel, index in ((self.features, 0), (self.filters, 1)):
            if self.panels.selected_index == index:
                panel.refresh()

    # -- showing results (main thread for cache hits, worker thread otherwise) ----------------
    def _show_predictions(self, predictions: list, seq: int, token: int, clean: bool) -> None:
        with self._lock:
            if clean and token not in self._clean:
                self._clean[token] = predictions
                if token == self.image_token:
                    self.controls.sync("target")
            if seq != self._predict_seq:
                return
            self._predictions = predictions
            reference = None if clean else self._clean.get(token)
            self.predictions_panel.value = predictions_html(predictions, reference)

    def _show_error(self, error: BaseException, source: str) -> None:
        """An error outside the map's own computation (the map's is the view's): a control's
        value, the predictions, or (last resort) a job's unhandled exception."""
        with self._lock:
            self._error, self._error_source = f"{type(error).__name__}: {error}", source
            self.canvas.error = self._error
            self._render()

    def _clear_error(self, source: str) -> None:
        with self._lock:
            if self._error and self._error_source == source:
                self._error = ""
                self.canvas.error = self.view.error
                self._render()

    def _render(self, view: MapView | None = None) -> None:
        """Status line, error box and progress bar from the current state (any thread)."""
        view = self.view
        e = view.explanation
        if view.status == "computing":
            text = f"computing {view.describe} …"
        elif view.status == "stopped":
            text = "stopped"
        elif view.status == "error":
            text = "error (see below)"
        elif e is None:
            text = "…"
        else:
            where = f" · {e.layer}" if e.layer else ""
            ms = f" · {view.last_ms:.0f} ms" if view.last_ms is not None else ""
            text = f"{e.method}{where} · {e.label} (score {e.score:.3g}){ms}"
        self.status_label.value = f"<small>{html.escape(text)}</small>"
        if view.status != "computing":
            self.controls.show_progress(None)
        message = self.error
        self.error_label.value = (
            f"<div style='color:#b00020;white-space:pre-wrap'>{html.escape(message)}</div>" if message else ""
        )
        self.error_label.layout.display = "" if message else "none"

    # -- the canvas's callbacks --------------------------------------------------------------
    def _on_canvas_mask(self, mask: np.ndarray, final: bool) -> None:
        self._mask = mask.astype(np.float32, copy=True) if mask is not None and mask.any() else None
        self._request_predictions()

    def _on_canvas_patch(self, mask: np.ndarray | None) -> None:
        self._patch = None if mask is None or not mask.any() else mask
        self._request_predictions()

    def __repr__(self) -> str:
        return (
            f"Explorer(method={self._method!r}, layer={self._layer!r}, target={self._target!r}, "
            f"params={self._params!r}, status={self.status!r})"
        )


def _as_dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"params must be a dict; got {type(value).__name__}")
    return value
