"""Compare: one image under several methods, sharing the class and layer controls."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import nbexplain as nbx
from nbexplain.widgets.compare import Compare
from tests.models import LABELS, TinyCNN
from tests.untouched import ModelState

METHODS = ["saliency", "integrated_gradients", "gradcam", "layercam"]


@pytest.fixture()
def compare(ex, x):
    made = Compare(ex, x, methods=METHODS, params={"integrated_gradients": {"steps": 4}})
    yield made.wait(60)
    made.close()


def assert_maps(compare, ex, x, target=None, layer="act3"):
    for name, e in compare.explanations.items():
        spec = nbx.method_info(name)
        params = compare.params[name]
        reference = ex.explain(x, name, target=target, layer=layer if spec.needs_layer else None, **params)
        assert e.method == name and e.target == reference.target
        np.testing.assert_allclose(e.map, reference.map, atol=1e-6)


def test_every_method_side_by_side(compare, ex, x):
    assert compare.methods == tuple(METHODS) and compare.status == "ready"
    assert compare.errors == dict.fromkeys(METHODS, "")
    assert compare.params["integrated_gradients"]["steps"] == 4
    assert_maps(compare, ex, x)
    assert compare.canvases["gradcam"].heatmap_shape == (8, 8)
    assert compare.canvases["saliency"].heatmap_shape == (16, 16)
    assert compare.predictions == ex.predict(x)
    assert "application/vnd.jupyter.widget-view+json" in compare._repr_mimebundle_()


def test_shared_class_picker_moves_every_map(compare, ex, x):
    top = ex.predict(x)
    assert [v for _, v in compare.picker.dropdown.options][1:] == [p.index for p in top]
    compare.picker.dropdown.value = top[1].index
    compare.wait(60)
    assert compare.target == top[1].index
    assert_maps(compare, ex, x, target=top[1].index)
    compare.picker.search.value = "c7"
    compare.wait(60)
    assert compare.target == 7 and all(e.target == 7 for e in compare.explanations.values())


def test_shared_layer_slider_moves_only_the_layer_methods(compare, ex, x):
    pixel = {name: compare.explanations[name] for name in ("saliency", "integrated_gradients")}
    compare.layer_slider.value = "act1"
    compare.wait(60)
    assert compare.layer == "act1"
    assert all(compare.explanations[name] is e for name, e in pixel.items())  # not recomputed
    assert {compare.explanations[name].layer for name in ("gradcam", "layercam")} == {"act1"}
    assert_maps(compare, ex, x, layer="act1")
    compare.layer = "act2"
    assert compare.layer_slider.value == "act2"


def test_view_controls_and_params(compare, ex, x):
    compare.opacity_slider.value = 0.9
    compare.cmap_picker.value = "gray"
    assert all(c.opacity == 0.9 and c.cmap == "gray" for c in compare.canvases.values())
    assert (compare.opacity, compare.cmap) == (0.9, "gray")
    compare.set(params={"integrated_gradients": {"steps": 6}}).wait(60)
    assert compare.explanations["integrated_gradients"].params["steps"] == 6
    assert_maps(compare, ex, x)


def test_bad_values(ex, x, compare):
    with pytest.raises(ValueError, match="unknown method"):
        Compare(ex, x, methods=["nope"])
    with pytest.raises(ValueError, match="repeat"):
        Compare(ex, x, methods=["saliency", "saliency"])
    with pytest.raises(TypeError, match="methods"):
        Compare(ex, x, methods="saliency")
    with pytest.raises(TypeError):
        Compare(ex, x, colour="red")
    with pytest.raises(ValueError, match="params"):
        Compare(ex, x, methods=["saliency"], params={"gradcam": {}})
    with pytest.raises(ValueError, match="unknown parameter"):
        Compare(ex, x, methods=["saliency"], params={"saliency": {"steps": 3}})
    with pytest.raises(ValueError, match="layer 'nope'"):
        compare.layer = "nope"
    with pytest.raises(ValueError, match="opacity"):
        compare.opacity = 2
    with pytest.raises(ValueError, match="target"):
        compare.target = 99


def test_a_bad_control_value_and_a_failing_method_are_shown(compare, ex, x):
    compare.from_control("target", "no such class")
    assert "no such class" in compare.error and compare.error_label.layout.display == ""
    assert compare.target is None and compare.picker.dropdown.value == -1
    compare.layer = "fc"  # not spatial: the layer methods fail, the pixel methods are untouched
    compare.wait(60)
    assert compare.status == "error"
    assert "spatial" in compare.errors["gradcam"] and compare.errors["saliency"] == ""
    assert "spatial" in compare.labels["gradcam"].value
    compare.layer_slider.value = "act2"
    compare.wait(60)
    assert compare.status == "ready" and compare.errors == dict.fromkeys(METHODS, "")
    assert compare.error == ""


def test_going_back_is_served_from_the_cache(compare, ex, monkeypatch):
    compare.set(target=2, layer="act1").wait(60)
    calls = []
    for name in ("explain", "explain_layers"):
        original = getattr(ex, name)
        monkeypatch.setattr(ex, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    compare.set(target=None, layer="act3")
    assert compare.scheduler.idle and calls == []


def test_model_untouched_and_no_thread_left(x):
    model = TinyCNN().train()
    state = ModelState.take(model)
    before = set(threading.enumerate())
    compare = Compare(nbx.Explainer(model, labels=LABELS), x, methods=METHODS)
    compare.set(target=3, layer="act2").wait(60)
    compare.close()
    assert set(threading.enumerate()) <= before and compare.status == "closed"
    state.assert_same(model)


def test_compare_and_explorer_on_one_model_at_once(x):
    """Two widgets compute on two worker threads; their engine calls must not interleave (each
    one switches the model to eval mode and freezes it until it returns)."""
    model = TinyCNN().train()
    state = ModelState.take(model)
    ex = nbx.Explainer(model, labels=LABELS)
    for _ in range(3):
        explorer = nbx.Explorer(ex, x, method="smoothgrad", samples=32)
        compare = Compare(ex, x, methods=["smoothgrad", "gradcam", "integrated_gradients"],
                          params={"smoothgrad": {"samples": 32}})
        for target in range(4):
            compare.target = target
            explorer.set(method="gradcam" if target % 2 else "smoothgrad", target=target)
        explorer.wait(60)
        compare.wait(60)
        assert explorer.error == "" and compare.errors == dict.fromkeys(compare.methods, "")
        explorer.close()
        compare.close()
    state.assert_same(model)


def test_cam_keeps_to_the_last_feature_map_while_the_others_follow_the_slider(ex, x):
    compare = Compare(ex, x, methods=["cam", "gradcam"], layer="act1")
    try:
        compare.wait(60)
        assert compare.status == "ready", compare.errors
        assert compare.explanations["cam"].layer == "act3" and compare.explanations["gradcam"].layer == "act1"
        np.testing.assert_allclose(compare.explanations["cam"].map, ex.explain(x, "cam", layer="act3").map,
                                   atol=1e-6)
    finally:
        compare.close()
