"""What MapView puts on the canvas: raw values at the method's own resolution, their colour
scale, unit and a caption that names the class (and a coarse preview that says it is one)."""

from __future__ import annotations

import numpy as np
import pytest

import nbexplain as nbx
from nbexplain.widgets.canvas import HeatmapCanvas
from nbexplain.widgets.view import canvas_caption, preview_values, show_explanation
from tests.models import LABELS, TinyCNN, example_input


@pytest.fixture(scope="module")
def ex():
    return nbx.Explainer(TinyCNN().eval(), labels=LABELS)


@pytest.fixture(scope="module")
def x():
    return example_input()[0]


@pytest.mark.parametrize("method, params", [("gradcam", {}), ("saliency", {}),
                                            ("integrated_gradients", {"steps": 4}),
                                            ("occlusion", {"patch": 4, "stride": 2})])
def test_the_canvas_gets_raw_values_their_scale_unit_and_a_caption(ex, x, method, params):
    e = ex.explain(x, method, target=3, **params)
    canvas = HeatmapCanvas(e.image)
    show_explanation(canvas, e)
    values = np.frombuffer(canvas.heatmap, "<f4").reshape(canvas.heatmap_shape)
    np.testing.assert_array_equal(values, e.values.values)
    assert canvas.scale == pytest.approx(e.scale) and canvas.signed == e.signed
    assert canvas.unit == nbx.method_info(method).unit != ""
    caption = canvas.caption
    assert caption == canvas_caption(e) and caption.startswith("c3 (class 3, logit ")  # the class first
    assert f" · {method}" in caption and (f"layer {e.layer}" in caption) == bool(e.layer)


def test_occlusion_values_are_the_logit_drop_once_not_summed_over_colour_channels(ex, x):
    e = ex.explain(x, "occlusion", patch=4, stride=2)
    drop = e.attribution[0].numpy()
    assert np.allclose(e.attribution.numpy(), drop[None])  # every channel holds the same drop
    np.testing.assert_array_equal(e.values.values, drop)  # the readout's raw value is that drop
    assert e.scale[1] == pytest.approx(np.percentile(np.abs(drop), 99.5), rel=1e-5)


def test_a_preview_is_put_on_the_same_kind_of_scale_as_the_final_map(ex, x):
    params = {"patch": 4, "stride": 2, "baseline": "blur"}
    e = ex.explain(x, "occlusion", **params)
    preview = preview_values("occlusion", e.attribution, (16, 16), params)
    np.testing.assert_array_equal(preview.values, e.values.values)
    assert (preview.low, preview.high) == e.scale
    assert preview.signed and preview.unit == "logit drop when hidden"
    saliency = ex.explain(x, "saliency")
    other = preview_values("saliency", saliency.attribution, (16, 16), {})
    np.testing.assert_allclose(other.values, saliency.values.values)
    assert other.unit == "|∂logit/∂x|"
