"""The Explorer's ipywidgets controls, built from the method registry.

Each control writes through ``owner.from_control(name, value)``, which validates and sets the
owner's state (an invalid value is shown inside the widget, not raised); ``Controls.sync(name)``
writes the owner's state back into the control without echoing it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as W

from .. import render
from ..engine import registry

AUTO_TARGET = -1  # the class picker's value for "the top-1 class" (target=None)
AUTO_CMAP = "auto"  # the colormap picker's value for cmap=None
MODES = ("explain", "brush", "patch")
WIDE = {"description_width": "initial"}


def shown_methods() -> list[str]:
    """The methods a widget can show: those that give a map over the image."""
    return [m.name for m in registry.all_methods() if m.shows_a_map]


def method_options(names: Iterable[str]) -> list[tuple[str, str]]:
    """(label, name) pairs for the method picker, grouped by family in registration order."""
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(registry.get(name).family, []).append(name)
    return [(f"{family} · {name}", name) for family, members in families.items() for name in members]


def param_widget(param: registry.Param, value: Any) -> W.Widget | None:
    """A control for one declared parameter, or ``None`` when only the API can set it."""
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    common = {"description": param.name, "tooltip": param.help or param.name, "style": WIDE}
    if param.choices is not None:
        options = list(param.choices)
        if value not in options:
            return None  # e.g. a tensor baseline set through the API
        return W.Dropdown(options=options, value=value, **common)
    if bool in types:
        return W.Checkbox(value=bool(value), indent=False, **common)
    low, high = param.range if param.range is not None else (None, None)
    bounded = low is not None and high is not None
    if int in types and isinstance(value, int):
        if bounded and high - low <= 4096:
            return W.IntSlider(value=value, min=low, max=high, continuous_update=False, **common)
        return W.IntText(value=value, **common)
    if float in types and isinstance(value, float):
        if bounded and math.isfinite(high - low) and high > low:
            step = 10 ** math.floor(math.log10((high - low) / 1000))
            return W.FloatSlider(
                value=value, min=low, max=high, step=step, continuous_update=False, readout_format=".3g",
                **common,
            )
        return W.FloatText(value=value, **common)
    if str in types and isinstance(value, str):
        return W.Text(value=value, continuous_update=False, **common)
    return None


class TargetPicker:
    """The class picker: the top-k classes with their probabilities first (and "top-1 (auto)"),
    then a search box over every label. ``on_pick(target)`` gets ``None``, an index or a label."""

    def __init__(self, labels: Any, on_pick: Callable[[Any], None]):
        self.labels = labels
        self.on_pick = on_pick
        self._quiet = threading.local()
        self.dropdown = W.Dropdown(description="class", options=[("top-1 (auto)", AUTO_TARGET)], style=WIDE)
        names = labels.names()
        self.search = W.Combobox(
            placeholder="search all classes…", options=names, ensure_option=True,
            layout=W.Layout(width="16em", display="" if names else "none"),
        )
        self.box = W.HBox([self.dropdown, self.search])
        self.dropdown.observe(self._on_dropdown, names="value")
        self.search.observe(self._on_search, names="value")

    def _on_dropdown(self, change: dict) -> None:
        if not getattr(self._quiet, "on", False):
            self.on_pick(None if change["new"] == AUTO_TARGET else change["new"])

    def _on_search(self, change: dict) -> None:
        if not getattr(self._quiet, "on", False) and change["new"]:
            self.on_pick(change["new"])

    def show(self, target: int | None, predictions: Sequence[Any] | None) -> None:
        """Show ``target`` among the top-k ``predictions`` (without calling ``on_pick``)."""
        options = [("top-1 (auto)", AUTO_TARGET)]
        options += [(f"{p.label} — {100 * p.prob:.1f}%", p.index) for p in predictions or []]
        if target is not None and target not in [value for _, value in options]:
            options.append((self.labels.name(target), target))
        self._quiet.on = True
        try:
            if list(self.dropdown.options) != options:
                self.dropdown.options = options
            self.dropdown.value = AUTO_TARGET if target is None else target
            self.search.value = "" if target is None else self.labels.name(target)
        finally:
            self._quiet.on = False

    def widgets(self) -> list[W.Widget]:
        return [self.dropdown, self.search, self.box]


def layer_slider(layers: Sequence[str]) -> W.SelectionSlider:
    return W.SelectionSlider(
        description="layer", options=list(layers) or ["(no spatial layer)"], continuous_update=True,
        style=WIDE, layout=W.Layout(width="100%"),
    )


def show_layer(slider: W.SelectionSlider, layer: str | None) -> None:
    """Put ``layer`` on the slider (a module outside the candidate layers is appended)."""
    if layer is None:
        return
    if layer not in slider.options:
        slider.options = [*slider.options, layer]
    slider.value = layer


class Controls:
    """The control widgets of one explorer; ``owner`` is the Explorer (duck-typed)."""

    def __init__(self, owner: Any):
        self.owner = owner
        self._quiet = threading.local()
        ex = owner.explainer
        self.method = W.Dropdown(description="method", options=method_options(shown_methods()), style=WIDE)
        self.layer = layer_slider(ex.layers())
        self.target = TargetPicker(ex.labels, lambda target: owner.from_control("target", target))
        self.params = W.VBox()
        self.param_widgets: dict[str, W.Widget] = {}
        self._params_method: str | None = None
        self.opacity = W.FloatSlider(description="opacity", min=0, max=1, step=0.05, style=WIDE)
        self.cmap = W.Dropdown(description="colormap", options=[AUTO_CMAP, *render.colormaps()], style=WIDE)
        self.mode = W.ToggleButtons(options=list(MODES), tooltips=[
            "show the explanation", "paint an occlusion mask: predictions follow",
            "a square occluder follows the cursor",
        ], style={"button_width": "5.5em"})
        self.brush_size = W.IntSlider(description="brush", min=1, max=max(owner.image_shape) // 2, style=WIDE)
        self.baseline = W.Dropdown(description="fill", options=list(owner.baselines), style=WIDE)
        self.clear = W.Button(description="clear brush", icon="eraser", layout=W.Layout(width="auto"))
        self.occlusion = W.Button(description="full occlusion map", icon="th", layout=W.Layout(width="auto"),
                                  tooltip="method 'occlusion': slide the occluder everywhere")
        self.stop = W.Button(description="stop", icon="stop", layout=W.Layout(display="none"))
        self.progress = W.FloatProgress(min=0, max=1, layout=W.Layout(display="none", width="12em"))
        self.previous = W.Button(icon="arrow-left", tooltip="previous image", layout=W.Layout(width="3em"))
        self.next = W.Button(icon="arrow-right", tooltip="next image", layout=W.Layout(width="3em"))
        self.position = W.Label()
        self.navigation = W.HBox([self.previous, self.position, self.next])

        for name in ("method", "layer", "opacity", "cmap", "mode", "brush_size", "baseline"):
            getattr(self, name).observe(self._forward(name), names="value")
        self.clear.on_click(lambda _: self.owner.from_control("mask", None))
        self.occlusion.on_click(lambda _: self.owner.from_control("method", "occlusion"))
        self.stop.on_click(lambda _: self.owner.stop())
        self.previous.on_click(lambda _: self.owner.from_control("index", self.owner.index - 1))
        self.next.on_click(lambda _: self.owner.from_control("index", self.owner.index + 1))
        for name in ("method", "layer", "target", "params", "opacity", "cmap", "mode", "brush_size",
                     "baseline", "index"):
            self.sync(name)

    # -- control → owner ---------------------------------------------------------------------
    def _forward(self, name: str) -> Callable[[dict], None]:
        def handler(change: dict) -> None:
            if not self.quiet:
                value = change["new"]
                if name == "cmap" and value == AUTO_CMAP:
                    value = None
                self.owner.from_control(name, value)

        return handler

    def _on_param(self, name: str) -> Callable[[dict], None]:
        def handler(change: dict) -> None:
            if not self.quiet:
                self.owner.from_control("params", {**self.owner.params, name: change["new"]})

        return handler

    # -- owner → control ---------------------------------------------------------------------
    @property
    def quiet(self) -> bool:
        return getattr(self._quiet, "depth", 0) > 0

    @contextmanager
    def quietly(self):
        """Set controls without their change reaching the owner (this thread only)."""
        self._quiet.depth = getattr(self._quiet, "depth", 0) + 1
        try:
            yield
        finally:
            self._quiet.depth -= 1

    def sync(self, name: str) -> None:
        """Show the owner's current ``name`` in its control."""
        owner = self.owner
        with self.quietly():
            if name == "method":
                self.method.value = owner.method
                self.layer.disabled = not owner.method_info.needs_layer or not owner.explainer.layers()
                self.sync("params")
            elif name == "layer":
                show_layer(self.layer, owner.layer)
            elif name == "target":
                self.target.show(owner.target, owner.clean_predictions)
            elif name == "params":
                self._sync_params()
            elif name == "cmap":
                self.cmap.value = owner.cmap or AUTO_CMAP
            elif name == "index":
                count = len(owner.images)
                self.navigation.layout.display = "" if count > 1 else "none"
                self.position.value = f"{owner.index + 1} / {count}"
                self.previous.disabled = owner.index == 0
                self.next.disabled = owner.index >= count - 1
            elif name in ("opacity", "mode", "brush_size", "baseline"):
                getattr(self, name).value = getattr(owner, name)

    def _sync_params(self) -> None:
        spec, values = self.owner.method_info, self.owner.params
        if self._params_method == spec.name and set(self.param_widgets) == set(values):
            try:
                for name, widget in self.param_widgets.items():
                    if widget.value != values[name]:
                        widget.value = values[name]
                return
            except Exception:  # the value does not fit the control (e.g. a tensor): rebuild
                pass
        for widget in self.param_widgets.values():
            widget.close()
        self._params_method = spec.name
        self.param_widgets = {}
        children = []
        for param in spec.params:
            widget = param_widget(param, values[param.name])
            if widget is None:
                note = f"<small>{param.name}: set through <code>explorer.params</code></small>"
                children.append(W.HTML(note))
                continue
            widget.observe(self._on_param(param.name), names="value")
            self.param_widgets[param.name] = widget
            children.append(widget)
        self.params.children = children

    def show_progress(self, fraction: float | None) -> None:
        """Show the progress bar (and the stop button) at ``fraction``; ``None`` hides them."""
        display = "none" if fraction is None else ""
        if fraction is not None:
            self.progress.value = float(fraction)
        if self.progress.layout.display != display:
            self.stop.layout.display = self.progress.layout.display = display

    def widgets(self) -> list[W.Widget]:
        return [
            self.method, self.layer, *self.target.widgets(), self.params, self.opacity, self.cmap,
            self.mode, self.brush_size, self.baseline, self.clear, self.occlusion, self.stop, self.progress,
            self.previous, self.next, self.position, self.navigation,
        ]
