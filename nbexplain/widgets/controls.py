"""The widgets' ipywidgets controls, built from the method registry.

A control's change goes to ``owner.from_control(name, value)``, which checks and sets the
owner's state (an invalid value is shown inside the widget, not raised); the owner's reactions
(``state.py``) write the state back into the controls, where its echo changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as W

from .. import render
from ..engine import registry
from .arguments import shown_methods
from .canvas import MODES
from .state import Options

AUTO_TARGET = -1  # the class picker's value for "the top-1 class" (target=None)
AUTO_CMAP = "auto"  # the colormap picker's value for cmap=None
WIDE = {"description_width": "initial"}


def cmap_option(cmap: str | None) -> str:
    """The colormap picker's (and the canvas's) value for ``cmap``."""
    return AUTO_CMAP if cmap is None else cmap


def cmap_value(option: str) -> str | None:
    return None if option == AUTO_CMAP else option


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
        self.options = Options()
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
        if not self.options.replacing:
            self.on_pick(None if change["new"] == AUTO_TARGET else change["new"])

    def _on_search(self, change: dict) -> None:
        if change["new"]:
            self.on_pick(change["new"])

    def show(self, target: int | None, predictions: Sequence[Any] | None) -> None:
        """Show ``target`` among the top-k ``predictions`` (its echo through ``on_pick`` is the
        owner's current target, which changes nothing)."""
        options = [("top-1 (auto)", AUTO_TARGET)]
        options += [(f"{p.label} — {100 * p.prob:.1f}%", p.index) for p in predictions or []]
        if target is not None and target not in [value for _, value in options]:
            options.append((self.labels.name(target), target))
        if list(self.dropdown.options) != options:
            with self.options.replace():
                self.dropdown.options = options
        self.dropdown.value = AUTO_TARGET if target is None else target
        self.search.value = "" if target is None else self.labels.name(target)

    def widgets(self) -> list[W.Widget]:
        return [self.dropdown, self.search, self.box]


def layer_slider(layers: Sequence[str]) -> W.SelectionSlider:
    return W.SelectionSlider(
        description="layer", options=list(layers) or ["(no spatial layer)"], continuous_update=True,
        style=WIDE, layout=W.Layout(width="100%"),
    )


class Controls:
    """The control widgets of one explorer; ``owner`` is the Explorer (duck-typed). The simple
    ones are bound to the owner's fields by its reactions; ``show_*`` show the others."""

    def __init__(self, owner: Any):
        self.owner = owner
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

        self.clear.on_click(lambda _: owner.from_control("mask", None))
        self.occlusion.on_click(lambda _: owner.from_control("method", "occlusion"))
        self.stop.on_click(lambda _: owner.stop())
        self.previous.on_click(lambda _: owner.from_control("index", owner.index - 1))
        self.next.on_click(lambda _: owner.from_control("index", owner.index + 1))

    def _on_param(self, name: str) -> Callable[[dict], None]:
        def handler(change: dict) -> None:
            self.owner.from_control("params", {**self.owner.params, name: change["new"]})

        return handler

    # -- owner → control ---------------------------------------------------------------------
    def show_method(self) -> None:
        """The layer slider only means something for a layer method."""
        self.layer.disabled = not self.owner.method_info.needs_layer or not self.owner.explainer.layers()

    def show_target(self) -> None:
        self.target.show(self.owner.target, self.owner.clean_predictions)

    def show_index(self) -> None:
        owner, count = self.owner, len(self.owner.images)
        self.navigation.layout.display = "" if count > 1 else "none"
        self.position.value = f"{owner.index + 1} / {count}"
        self.previous.disabled = owner.index == 0
        self.next.disabled = owner.index >= count - 1

    def show_params(self) -> None:
        """The current method's parameter controls (rebuilt for a new method)."""
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
