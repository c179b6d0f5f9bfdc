"""``Compare``: one image under several methods side by side, sharing the class and layer.

For teaching: pick a class or move the layer slider and every map follows. Each method has its
own canvas and its own lane on one worker thread (latest request wins per method); results are
cached, so going back is instant. The shared state is traitlets fields, as the Explorer's
(``state.py``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import traitlets as t

from .. import render
from ..checks import check_count
from ..engine.targets import resolve_target
from .arguments import (
    as_explainer,
    check_cmap,
    check_layer,
    check_method,
    check_opacity,
    default_layer,
    prepare_image,
)
from .cache import CACHE_BYTES, same_frozen
from .cached import CachedExplainer
from .canvas import HeatmapCanvas
from .controls import AUTO_CMAP, WIDE, TargetPicker, cmap_option, cmap_value, layer_slider
from .host import WidgetHost
from .scheduler import Job, Scheduler
from .state import Field, Reactions, StateHost, bind, show, start
from .view import MapView

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")


def _copy_params(params: dict | None) -> dict | None:
    return None if params is None else {name: dict(values) for name, values in params.items()}


class Compare(StateHost, WidgetHost):
    """``nbx.Compare(explainer, image, methods=[...])``: every method's map of ``image`` at once.

    Shared state (traitlets fields: ``compare.observe(fn, names="target")``): ``target`` (None =
    top-1, an index or a label), ``layer`` (for the layer methods), ``opacity`` and ``cmap``; per
    method ``params`` (``params={"smoothgrad": {"samples": 10}}``). Read ``explanations``
    (method -> Explanation), ``errors``, ``predictions``, ``status``; ``wait()`` before reading in
    a script; ``close()`` when done.
    """

    layer = Field("The layer of the layer methods (the pixel methods ignore it).")
    target = Field("The class every map explains: ``None`` (top-1), an index or a label.")
    opacity = Field("The heatmaps' opacity, 0..1.")
    cmap = Field("The colormap; ``None``: jet, or bwr for signed maps.")
    params = Field("Method -> its parameters (every one); set a dict for some of the methods.",
                   same=same_frozen, read=_copy_params)

    reactions = Reactions(
        bind("layer", "layer_slider", choices=True),
        bind("opacity", "opacity_slider"),
        bind("cmap", "cmap_picker", show=cmap_option, read=cmap_value),
        show("target", do="_show_target"),
        show("opacity", "cmap", do="_show_view"),
        start("layer", "target", "params", do="_recompute"),
    )

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
        super().__init__()
        self._closed = False
        self.explainer = as_explainer(explainer, {})
        if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
            raise TypeError(f"methods must be a non-empty list of method names; got {methods!r}")
        specs = [check_method(name) for name in methods]
        if len({spec.name for spec in specs}) != len(specs):
            raise ValueError(f"methods must not repeat a method; got {list(methods)}")
        self.methods = tuple(spec.name for spec in specs)
        self._specs = {spec.name: spec for spec in specs}
        self._start({}, params={name: spec.bind({}) for name, spec in self._specs.items()})
        self._start({"params": {} if params is None else params})  # the given ones, checked
        check_count(columns, "columns")
        self._x = prepare_image(self.explainer, image)
        self.image = image
        given = dict(target=target, opacity=opacity, cmap=cmap, **({} if layer is None else {"layer": layer}))
        self._last_layer = default_layer(self.explainer)  # where a last_layer_only method (cam) is pinned
        self._start(given, layer=self._last_layer)
        self._predictions: list | None = None
        self._error = ""

        self.engine = CachedExplainer(self.explainer, size=cache_size, max_bytes=cache_bytes)
        self.scheduler = Scheduler(("predict", *self.methods), name="nbexplain-compare")
        self._build(columns)
        self._follow_views()
        self._request_predictions()
        self._show_all()

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
        self.canvases, self.views, self.labels, cells = {}, {}, {}, []
        for name in self.methods:
            canvas = HeatmapCanvas(picture, display_width=300)
            label = W.HTML()
            self.canvases[name], self.labels[name] = canvas, label
            self.views[name] = MapView(canvas, self.engine, self.scheduler, name, on_change=self._render)
            spec = self._specs[name]
            title = W.HTML(f"<b>{html.escape(name)}</b> <small>({html.escape(spec.family)})</small>")
            cells.append(W.VBox([title, canvas, label]))
        self.grid = W.GridBox(cells, layout=W.Layout(grid_template_columns=f"repeat({columns}, 320px)"))
        header = W.VBox([self.picker.box, self.layer_slider, W.HBox([self.opacity_slider, self.cmap_picker])])
        self.widget = W.VBox([header, self.error_label, self.grid])

    def _map_views(self) -> list[MapView]:
        return list(self.views.values())

    def _release(self) -> None:
        self._predictions = None

    def _parts(self) -> list[Any]:
        return [*self.canvases.values(), *self.labels.values(), *self.picker.widgets(), self.layer_slider,
                self.opacity_slider, self.cmap_picker, self.error_label, self.grid, self.widget]

    # -- checks ------------------------------------------------------------------------------
    @t.validate("layer")
    def _valid_layer(self, proposal: t.Bunch) -> str:
        return check_layer(self.explainer, proposal.value)

    @t.validate("target")
    def _valid_target(self, proposal: t.Bunch) -> int | None:
        return resolve_target(proposal.value, self.explainer.labels)

    @t.validate("opacity")
    def _valid_opacity(self, proposal: t.Bunch) -> float:
        return check_opacity(proposal.value)

    @t.validate("cmap")
    def _valid_cmap(self, proposal: t.Bunch) -> str | None:
        return check_cmap(proposal.value)

    @t.validate("params")
    def _valid_params(self, proposal: t.Bunch) -> dict[str, dict[str, Any]]:
        """``{method: {parameter: value}}`` for some of the methods, each bound and checked; the
        others keep theirs."""
        given = proposal.value
        if not isinstance(given, dict) or set(given) - set(self.methods):
            raise ValueError(
                f"params must map some of the methods {list(self.methods)} to their parameters; "
                f"got {given!r}"
            )
        bound = {name: self._specs[name].bind(dict(values)) for name, values in given.items()}
        return {**self.params, **bound}

    # -- reading -----------------------------------------------------------------------------
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

    # -- what follows a change (the reactions) -----------------------------------------------
    def _show_target(self) -> None:
        self.picker.show(self.target, self._predictions)

    def _show_view(self) -> None:
        for canvas in self.canvases.values():
            canvas.opacity, canvas.cmap = self.opacity, cmap_option(self.cmap)

    def _recompute(self) -> None:
        """Every method whose map depends on what changed: its request differs from the last."""
        for name in self.methods:
            self._request(name)

    def _request(self, name: str) -> None:
        spec = self._specs[name]
        layer = (self._last_layer if spec.last_layer_only else self.layer) if spec.needs_layer else None
        params = self.params[name]
        view = self.views[name]
        if view.requested != self.engine.explanation_key(0, name, self.target, params, layer):
            view.request(0, self._x, name, self.target, params, layer)

    def _show_error(self, error: BaseException, source: str = "control") -> None:
        self._error = f"{type(error).__name__}: {error}"
        self.error_label.value = f"<div style='color:#b00020'>{html.escape(self._error)}</div>"
        self.error_label.layout.display = ""

    def _clear_error(self, source: str = "control") -> None:
        self._error = ""
        self.error_label.value = ""
        self.error_label.layout.display = "none"

    # -- computing ---------------------------------------------------------------------------
    def _request_predictions(self) -> None:
        def run(job: Job) -> None:
            try:
                predictions = self.engine.predict(0, self._x, None, "blur", 5)
            except Exception as error:
                self._show_error(error, "predictions")
                return
            with self._state_lock:
                self._predictions = predictions
                self._show_target()

        self.scheduler.submit("predict", run)

    def _views_back(self) -> None:
        super()._views_back()
        if self._predictions is None:  # stopped before they came
            self._request_predictions()

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
        return f"Compare(methods={list(self.methods)}, layer={self.layer!r}, target={self.target!r})"
