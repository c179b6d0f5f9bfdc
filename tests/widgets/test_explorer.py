"""The Explorer driven through its programmatic state and its controls, as a user would.

Every control is moved the way the browser moves it (setting the ipywidget's ``value`` or
clicking its button; brush strokes arrive as the canvas's custom messages), then ``wait()``
and the state, ``explanation`` and ``predictions`` are checked against the engine's own answer.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain.engine import registry
from nbexplain.engine.layerwise import LayerSession
from nbexplain.widgets.explorer import Explorer
from nbexplain.widgets.view import show_explanation
from tests.models import LABELS, TinyCNN, example_input
from tests.untouched import ModelState


@pytest.fixture()
def make(ex, x):
    made = []

    def build(*args, **kw):
        explorer = Explorer(*(args or (ex, x)), **kw)
        made.append(explorer)
        return explorer

    yield build
    for explorer in made:
        explorer.close()


def assert_map(explanation, reference):
    np.testing.assert_allclose(explanation.map, reference.map, atol=1e-6)


class Spy:
    """Counts calls of an Explainer's engine entry points (and LayerSession passes)."""

    def __init__(self, ex, monkeypatch, delay: float = 0.0):
        self.calls: list[tuple] = []
        for name in ("explain", "explain_layers", "predict", "occlude"):
            original = getattr(ex, name)
            monkeypatch.setattr(ex, name, self._wrap(name, original, delay))
        original_session = LayerSession.explain
        spy = self

        def session_explain(session, method="gradcam", target=None, **params):
            spy.calls.append(("session", method, target))
            if delay:
                time.sleep(delay)
            return original_session(session, method, target, **params)

        monkeypatch.setattr(LayerSession, "explain", session_explain)

    def _wrap(self, name, original, delay):
        def call(*args, **kw):
            self.calls.append((name, kw.get("layer"), kw.get("target")))
            if delay and name in ("explain", "explain_layers"):
                time.sleep(delay)
            return original(*args, **kw)

        return call

    def count(self, *names: str) -> int:
        return sum(1 for call in self.calls if call[0] in names)


# -- opening -----------------------------------------------------------------------------------
def test_opens_with_gradcam_at_the_last_layer(make, ex, x):
    explorer = make().wait(30)
    e = explorer.explanation
    assert (e.method, e.layer, explorer.layer) == ("gradcam", "act3", "act3")
    reference = ex.explain(x, "gradcam", layer="act3")
    assert e.target == reference.target
    assert_map(e, reference)
    assert explorer.predictions == ex.predict(x, topk=5)
    assert explorer.status == "ready" and explorer.error == "" and explorer.last_ms > 0
    canvas = explorer.canvas
    assert canvas.image_shape == (16, 16)
    assert canvas.heatmap_shape == (8, 8)  # the layer's own resolution; the browser upsamples
    heat = np.frombuffer(canvas.heatmap, "<f4").reshape(8, 8)  # raw values, with their colour scale
    np.testing.assert_array_equal(heat, e.values.values)
    np.testing.assert_allclose(heat, e.attribution, atol=1e-6)
    assert canvas.scale == e.scale and canvas.unit == "Grad-CAM" and not canvas.signed
    assert canvas.caption.startswith(f"{e.label} (class {e.target}") and "layer act3" in canvas.caption
    assert not canvas.busy and canvas.error == ""
    assert "application/vnd.jupyter.widget-view+json" in explorer._repr_mimebundle_()


def test_pixel_method_sends_the_full_map(make, ex, x):
    explorer = make(method="saliency").wait(30)
    assert explorer.canvas.heatmap_shape == (16, 16)
    heat = np.frombuffer(explorer.canvas.heatmap, "<f4").reshape(16, 16)
    reference = ex.explain(x, "saliency")
    np.testing.assert_allclose(heat, reference.values.values, atol=1e-6)
    np.testing.assert_allclose(explorer.canvas.scale, reference.scale, atol=1e-6)


def test_keyword_arguments_are_checked(make, ex, x):
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*'colour'"):
        Explorer(ex, x, colour="red")
    with pytest.raises(TypeError, match="samples"):  # a parameter of another method
        Explorer(ex, x, method="gradcam", samples=4)
    with pytest.raises(TypeError, match=r"pass them to nbx\.Explainer"):
        Explorer(ex, x, labels=LABELS)
    with pytest.raises(TypeError, match="model_or_explainer"):
        Explorer("resnet", x)
    explorer = make(ex, x, method="smoothgrad", samples=4, opacity=0.3, cmap="viridis", mode="brush",
                    brush_size=3, baseline="zeros").wait(30)
    assert explorer.params["samples"] == 4 and explorer.explanation.params["samples"] == 4
    assert (explorer.opacity, explorer.cmap, explorer.mode, explorer.brush_size, explorer.baseline) == (
        0.3, "viridis", "brush", 3, "zeros")
    c = explorer.canvas
    assert (c.opacity, c.cmap, c.mode, c.brush_size) == (0.3, "viridis", "brush", 3)


def test_a_model_is_wrapped_with_the_given_options(make, x):
    model = TinyCNN().eval()
    explorer = make(model, x, labels=LABELS, method="saliency").wait(30)
    assert explorer.explainer.model is model and explorer.explanation.label in LABELS


@pytest.mark.parametrize(("name", "value", "error", "match"), [
    ("method", "nope", ValueError, "unknown method 'nope'"),
    ("method", 3, TypeError, "method must be a str"),
    ("layer", "conv9", ValueError, "layer 'conv9'"),
    ("target", 10, ValueError, "target=10"),
    ("target", "dog", ValueError, "target='dog'"),
    ("params", {"steps": 0}, ValueError, "unknown parameter"),
    ("params", [1], TypeError, "params must be a dict"),
    ("opacity", 1.5, ValueError, "opacity"),
    ("cmap", "rainbow", ValueError, "cmap"),
    ("mode", "paint", ValueError, "mode"),
    ("brush_size", 0, ValueError, "brush_size"),
    ("baseline", "noise", ValueError, "baseline"),
    ("mask", np.ones((4, 4)), ValueError, "mask"),
    ("mask", np.full((16, 16), 2.0), ValueError, "mask"),
    ("index", 1, ValueError, "index"),
    ("image", "cat.png", TypeError, "image"),
])
def test_bad_values_raise_naming_the_argument_and_change_nothing(make, name, value, error, match):
    explorer = make().wait(30)
    before = (explorer.method, explorer.layer, explorer.target, explorer.params, explorer.opacity,
              explorer.cmap, explorer.mode, explorer.brush_size, explorer.baseline)
    shown = explorer.explanation
    with pytest.raises(error, match=match):
        setattr(explorer, name, value)
    explorer.wait(30)
    after = (explorer.method, explorer.layer, explorer.target, explorer.params, explorer.opacity,
             explorer.cmap, explorer.mode, explorer.brush_size, explorer.baseline)
    assert after == before and explorer.explanation is shown and not explorer.mask.any()
    with pytest.raises(TypeError, match="unexpected keyword"):
        explorer.set(colour=1)


def test_methods_that_give_no_map_are_refused(make, monkeypatch):
    weights = dataclasses.replace(registry.get("saliency"), name="weights", space="model")
    monkeypatch.setitem(registry._REGISTRY, "weights", weights)
    with pytest.raises(ValueError, match="does not give a map"):
        make(method="weights")
    with pytest.raises(ValueError, match="does not give a map"):
        make(method="filters")  # shown in the filter panel instead


# -- each control ------------------------------------------------------------------------------
def test_method_picker_groups_by_family_and_sets_the_method(make, ex, x):
    explorer = make().wait(30)
    picker = explorer.controls.method
    families = [registry.get(value).family for _, value in picker.options]
    assert families == sorted(families, key=families.index)  # each family in one block
    assert all(label.startswith(f"{registry.get(v).family} · ") for label, v in picker.options)
    assert {v for _, v in picker.options} >= {"saliency", "gradcam", "integrated_gradients", "occlusion"}
    picker.value = "saliency"
    explorer.wait(30)
    assert explorer.method == "saliency" and explorer.explanation.method == "saliency"
    assert explorer.controls.layer.disabled  # pixel methods take no layer
    explorer.method = "layercam"
    explorer.wait(30)
    assert picker.value == "layercam" and not explorer.controls.layer.disabled
    assert_map(explorer.explanation, ex.explain(x, "layercam", layer="act3"))


def test_layer_slider_both_ways(make, ex, x):
    explorer = make().wait(30)
    slider = explorer.controls.layer
    assert list(slider.options) == ex.layers()
    slider.value = "act1"
    explorer.wait(30)
    assert explorer.layer == "act1" and explorer.explanation.layer == "act1"
    assert_map(explorer.explanation, ex.explain(x, "gradcam", layer="act1"))
    explorer.layer = "act2"
    explorer.wait(30)
    assert slider.value == "act2" and explorer.explanation.layer == "act2"
    explorer.layer = "conv2"  # any module works; the slider learns it
    explorer.wait(30)
    assert slider.value == "conv2" and explorer.explanation.layer == "conv2"


def test_class_picker_top_k_then_search(make, ex, x):
    explorer = make().wait(30)
    picker = explorer.controls.target
    top = ex.predict(x, topk=5)
    assert [v for _, v in picker.dropdown.options] == [-1, *[p.index for p in top]]
    assert picker.dropdown.options[1][0] == f"{top[0].label} — {100 * top[0].prob:.1f}%"
    picker.dropdown.value = top[2].index
    explorer.wait(30)
    assert explorer.target == top[2].index and explorer.explanation.target == top[2].index
    assert picker.search.value == top[2].label
    outside = next(i for i in range(10) if i not in [p.index for p in top])
    picker.search.value = f"c{outside}"
    explorer.wait(30)
    assert explorer.target == outside and explorer.explanation.target == outside
    assert picker.dropdown.value == outside  # listed after the top-k
    explorer.target = "c1"
    assert picker.dropdown.value == 1 and picker.search.value == "c1"
    picker.dropdown.value = -1
    explorer.wait(30)
    assert explorer.target is None and explorer.explanation.target == top[0].index


def test_parameter_controls_are_built_from_the_registry(make, ex, x):
    explorer = make(method="smoothgrad").wait(30)
    widgets = explorer.controls.param_widgets
    kinds = {name: type(widget).__name__ for name, widget in widgets.items()}
    assert kinds == {"samples": "IntLogSlider", "noise": "FloatSlider", "magnitude": "Checkbox",
                     "seed": "IntText"}  # 1..1024 samples: a log slider (see tests/widgets/test_controls.py)
    assert 10 ** widgets["samples"].min == 1 and round(10 ** widgets["samples"].max) == 1024
    widgets["samples"].value = 3
    widgets["magnitude"].value = True
    explorer.wait(30)
    assert explorer.params == {**registry.get("smoothgrad").bind({}), "samples": 3, "magnitude": True}
    reference = ex.explain(x, "smoothgrad", samples=3, magnitude=True)
    assert_map(explorer.explanation, reference)
    explorer.method = "integrated_gradients"
    kinds = {name: type(widget).__name__ for name, widget in explorer.controls.param_widgets.items()}
    assert kinds == {"steps": "IntLogSlider", "baseline": "Dropdown", "rule": "Dropdown"}
    explorer.controls.param_widgets["rule"].value = "riemann_trapezoid"
    explorer.wait(30)
    assert explorer.explanation.params["rule"] == "riemann_trapezoid"
    explorer.params = {"steps": 5}  # from code, the control follows
    assert explorer.controls.param_widgets["steps"].value == 5
    assert explorer.controls.param_widgets["rule"].value == "gausslegendre"  # the rest: defaults


def test_bad_parameter_from_a_control_shows_an_error_and_the_widget_recovers(make):
    explorer = make(method="smoothgrad", samples=2).wait(30)
    shown = explorer.explanation
    seed = explorer.controls.param_widgets["seed"]
    seed.value = -1  # IntText: the browser lets any int through
    explorer.wait(30)
    assert "parameter 'seed'" in explorer.error and "-1" in explorer.error
    assert "seed" in explorer.canvas.error and "seed" in explorer.error_label.value
    assert explorer.error_label.layout.display == ""
    assert explorer.params["seed"] == 0 and seed.value == 0  # the control shows the state again
    assert explorer.explanation is shown
    with pytest.raises(ValueError, match="'seed'"):
        explorer.params = {"seed": -1}  # from code it raises
    seed.value = 7
    explorer.wait(30)
    assert explorer.error == "" and explorer.canvas.error == ""
    assert explorer.error_label.layout.display == "none"
    assert explorer.explanation.params["seed"] == 7 and explorer.status == "ready"


def test_a_failing_computation_is_shown_and_the_widget_recovers(make):
    explorer = make().wait(30)
    explorer.controls.occlusion.click()  # defaults: a 32-pixel patch on a 16-pixel image
    explorer.wait(30)
    assert explorer.method == "occlusion" and explorer.status == "error"
    assert "patch" in explorer.error and "patch" in explorer.canvas.error
    assert "error" in explorer.status_label.value and not explorer.canvas.busy
    explorer.controls.param_widgets["patch"].value = 4
    explorer.controls.param_widgets["stride"].value = 2
    explorer.wait(30)
    assert explorer.status == "ready" and explorer.error == "" and explorer.canvas.error == ""
    assert explorer.explanation.method == "occlusion" and explorer.explanation.params["patch"] == 4
    assert explorer.controls.progress.value == 1.0
    explorer.layer = "fc"  # not spatial: Grad-CAM fails there …
    explorer.method = "gradcam"
    explorer.wait(30)
    assert explorer.status == "error" and "spatial" in explorer.error
    explorer.layer = "act2"  # … and the next move works
    explorer.wait(30)
    assert explorer.status == "ready" and explorer.explanation.layer == "act2"


def test_view_controls_reach_the_canvas_without_recomputing(make, ex, monkeypatch):
    explorer = make().wait(30)
    spy = Spy(ex, monkeypatch)
    c = explorer.controls
    c.opacity.value = 0.8
    c.cmap.value = "inferno"
    c.mode.value = "brush"
    c.brush_size.value = 5
    explorer.wait(30)
    canvas = explorer.canvas
    expected = (0.8, "inferno", "brush", 5)
    assert (explorer.opacity, explorer.cmap, explorer.mode, explorer.brush_size) == expected
    assert (canvas.opacity, canvas.cmap, canvas.mode, canvas.brush_size) == expected
    c.cmap.value = "auto"
    assert explorer.cmap is None and canvas.cmap == "auto"
    explorer.opacity, explorer.mode = 0.25, "patch"
    assert (c.opacity.value, c.mode.value, canvas.opacity, canvas.mode) == (0.25, "patch", 0.25, "patch")
    assert spy.calls == []


def stroke(canvas, points, size=3, erase=False, final=True):
    canvas._handle_custom_msg({"type": "stroke", "points": points, "size": size, "erase": erase,
                               "final": final}, [])


def test_brush_strokes_update_the_predictions_and_clear_brings_them_back(make, ex, x, monkeypatch):
    explorer = make(mode="brush", baseline="zeros").wait(30)
    clean = explorer.predictions
    spy = Spy(ex, monkeypatch)
    stroke(explorer.canvas, [[2, 2], [13, 2], [13, 13]], final=False)
    stroke(explorer.canvas, [[13, 13], [2, 13]], final=True)
    explorer.wait(30)
    mask = explorer.mask
    assert mask.shape == (16, 16) and mask.any() and np.array_equal(mask, explorer.canvas.mask)
    assert explorer.predictions == ex.occlude(x, mask, baseline="zeros", topk=5)
    assert explorer.predictions != clean
    assert "was" in explorer.predictions_panel.value  # how each class compares with the clean image
    assert spy.count("explain", "explain_layers", "session") == 0  # the map is not recomputed
    explorer.controls.baseline.value = "mean"
    explorer.wait(30)
    assert explorer.predictions == ex.occlude(x, mask, baseline="mean", topk=5)
    occludes = spy.count("occlude")
    explorer.controls.clear.click()
    explorer.wait(30)
    assert not explorer.mask.any() and not explorer.canvas.mask.any()
    assert explorer.predictions == clean and spy.count("occlude", "predict") == occludes  # from the cache
    painted = np.zeros((16, 16), bool)
    painted[4:12, 4:12] = True
    explorer.mask = painted  # from code: the canvas gets it
    explorer.wait(30)
    assert np.array_equal(explorer.canvas.mask, painted.astype(np.float32))
    assert explorer.predictions == ex.occlude(x, painted, baseline="mean", topk=5)


def test_patch_mode_follows_the_cursor(make, ex, x):
    explorer = make(mode="patch", brush_size=6, baseline="zeros").wait(30)
    clean = explorer.predictions
    explorer.canvas._handle_custom_msg({"type": "patch", "x": 8, "y": 8, "size": 6}, [])
    explorer.wait(30)
    square = np.zeros((16, 16), np.float32)
    square[5:11, 5:11] = 1
    assert explorer.predictions == ex.occlude(x, square, baseline="zeros", topk=5)
    explorer.canvas._handle_custom_msg({"type": "patch", "x": None}, [])
    explorer.wait(30)
    assert explorer.predictions == clean and not explorer.mask.any()


def test_occlusion_map_reports_progress_and_can_be_stopped(make, ex, x, monkeypatch):
    explorer = make().wait(30)
    explorer.params  # noqa: B018
    seen, previews, gate = [], [], threading.Event()
    original = explorer.canvas.set_heatmap

    def record(values, *args, **kw):
        previews.append((np.asarray(getattr(values, "values", values)).shape, kw.get("caption", "")))
        original(values, *args, **kw)

    monkeypatch.setattr(explorer.canvas, "set_heatmap", record)
    progress = explorer._progress

    def slow(fraction):
        seen.append(fraction)
        progress(fraction)
        if 0 < fraction < 1:
            gate.wait(5)

    monkeypatch.setattr(explorer, "_progress", slow)
    explorer.set(method="occlusion", params={"patch": 2, "stride": 1})
    deadline = time.monotonic() + 30
    while not any(0 < f < 1 for f in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert explorer.status == "computing" and explorer.canvas.busy
    assert explorer.controls.stop.layout.display == "" and explorer.controls.progress.layout.display == ""
    assert previews  # a coarse map is shown while it refines, and says so
    assert previews[0][0] == (16, 16) and "occlusion · coarse preview" in previews[0][1]
    explorer.controls.stop.click()
    gate.set()
    explorer.wait(30)
    assert explorer.status == "stopped" and not explorer.canvas.busy
    assert explorer.explanation.method == "gradcam"  # the stopped map never replaced it
    assert explorer.controls.stop.layout.display == "none"
    explorer.params = {"patch": 4, "stride": 4}  # a new request runs to the end
    explorer.wait(30)
    assert explorer.status == "ready" and explorer.explanation.method == "occlusion"


def test_an_error_leaves_no_map_of_an_earlier_request_on_screen(make):
    explorer = make().wait(30)
    assert explorer.explanation is not None and explorer.canvas.heatmap
    explorer.layer = "fc"  # not spatial: Grad-CAM fails there
    explorer.wait(30)
    assert explorer.status == "error" and "spatial" in explorer.error
    assert explorer.explanation is None  # what `explanation` says agrees with the canvas: no map
    assert explorer.canvas.heatmap == b"" and explorer.canvas.heatmap_shape == (0, 0)
    explorer.layer = "act2"
    explorer.wait(30)
    assert explorer.status == "ready" and explorer.explanation.layer == "act2" and explorer.canvas.heatmap


def shows(canvas, explanation) -> bool:
    reference = nbx.widgets.canvas.HeatmapCanvas()
    show_explanation(reference, explanation)
    return (canvas.heatmap, canvas.heatmap_shape) == (reference.heatmap, reference.heatmap_shape)


def test_stopping_a_full_occlusion_map_shows_what_explanation_holds(make, monkeypatch):
    explorer = make(target=1).wait(30)
    shown = explorer.explanation
    gate, previews = threading.Event(), []
    progress = explorer._progress

    def slow(fraction):
        progress(fraction)
        if 0 < fraction < 1:
            previews.append(explorer.canvas.heatmap)
            gate.wait(5)

    monkeypatch.setattr(explorer, "_progress", slow)
    explorer.set(method="occlusion", target=2, params={"patch": 2, "stride": 1})  # another class
    deadline = time.monotonic() + 30
    while not previews and time.monotonic() < deadline:
        time.sleep(0.01)
    assert previews and not shows(explorer.canvas, shown)  # a partial map of class 2 is on screen
    explorer.stop()
    gate.set()
    explorer.wait(30)
    assert explorer.status == "stopped" and explorer.explanation is shown and shown.target == 1
    assert shows(explorer.canvas, shown)  # the partial map of the other class is gone


def test_a_list_of_images_of_different_sizes_is_refused_up_front(ex):
    images = [example_input(1)[0], example_input(2, shape=(3, 20, 16))[0], example_input(3)[0]]
    with pytest.raises(ValueError, match=r"image 1 gives \(20, 16\).*image 0 gives \(16, 16\).*Resize"):
        Explorer(ex, images)


def test_cam_is_pinned_at_the_last_feature_map(make, ex, x):
    explorer = make(layer="act1").wait(30)
    explorer.method = "cam"
    explorer.wait(30)
    assert explorer.layer == "act3" and explorer.status == "ready" and explorer.explanation.layer == "act3"
    assert_map(explorer.explanation, ex.explain(x, "cam", layer="act3"))
    assert explorer.controls.layer.disabled and explorer.controls.layer.value == "act3"
    with pytest.raises(ValueError, match="last feature map only, 'act3'; got 'act1'"):
        explorer.layer = "act1"
    explorer.controls.layer.value = "act2"  # from the (disabled) slider: shown, not taken
    assert explorer.layer == "act3" and "last feature map" in explorer.error
    assert explorer.controls.layer.value == "act3"
    with pytest.raises(ValueError, match="last feature map"):
        explorer.set(method="cam", layer="act2")
    explorer.set(method="gradcam", layer="act1").wait(30)
    assert explorer.explanation.layer == "act1" and not explorer.controls.layer.disabled
    with pytest.raises(ValueError, match="last feature map"):
        Explorer(ex, x, method="cam", layer="act1")


def test_previous_and_next_image(make, ex):
    images = [example_input(seed)[0] for seed in (1, 2, 3)]
    explorer = make(ex, images).wait(30)
    c = explorer.controls
    assert c.position.value == "1 / 3" and c.previous.disabled and not c.next.disabled
    first = explorer.explanation
    explorer.mask = np.ones((16, 16))
    c.next.click()
    explorer.wait(30)
    assert explorer.index == 1 and explorer.image is images[1] and c.position.value == "2 / 3"
    assert_map(explorer.explanation, ex.explain(images[1], "gradcam"))
    assert explorer.predictions == ex.predict(images[1]) and not explorer.mask.any()
    c.previous.click()
    explorer.wait(30)
    assert explorer.explanation is first  # from the cache
    replacement = example_input(9)[0]
    explorer.image = replacement
    explorer.wait(30)
    assert explorer.images[0] is replacement
    assert_map(explorer.explanation, ex.explain(replacement, "gradcam"))
    with pytest.raises(ValueError, match="image"):
        explorer.image = torch.zeros(3, 8, 8)


# -- panels ------------------------------------------------------------------------------------
def test_feature_map_panel_and_click_to_show_a_channel(make, ex, x):
    explorer = make().wait(30)
    explorer.panels.selected_index = 0
    explorer.wait(30)
    panel = explorer.features
    assert len(panel.tiles) == 16 and "16 of 16 channels" in panel.note.value  # act3: 16 channels
    assert panel.canvas.width > 0
    assert panel.tile_at(1, 1) is None  # the gap around the tiles
    panel._on_click(2 + (panel.tile + 2) + 3, 5)  # the second tile
    explorer.wait(30)
    channel = panel.tiles[1]
    assert explorer.method == "activations" and explorer.params["channel"] == channel
    reference = ex.explain(x, "activations", layer="act3", channel=channel)
    assert_map(explorer.explanation, reference)
    explorer.layer = "act1"
    explorer.wait(30)
    assert "act1" in panel.note.value and len(panel.tiles) == 8


def test_filter_panel(make):
    explorer = make(layer="conv1").wait(30)
    explorer.panels.selected_index = 1
    explorer.wait(30)
    panel = explorer.filters
    assert len(panel.tiles) == 8 and "RGB" in panel.note.value
    explorer.layer = "act2"  # an activation shows the convolution before it
    explorer.wait(30)
    assert len(panel.tiles) == 12 and "conv2: 12 of 12 filters 3×3, mean over 8" in panel.note.value
    panel._on_click(5, 5)  # a filter is not a map over the image: clicking does nothing
    assert explorer.method == "gradcam" and explorer.status == "ready"


# -- scheduling --------------------------------------------------------------------------------
class Deep(nn.Sequential):
    """Twenty-one conv+ReLU pairs: more than twenty layers for the slider."""

    def __init__(self):
        torch.manual_seed(0)
        blocks = []
        for _ in range(21):
            blocks += [nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()]
        super().__init__(nn.Conv2d(3, 4, 1), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 20))


def test_latest_wins_a_burst_of_layer_changes(monkeypatch, x):
    ex = nbx.Explainer(Deep().eval())
    spec = registry.get("gradcam")  # as a method without an all-layers form
    without = dataclasses.replace(spec, layerwise=None, combine=None)
    monkeypatch.setitem(registry._REGISTRY, "gradcam", without)
    layers = ex.layers()
    assert len(layers) > 20
    explorer = Explorer(ex, x, layer=layers[0])
    try:
        explorer.wait(30)
        spy = Spy(ex, monkeypatch, delay=0.05)
        for layer in layers[1:21]:
            explorer.controls.layer.value = layer
        explorer.wait(30)
        computed = spy.count("explain")
        assert computed <= 5, spy.calls  # far fewer than 20: stale requests were dropped
        assert explorer.layer == layers[20] and explorer.explanation.layer == layers[20]
        reference = ex.explain(x, "gradcam", layer=layers[20])
        assert_map(explorer.explanation, reference)
    finally:
        explorer.close()


def test_latest_wins_a_burst_of_class_changes(make, monkeypatch, x):
    ex = nbx.Explainer(Deep().eval())
    explorer = make(ex, x).wait(30)
    spy = Spy(ex, monkeypatch, delay=0.05)
    for target in range(20):
        explorer.target = target
    explorer.wait(30)
    assert spy.count("session") <= 5, spy.calls
    assert explorer.explanation.target == 19
    # every layer of the last class came with it: the slider is served from the cache
    before = len(spy.calls)
    for layer in ex.layers():
        explorer.layer = layer
        assert explorer.explanation.layer == layer and explorer.explanation.target == 19
    assert len(spy.calls) == before


def test_going_back_is_instant_no_engine_call(make, ex, monkeypatch):
    explorer = make().wait(30)
    settings = [
        dict(method="gradcam", layer="act3", target=None, params={}),
        dict(method="gradcam", layer="act2", target=None, params={}),
        dict(method="gradcam", layer="act2", target=3, params={}),
        dict(method="saliency", layer="act2", target=3, params={}),
        dict(method="smoothgrad", layer="act2", target=3, params={}),
        dict(method="smoothgrad", layer="act2", target=3, params={"samples": 3}),
        dict(method="gradcam", layer="act1", target=3, params={}),
    ]
    shown = []
    for state in settings:
        shown.append(explorer.set(**state).wait(30).explanation)
    spy = Spy(ex, monkeypatch)
    for state, explanation in list(zip(settings, shown, strict=True))[::-1]:
        explorer.set(**state)
        assert explorer.scheduler.idle  # served at once, in this thread: nothing pending
        assert explorer.explanation is explanation and explorer.last_ms < 100
    assert spy.calls == []


def test_wait_times_out(make, ex, monkeypatch):
    explorer = make().wait(30)
    Spy(ex, monkeypatch, delay=0.5)
    explorer.method = "saliency"
    with pytest.raises(TimeoutError):
        explorer.wait(0.01)
    explorer.wait(30)


def test_model_is_untouched_after_widget_use(x):
    model = TinyCNN()
    model.train()  # a model in training mode stays in training mode
    state = ModelState.take(model)
    explorer = Explorer(model, x, labels=LABELS)
    try:
        explorer.wait(30)
        changes = [
            dict(layer="act1"), dict(target=4), dict(method="smoothgrad", params={"samples": 2}),
            dict(method="integrated_gradients", params={"steps": 3}), dict(method="guided_backprop"),
            dict(method="occlusion", params={"patch": 4, "stride": 4}), dict(mask=np.ones((16, 16))),
            dict(method="layercam"),
        ]
        for change in changes:
            explorer.set(**change).wait(30)
        explorer.panels.selected_index = 0
        explorer.wait(30)
        assert explorer.status == "ready", explorer.error
    finally:
        explorer.close()
    state.assert_same(model)


def test_no_thread_is_left_running_after_close(ex, x):
    before = set(threading.enumerate())
    explorer = Explorer(ex, x)
    explorer.method = "smoothgrad"
    thread = explorer.scheduler.thread
    assert thread is not None
    explorer.close()
    assert not thread.is_alive()
    assert set(threading.enumerate()) <= before
    assert explorer.status == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        explorer.method = "saliency"
    explorer.close()  # twice is fine


def test_updates_from_the_worker_thread_reach_the_frontend(tmp_path, monkeypatch):
    """ipywidgets trait changes made on a background thread are sent by the kernel (ipykernel's
    IOPub socket is thread-safe): checked on a real kernel, after the cell has finished."""
    jupyter_client = pytest.importorskip("jupyter_client")
    from tests.test_notebooks import venv_kernel

    kernel = venv_kernel(tmp_path, monkeypatch)
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name=kernel, startup_timeout=120)
    try:
        code = (
            "import threading, time, ipywidgets as W\n"
            "import nbexplain as nbx\n"
            "from tests.models import TinyCNN, example_input\n"
            "slider = W.IntSlider()\n"
            "explorer = nbx.Explorer(nbx.Explainer(TinyCNN().eval()), example_input()[0]).wait(60)\n"
            "explorer.method = 'saliency'  # computed on the worker\n"
            "print(slider.model_id, explorer.canvas.model_id)\n"
            "threading.Thread(target=lambda: (time.sleep(1.0), setattr(slider, 'value', 42))).start()\n"
        )
        msg_id = client.execute(code)
        ids, idle, updates = None, False, []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                msg = client.get_iopub_msg(timeout=1)
            except Exception:  # queue.Empty
                msg = None
            if msg is not None:
                kind, content = msg["msg_type"], msg["content"]
                if msg["parent_header"].get("msg_id") == msg_id:
                    assert kind != "error", content
                    if kind == "stream" and content["name"] == "stdout":
                        ids = content["text"].split()
                    idle = idle or (kind == "status" and content["execution_state"] == "idle")
                if kind == "comm_msg" and content["data"].get("method") == "update":
                    updates.append((content["comm_id"], content["data"], idle))
            if idle and ids:
                seen = {  # the slider's change comes after the cell finished (the kernel is idle)
                    "slider": any(c == ids[0] and d.get("state", {}).get("value") == 42 and after
                                  for c, d, after in updates),
                    "heatmap": any(c == ids[1] and ["heatmap"] in d.get("buffer_paths", [])
                                   for c, d, _ in updates),
                }
                if all(seen.values()):
                    break
        assert seen == {"slider": True, "heatmap": True}
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

