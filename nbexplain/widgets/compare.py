"""``Compare``: one image under several methods side by side, sharing the class and layer.

For teaching: pick a class or move the layer slider and every map follows. Each method has its
own canvas and its own lane on one worker thread (latest request wins per method); results are
cached, so going back is instant.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from typing import Any

import ipywidgets as W

from .. import render
from ..checks import check_count
from ..engine.targets import resolve_target
from .canvas import HeatmapCanvas
from .controls import AUTO_CMAP, WIDE, TargetPicker, layer_slider, show_layer
from .host import WidgetHost
from .scheduler import CACHE_BYTES, CachedExplainer, Job, Scheduler, freeze
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

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")


class Compare(WidgetHost):
    """``nbx.Compare(explainer, image, methods=[...])``: every method's map of ``image`` at once.

    Shared state: ``target`` (None = top-1, an index or a label), ``layer`` (for the layer
    methods), ``opacity`` and ``cmap``; per method ``params`` (``params={"smoothgrad":
    {"samples": 10}}``). Read ``explanations`` (method -> Explanation), ``errors``,
    ``predictions``, ``status``; ``wait()`` before reading in a script; ``close()`` when done.
    """

    def __init__(
        self,
        explainer: Any,
        image: Any,
        methods: Sequence[str] = DEFAULT_METHODS,
        *,
        layer: str | None = None,
        target: int | str | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        opacity: float = 0.5,
        cmap: str | None = None,
        columns: int = 3,
        cache_size: int = 128,
        cache_bytes: int | None = CACHE_BYTES,
    ):
        self.explainer = as_explainer(explainer, {})
        if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
            raise TypeError(f"methods must be a non-empty list of method names; got {methods!r}")
        specs = [check_method(name) for name in methods]
        if len({spec.name for spec in specs}) != len(specs):
            raise ValueError(f"methods must not repeat a method; got {list(methods)}")
        self.methods = tuple(spec.name for spec in specs)
        self._specs = {spec.name: spec for spec in specs}
        given = self._check_params({} if params is None else params)
        self._params = {name: given.get(name, spec.bind({})) for name, spec in self._specs.items()}
        check_count(columns, "columns")
        self._x = prepare_image(self.explainer, image)
        self.image = image
        self._layer = default_layer(self.explainer) if layer is None else check_layer(self.explainer, layer)
        self._target = resolve_target(target, self.explainer.labels)
        self._opacity = check_opacity(opacity)
        self._cmap = check_cmap(cmap)
        self._predictions: list | None = None
        self._error = ""
        self._closed = False
        self._lock = threading.RLock()
        self._quiet = threading.local()

        self.engine = CachedExplainer(self.explainer, size=cache_size, max_bytes=cache_bytes)
        self.scheduler = Scheduler(("predict", *self.methods), name="nbexplain-compare")
        self._build(columns)
        self._request_predictions()
        for name in self.methods:
            self._request(name)

    # -- the widget --------------------------------------------------------------------------
    def _build(self, columns: int) -> None:
        picture = self.explainer.display_image(self._x)
        self.picker = TargetPicker(self.explainer.labels, lambda target: self.from_control("target", target))
        self.layer_slider = layer_slider(self.explainer.layers())
        self.layer_slider.disabled = not any(spec.needs_layer for spec in self._specs.values())
        self.opacity_slider = W.FloatSlider(description="opacity", min=0, max=1, step=0.05, style=WIDE)
        self.cmap_picker = W.Dropdown(description="colormap", options=[AUTO_CMAP, *render.colormaps()],
                                      style=WIDE)
        self.error_label = W.HTML(layout=W.Layout(display="none"))
        self._sync()
        self.layer_slider.observe(lambda c: self._from_widget("layer", c["new"]), names="value")
        self.opacity_slider.observe(lambda c: self._from_widget("opacity", c["new"]), names="value")
        self.cmap_picker.observe(
            lambda c: self._from_widget("cmap", None if c["new"] == AUTO_CMAP else c["new"]), names="value"
        )
        self.canvases, self.views, self.labels, cells = {}, {}, {}, []
        for name in self.methods:
            canvas = HeatmapCanvas(picture, display_width=300)
            canvas.opacity, canvas.cmap = self._opacity, self._cmap or "auto"
            label = W.HTML()
            self.canvases[name], self.labels[name] = canvas, label
            self.views[name] = MapView(canvas, self.engine, self.scheduler, name, on_change=self._render)
            spec = self._specs[name]
            title = W.HTML(f"<b>{html.escape(name)}</b> <small>({html.escape(spec.family)})</small>")
            cells.append(W.VBox([title, canvas, label]))
        self.grid = W.GridBox(cells, layout=W.Layout(grid_template_columns=f"repeat({columns}, 320px)"))
        header = W.VBox([self.picker.box, self.layer_slider, W.HBox([self.opacity_slider, self.cmap_picker])])
        self.widget = W.VBox([header, self.error_label, self.grid])

    def _sync(self) -> None:
        """Show the state in the shared controls (without echoing it back; this thread only)."""
        self._quiet.on = True
        try:
            self.picker.show(self._target, self._predictions)
            show_layer(self.layer_slider, self._layer)
            self.opacity_slider.value = self._opacity
            self.cmap_picker.value = self._cmap or AUTO_CMAP
        finally:
            self._quiet.on = False

    def _from_widget(self, name: str, value: Any) -> None:
        if not getattr(self._quiet, "on", False):
            self.from_control(name, value)

    # -- state -------------------------------------------------------------------------------
    @property
    def layer(self) -> str | None:
        return self._layer

    @layer.setter
    def layer(self, value: str) -> None:
        self.set(layer=value)

    @property
    def target(self) -> int | None:
        return self._target

    @target.setter
    def target(self, value: int | str | None) -> None:
        self.set(target=value)

    @property
    def opacity(self) -> float:
        return self._opacity

    @opacity.setter
    def opacity(self, value: float) -> None:
        self.set(opacity=value)

    @property
    def cmap(self) -> str | None:
        return self._cmap

    @cmap.setter
    def cmap(self, value: str | None) -> None:
        self.set(cmap=value)

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        return {name: dict(values) for name, values in self._params.items()}

    @property
    def explanations(self) -> dict[str, Any]:
        """Method -> the explanation on screen (``None`` until computed)."""
        return {name: view.explanation for name, view in self.views.items()}

    @property
    def errors(self) -> dict[str, str]:
        """Method -> its error ("" when none)."""
        return {name: view.error for name, view in self.views.items()}

    @property
    def error(self) -> str:
        """An invalid value from a shared control ("" when none)."""
        return self._error

    @property
    def predictions(self) -> list | None:
        return self._predictions

    @property
    def status(self) -> str:
        """"computing" while any map is, else "error" if any failed, else "ready" (or "closed")."""
        if self._closed:
            return "closed"
        states = {view.status for view in self.views.values()}
        return next((s for s in ("computing", "error", "stopped") if s in states), "ready")

    def set(self, **changes: Any) -> Compare:
        """Change several values at once (validated before any is set): ``layer``, ``target``,
        ``opacity``, ``cmap``, ``params`` (method -> its parameters)."""
        unknown = sorted(set(changes) - {"layer", "target", "opacity", "cmap", "params"})
        if unknown:
            raise TypeError(f"set() got unexpected keyword argument(s) {unknown}")
        if self._closed:
            raise RuntimeError("this Compare was closed; create a new one")
        new: dict[str, Any] = {}
        if "layer" in changes:
            new["layer"] = check_layer(self.explainer, changes["layer"])
        if "target" in changes:
            new["target"] = resolve_target(changes["target"], self.explainer.labels)
        if "opacity" in changes:
            new["opacity"] = check_opacity(changes["opacity"])
        if "cmap" in changes:
            new["cmap"] = check_cmap(changes["cmap"])
        if "params" in changes:
            new["params"] = self._check_params(changes["params"])
        redo: set[str] = set()
        if new.get("layer", self._layer) != self._layer:
            self._layer = new["layer"]
            redo |= {name for name, spec in self._specs.items() if spec.needs_layer}
        if "target" in new and new["target"] != self._target:
            self._target = new["target"]
            redo |= set(self.methods)
        for name, values in new.get("params", {}).items():
            if freeze(values) != freeze(self._params[name]):
                self._params[name] = values
                redo.add(name)
        if "opacity" in new:
            self._opacity = new["opacity"]
        if "cmap" in new:
            self._cmap = new["cmap"]
        for canvas in self.canvases.values():
            canvas.opacity, canvas.cmap = self._opacity, self._cmap or "auto"
        self._sync()
        for name in self.methods:
            if name in redo:
                self._request(name)
        return self

    def _check_params(self, given: Any) -> dict[str, dict[str, Any]]:
        """``{method: {parameter: value}}`` for some of the methods, each bound and checked."""
        if not isinstance(given, dict) or set(given) - set(self.methods):
            raise ValueError(
                f"params must map some of the methods {list(self.methods)} to their parameters; "
                f"got {given!r}"
            )
        return {name: self._specs[name].bind(dict(values)) for name, values in given.items()}

    def from_control(self, name: str, value: Any) -> None:
        """A shared control changed: an invalid value is shown in the widget, not raised."""
        try:
            self.set(**{name: value})
        except Exception as error:
            self._sync()
            self._show_error(error)
        else:
            self._show_error(None)

    def _show_error(self, error: BaseException | None) -> None:
        self._error = "" if error is None else f"{type(error).__name__}: {error}"
        self.error_label.value = (
            f"<div style='color:#b00020'>{html.escape(self._error)}</div>" if self._error else ""
        )
        self.error_label.layout.display = "" if self._error else "none"

    def _parts(self) -> list[Any]:
        return [*self.canvases.values(), *self.labels.values(), *self.picker.widgets(), self.layer_slider,
                self.opacity_slider, self.cmap_picker, self.error_label, self.grid, self.widget]

    # -- computing ---------------------------------------------------------------------------
    def _request(self, name: str) -> None:
        layer = self._layer if self._specs[name].needs_layer else None
        self.views[name].request(0, self._x, name, self._target, self._params[name], layer)

    def _request_predictions(self) -> None:
        def run(job: Job) -> None:
            try:
                predictions = self.engine.predict(0, self._x, None, "blur", 5)
            except Exception as error:
                self._show_error(error)
                return
            with self._lock:
                self._predictions = predictions
                self._sync()

        self.scheduler.submit("predict", run)

    def _render(self, view: MapView) -> None:
        name = view.lane
        e = view.explanation
        if view.status == "computing":
            text = "computing …"
        elif view.status == "error":
            text = f"<span style='color:#b00020'>{html.escape(view.error)}</span>"
        elif e is None:
            text = "…"
        else:
            where = f" · {html.escape(e.layer)}" if e.layer else ""
            ms = f" · {view.last_ms:.0f} ms" if view.last_ms is not None else ""
            text = f"{html.escape(e.label)}{where}{ms}"
        self.labels[name].value = f"<small>{text}</small>"

    def __repr__(self) -> str:
        return f"Compare(methods={list(self.methods)}, layer={self._layer!r}, target={self._target!r})"
