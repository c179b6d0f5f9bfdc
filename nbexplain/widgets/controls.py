"""The widgets' ipywidgets controls, built from the method registry.

A control's change goes to ``owner.from_control(name, value)``, which checks and sets the
owner's state (an invalid value is shown inside the widget, not raised); the owner's reactions
(``state.py``) write the state back into the controls, where its echo changes nothing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as W
import traitlets as t

from .. import render
from ..engine import registry
from .arguments import shown_methods
from .canvas import MODES
from .host import close_widgets
from .inside import InsideControl
from .state import Options

AUTO_TARGET = -1  # the class picker's value for "the top-1 class" (target=None)
AUTO_CMAP = "auto"  # the colormap picker's value for cmap=None
WIDE = {"description_width": "initial"}
SLIDER = {"width": "100%"}  # a parameter slider: the side column's width, its readout inside it
LOG_RATIO = 100  # a range this many times its start (or its default, from 0) gets a log slider


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


class IntLogSlider(W.FloatLogSlider):
    """A logarithmic slider over whole numbers (counts: steps, samples): ipywidgets has none, so
    this is a ``FloatLogSlider`` whose value is always rounded to an integer."""

    @t.validate("value")
    def _validate_value(self, proposal: t.Bunch) -> float:
        low, high, value = self.base ** self.min, self.base ** self.max, proposal["value"]
        return float(round(min(max(value, low), high))) if math.isfinite(value) else float(round(low))


def _log_start(low: float, default: float) -> float | None:
    """The exponent a log slider starts at for a range from ``low``; ``None``: not a wide range."""
    if low > 0:
        return math.log10(low)
    if default > 0:  # a range from 0 (a stabilizer, a weight): start three decades below the default
        return math.floor(math.log10(default)) - 3
    return None


def _is_wide(low: float, high: float, default: float) -> bool:
    start = low if low > 0 else default
    return start > 0 and high / start >= LOG_RATIO


def param_widget(param: registry.Param, value: Any) -> W.Widget | None:
    """A control for one declared parameter, or ``None`` when only the API can set it. A range
    that spans orders of magnitude (LRP's epsilon, IG's steps) gets a logarithmic slider."""
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
    bounded = low is not None and high is not None and math.isfinite(high - low) and high > low
    slider = {**common, "continuous_update": False, "layout": dict(SLIDER)}  # a Layout only if used
    if int in types and isinstance(value, int):
        if bounded and low >= 1 and _is_wide(low, high, param.default):
            return IntLogSlider(value=value, min=math.log10(low), max=math.log10(high), step=0.01,
                                readout_format=".0f", **slider)
        if bounded and high - low <= 4096:
            return W.IntSlider(value=value, min=low, max=high, **slider)
        return W.IntText(value=value, **common)
    if float in types and isinstance(value, float):
        default = float(param.default) if isinstance(param.default, (int, float)) else 0.0
        if bounded and _is_wide(low, high, default):
            start = _log_start(low, default)
            return W.FloatLogSlider(value=value, min=start, max=math.log10(high), step=0.05,
                                    readout_format=".2g", **slider)
        if bounded:
            step = 10 ** math.floor(math.log10((high - low) / 1000))
            return W.FloatSlider(value=value, min=low, max=high, step=step, readout_format=".3g", **slider)
        return W.FloatText(value=value, **common)
    if str in types and isinstance(value, str):
        return W.Text(value=value, continuous_update=False, **common)
    return None


def control_value(widget: W.Widget, value: Any) -> Any:
    """What a parameter control's ``value`` means: a log slider's value rounded to three
    significant digits (an integer for counts), as the state keeps it."""
    if isinstance(widget, IntLogSlider):
        return round(value)
    if isinstance(widget, W.FloatLogSlider) and value:
        return float(f"{value:.3g}")
    return value


def match_label(labels: Any, text: str, submitted: bool = False) -> tuple[int | None, str]:
    """What the class search picks for ``text`` (a class index or ``None``) and a note for the user.

    A label equal to ``text`` (case and surrounding spaces ignored; one in the same case first) is
    picked, but while typing only if no longer label starts with it: "tiger" waits, since "tiger
    cat" may be on its way, and Enter (``submitted``) picks it. On Enter the one label that starts
    with (or else contains) ``text`` is picked too.
    """
    query = text.strip().lower()
    if not query:
        return None, ""
    names = labels.names()
    exact = [name for name in names if name.lower() == query]
    longer = [name for name in names if name.lower().startswith(query) and name.lower() != query]
    if exact and (submitted or not longer):
        return labels.index(text.strip()), ""
    if exact:
        more = ", ".join(longer[:3]) + ("…" if len(longer) > 3 else "")
        return None, f"Enter picks “{exact[0]}” (also: {more})"
    contains = [name for name in names if query in name.lower()]
    if submitted:
        for found in ([name for name in contains if name.lower().startswith(query)], contains):
            if len(found) == 1:
                return labels.index(found[0]), ""
    return None, "" if contains else f"no class matches “{text.strip()}”"


class TargetPicker:
    """The class picker: the top-k classes with their probabilities first (and "top-1 (auto)"),
    then a search box over every label (``match_label``: case-insensitive, and a label that
    begins a longer one waits for Enter). ``on_pick(target)`` gets ``None``, an index or, on Enter
    with no single match, the text typed (the owner's check reports it)."""

    def __init__(self, labels: Any, on_pick: Callable[[Any], None]):
        self.labels = labels
        self.on_pick = on_pick
        self.options = Options()
        self.writing = Options()  # show() writing the search box: not the user's typing
        self.dropdown = W.Dropdown(description="class", options=[("top-1 (auto)", AUTO_TARGET)], style=WIDE,
                                   layout=W.Layout(width="58%"))
        names = labels.names()
        self.search = W.Combobox(
            placeholder="search all classes…", options=names, ensure_option=False, continuous_update=True,
            tooltip="type a class name (any case); Enter picks it",
            layout=W.Layout(width="42%", display="" if names else "none"),
        )
        self.hint = W.HTML(layout=W.Layout(display="none"))
        self.row = W.HBox([self.dropdown, self.search])
        self.box = W.VBox([self.row, self.hint])
        self.dropdown.observe(self._on_dropdown, names="value")
        self.search.observe(self._on_search, names="value")
        self.search.on_msg(self._on_submit)

    def _on_dropdown(self, change: dict) -> None:
        if not self.options.replacing:
            self.on_pick(None if change["new"] == AUTO_TARGET else change["new"])

    def _on_search(self, change: dict) -> None:
        if not self.writing.replacing:
            self._resolve(change["new"], submitted=False)

    def _on_submit(self, widget: Any, content: dict, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self._resolve(self.search.value, submitted=True)

    def _resolve(self, text: str, submitted: bool) -> None:
        found, note = match_label(self.labels, text, submitted)
        if found is None and submitted and text.strip():
            found, note = text.strip(), ""  # the owner's check says why, and names near labels
        self.hint.value = f"<small style='color:#555'>{html.escape(note)}</small>" if note else ""
        self.hint.layout.display = "" if note else "none"
        if found is not None:
            self.on_pick(found)

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
        with self.writing.replace():
            self.search.value = "" if target is None else self.labels.name(target)
        self.hint.value, self.hint.layout.display = "", "none"

    def widgets(self) -> list[W.Widget]:
        return [self.dropdown, self.search, self.hint, self.row, self.box]


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
        self.inside = InsideControl(owner)  # the slider's block's sub-layers
        self.target = TargetPicker(ex.labels, lambda target: owner.from_control("target", target))
        self.params = W.VBox()
        self.param_widgets: dict[str, W.Widget] = {}
        self._params_method: str | None = None
        self._writing = Options()  # show_params writing a control: its echo is not the user's
        self.opacity = W.FloatSlider(description="opacity", min=0, max=1, step=0.05, style=WIDE,
                                     layout=W.Layout(width="52%"))
        self.cmap = W.Dropdown(description="colormap", options=[AUTO_CMAP, *render.colormaps()], style=WIDE,
                               layout=W.Layout(width="48%"))
        self.mode = W.ToggleButtons(options=list(MODES), tooltips=[
            "show the explanation", "paint an occlusion mask: predictions follow",
            "a square occluder follows the cursor",
        ], style={"button_width": "5.5em"})
        largest = max(owner.image_shape) // 2
        self.brush_size = W.IntSlider(description="brush radius", min=1, max=largest, style=WIDE,
                                      tooltip="radius of the brush, in input pixels",
                                      layout=W.Layout(width="64%"))
        self.patch_size = W.IntSlider(description="patch side", min=1, max=largest, style=WIDE,
                                      tooltip="side of the square occluder, in input pixels",
                                      layout=W.Layout(display="none", width="64%"))
        self.baseline = W.Dropdown(description="fill", options=list(owner.baselines), style=WIDE,
                                   tooltip="what the occluded pixels become", layout=W.Layout(width="36%"))
        self.clear = W.Button(description="clear brush", icon="eraser", layout=W.Layout(width="auto"))
        self.occlusion = W.Button(description="full occlusion map", icon="th", layout=W.Layout(width="auto"),
                                  tooltip="method 'occlusion': slide the occluder everywhere")
        self.stop = W.Button(description="stop", icon="stop", layout=W.Layout(display="none", width="auto"))
        self.progress = W.FloatProgress(min=0, max=1, layout=W.Layout(display="none", width="14em"))
        self.percent = W.Label(layout=W.Layout(width="3.5em"))
        self.progress_row = W.HBox([self.progress, self.percent, self.stop], layout=W.Layout(display="none"))
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
            if not self._writing.replacing:
                value = control_value(change["owner"], change["new"])
                self.owner.from_control("params", {**self.owner.params, name: value})

        return handler

    # -- owner → control ---------------------------------------------------------------------
    def show_method(self) -> None:
        """The layer slider only means something for a layer method, and is pinned (disabled at
        the last layer, where the owner keeps it) for a method that applies there only (CAM)."""
        spec, pinned = self.owner.method_info, self.owner.method_info.last_layer_only
        self.layer.disabled = not spec.needs_layer or not self.owner.explainer.layers() or pinned
        self.layer.tooltip = f"{spec.name} applies at the last feature map only" if pinned else ""

    def show_mode(self) -> None:
        """The brush radius in brush mode, the patch side in patch mode (the same state value)."""
        patch = self.owner.mode == "patch"
        self.brush_size.layout.display = "none" if patch else ""
        self.patch_size.layout.display = "" if patch else "none"

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
                with self._writing.replace():
                    for name, widget in self.param_widgets.items():
                        if widget.value != values[name]:
                            widget.value = values[name]
                return
            except Exception:  # the value does not fit the control (e.g. a tensor): rebuild
                pass
        close_widgets(*self.params.children)  # with their layouts and styles
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
        """Show the progress bar, its percentage and the stop button at ``fraction``, in a row of
        their own (the buttons above keep their width); ``None`` hides them."""
        display = "none" if fraction is None else ""
        if fraction is not None:
            self.progress.value = float(fraction)
            self.percent.value = f"{100 * float(fraction):.0f}%"
        if self.progress.layout.display != display:
            self.stop.layout.display = self.progress.layout.display = display
            self.progress_row.layout.display = display

    def widgets(self) -> list[W.Widget]:
        return [
            self.method, self.layer, *self.inside.widgets(), *self.target.widgets(), *self.params.children,
            self.params, self.opacity, self.cmap, self.mode, self.brush_size, self.patch_size, self.baseline,
            self.clear, self.occlusion, self.stop, self.progress, self.percent, self.progress_row,
            self.previous, self.next, self.position, self.navigation,
        ]
