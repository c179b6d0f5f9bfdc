"""The Explorer's controls, moved the way the browser moves them (a control's ``value``, a button's
click, the class search's Enter as its custom message): log sliders for wide ranges, the patch
side's own slider, the progress row, the class search, CAM's pinned layer and the error box."""

from __future__ import annotations

import html
import math

import ipywidgets as W
import pytest

import nbexplain as nbx
from nbexplain.widgets.controls import IntLogSlider, match_label, param_widget
from nbexplain.widgets.explorer import Explorer
from tests.models import TinyCNN, example_input

LABELS = ["tiger", "tiger cat", "tiger shark", "tabby", "Egyptian cat", "lynx", "ox", "oxcart", "c8", "c9"]


@pytest.fixture()
def make():
    made = []

    def build(**kw):
        explorer = Explorer(nbx.Explainer(TinyCNN().eval(), labels=LABELS), example_input()[0], **kw)
        made.append(explorer)
        return explorer

    yield build
    for explorer in made:
        explorer.close()


def tree(widget):
    """``widget`` and every widget inside it."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from tree(child)


def row_of(explorer, control):
    """The HBox of the Explorer's layout that holds ``control``."""
    return next(w for w in tree(explorer.widget) if isinstance(w, W.HBox) and control in w.children)


# -- parameter sliders -----------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "name", "kind"), [
    ("lrp", "epsilon", W.FloatLogSlider), ("lrp", "gamma", W.FloatLogSlider),
    ("integrated_gradients", "steps", IntLogSlider), ("smoothgrad", "samples", IntLogSlider),
    ("scorecam", "batch_size", IntLogSlider), ("ablation", "top", IntLogSlider),
])
def test_wide_ranges_get_logarithmic_sliders(method, name, kind):
    param = nbx.method_info(method).param(name)
    widget = param_widget(param, param.default)
    assert type(widget) is kind
    low, high = param.range
    assert math.isclose(10 ** widget.max, high)
    assert 10 ** widget.min <= max(low, param.default * 1e-3)  # the whole useful range is reachable
    # a few pixels of drag (4 steps) moves the value by less than a factor of two, anywhere
    assert 10 ** (4 * widget.step) < 2
    assert widget.layout.width == "100%"  # the side column's width: its readout fits (checked in a browser)


def test_log_sliders_set_the_parameters_in_their_own_type(make):
    explorer = make(method="smoothgrad", samples=4).wait(30)
    samples = explorer.controls.param_widgets["samples"]
    assert type(explorer.controls.param_widgets["noise"]) is W.FloatSlider  # 0..10: linear is fine
    assert samples.value == 4
    samples.value = 10 ** 0.52  # where the front end's slider lands between whole numbers
    explorer.wait(30)
    assert explorer.params["samples"] == 3 and type(explorer.params["samples"]) is int
    assert samples.value == 3 and explorer.explanation.params["samples"] == 3
    explorer.method = "lrp"
    epsilon = explorer.controls.param_widgets["epsilon"]
    before = explorer.params["epsilon"]
    epsilon.value = 10 ** (math.log10(before) + 4 * epsilon.step)  # four steps to the right
    explorer.wait(30)
    assert 1 < explorer.params["epsilon"] / before < 2  # was: from 1e-6 to 2.6
    assert explorer.params["epsilon"] == float(f"{explorer.params['epsilon']:.3g}")
    explorer.params = {"epsilon": 0.0}  # below the slider's range, from code: kept, not clamped
    assert explorer.params["epsilon"] == 0.0 and epsilon.value == 10 ** epsilon.min
    assert explorer.error == ""


# -- brush, patch, progress ----------------------------------------------------------------------
def test_the_patch_side_has_its_own_slider_and_label(make):
    explorer = make().wait(30)
    c = explorer.controls
    assert (c.brush_size.description, c.patch_size.description) == ("brush radius", "patch side")
    assert c.patch_size.layout.display == "none" and c.brush_size.layout.display == ""
    c.mode.value = "patch"
    assert c.patch_size.layout.display == "" and c.brush_size.layout.display == "none"
    c.patch_size.value = 6
    assert explorer.brush_size == 6 and explorer.canvas.brush_size == 6  # the occluder's side
    c.mode.value = "brush"
    assert c.brush_size.layout.display == "" and c.patch_size.layout.display == "none"


def test_progress_has_a_row_of_its_own_with_a_percentage(make):
    explorer = make().wait(30)
    c = explorer.controls
    buttons = row_of(explorer, c.occlusion)
    assert c.clear in buttons.children
    assert c.progress not in buttons.children and c.stop not in buttons.children
    assert c.progress_row.layout.display == "none"
    c.show_progress(0.372)  # what a long map's progress callback shows (Explorer._progress)
    assert c.progress.value == pytest.approx(0.372) and c.percent.value == "37%"
    assert c.progress_row.layout.display == "" and c.stop.layout.display == ""
    assert list(c.progress_row.children) == [c.progress, c.percent, c.stop]
    c.show_progress(None)
    assert c.progress_row.layout.display == "none"


# -- the class search ------------------------------------------------------------------------------
def type_into(picker, text):
    """Type ``text`` one key at a time, as the Combobox sends it (continuous_update)."""
    for end in range(1, len(text) + 1):
        picker.search.value = text[:end]


def enter(picker):
    picker.search._handle_custom_msg({"event": "submit"}, [])


def test_typing_a_longer_label_never_picks_its_prefix(make):
    explorer = make().wait(30)
    picker, picked = explorer.controls.target, []
    explorer.observe(lambda change: picked.append(change["new"]), names="target")
    type_into(picker, "tiger cat")
    assert picked == [1] and explorer.target == 1  # "tiger" (0) was never picked on the way
    assert explorer.error == ""


def test_a_label_that_begins_others_waits_for_enter(make):
    explorer = make().wait(30)
    picker = explorer.controls.target
    type_into(picker, "Tiger")
    assert explorer.target is None
    assert "Enter picks “tiger”" in picker.hint.value and picker.hint.layout.display == ""
    enter(picker)
    assert explorer.target == 0 and picker.hint.layout.display == "none"
    explorer.wait(30)
    assert explorer.explanation.target == 0


def test_search_is_case_insensitive_and_says_when_nothing_matches(make):
    explorer = make().wait(30)
    picker = explorer.controls.target
    picker.search.value = "TABBY"
    assert explorer.target == 3
    picker.search.value = "puma"
    assert explorer.target == 3 and "no class matches “puma”" in picker.hint.value
    picker.search.value = "egypt"
    enter(picker)  # the one label that starts with it
    assert explorer.target == 4 and explorer.error == ""
    picker.search.value = "cat"  # two labels contain it: Enter asks the state, whose error names them
    enter(picker)
    assert explorer.target == 4 and "did you mean" in explorer.error and "tiger cat" in explorer.error


def test_match_label_rules():
    labels = nbx.Explainer(TinyCNN().eval(), labels=LABELS).labels
    assert match_label(labels, "  Tabby ") == (3, "")
    assert match_label(labels, "ox")[0] is None and match_label(labels, "ox", submitted=True) == (6, "")
    assert match_label(labels, "oxc") == (None, "")  # typing: no pick, nothing to say yet
    assert match_label(labels, "oxc", submitted=True) == (7, "")
    assert match_label(labels, "cat", submitted=True) == (None, "")  # two match: not picked
    assert match_label(labels, "puma") == (None, "no class matches “puma”")
    assert match_label(labels, "") == (None, "")


# -- CAM's layer -------------------------------------------------------------------------------------
def test_cam_pins_the_layer_slider_to_the_last_layer(make):
    explorer = make(layer="act1").wait(30)
    slider = explorer.controls.layer
    assert not slider.disabled
    explorer.controls.method.value = "cam"
    explorer.wait(30)
    assert slider.value == "act3" and slider.disabled and "last feature map" in slider.tooltip
    assert explorer.status == "ready" and explorer.explanation.layer == "act3"
    explorer.controls.method.value = "gradcam"
    explorer.wait(30)
    assert not slider.disabled and slider.tooltip == ""
    slider.value = "act2"
    explorer.wait(30)
    assert explorer.explanation.layer == "act2"


# -- errors ------------------------------------------------------------------------------------------
def test_an_error_is_shown_once_and_cannot_widen_the_picture_column(make):
    explorer = make(method="smoothgrad", samples=2).wait(30)
    explorer.controls.param_widgets["seed"].value = -1  # refused: "... parameter 'seed' ..."
    explorer.wait(30)
    assert "parameter 'seed'" in explorer.error and "parameter 'seed'" in explorer.canvas.error
    texts = [html.unescape(w.value) for w in tree(explorer.widget) if isinstance(w, W.HTML)]
    repeated = [text for text in texts if "parameter 'seed'" in text]
    assert repeated == []  # the canvas's overlay (bounded, wrapping, dismissible) is the one place
    left = explorer.widget.children[0].children[0]
    assert explorer.canvas in left.children and explorer.status_label in left.children
    assert left.layout.width == left.layout.min_width == f"{explorer.canvas.display_width}px"
    assert left.layout.overflow == "hidden"  # a long status line cannot push the controls off
