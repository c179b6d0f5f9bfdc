"""CachedExplainer: an Explainer's calls with their results kept (all layers from one pass)."""

from __future__ import annotations

import numpy as np
import pytest

import nbexplain as nbx
from nbexplain.widgets.cache import explanation_bytes
from nbexplain.widgets.cached import CachedExplainer
from tests.models import TinyCNN, example_input


@pytest.fixture()
def engine():
    ex = nbx.Explainer(TinyCNN().eval(), labels=[f"c{i}" for i in range(10)])
    cached = CachedExplainer(ex)
    yield cached, ex, example_input()
    cached.close()


def test_cached_layer_methods_compute_every_layer_once(engine):
    cached, ex, x = engine
    assert ex.layers() == ["act1", "act2", "act3"]
    first = cached.explain(0, x, "gradcam", None, {}, "act3")
    assert dict(cached.calls) == {"session": 1}
    for layer in ex.layers():
        assert cached.explain(0, x, "gradcam", None, {}, layer).layer == layer
    assert dict(cached.calls) == {"session": 1}
    # the top-1 class asked for by index is the same map
    assert cached.explain(0, x, "gradcam", first.target, {}, "act3") is first
    assert dict(cached.calls) == {"session": 1}
    reference = ex.explain(x, "gradcam", layer="act2")
    same = cached.explain(0, x, "gradcam", None, {}, "act2")
    np.testing.assert_allclose(same.map, reference.map, atol=1e-6)
    # a layer outside layers() is computed on its own
    assert cached.explain(0, x, "gradcam", None, {}, "conv2").layer == "conv2"
    assert dict(cached.calls) == {"session": 1, "explain": 1}


def test_cached_pixel_method_and_predictions(engine):
    cached, ex, x = engine
    a = cached.explain(0, x, "smoothgrad", 1, {"samples": 4}, None)
    assert cached.explain(0, x, "smoothgrad", 1, {"samples": 4}, None) is a
    assert cached.explain(0, x, "smoothgrad", 1, {"samples": 5}, None) is not a
    assert cached.calls["explain"] == 2
    clean = cached.predict(0, x, None, "blur", 3)
    assert clean == ex.predict(x, topk=3)
    mask = np.zeros((16, 16), np.float32)
    mask[:8] = 1
    occluded = cached.predict(0, x, mask, "zeros", 3)
    assert occluded == ex.occlude(x, mask, baseline="zeros", topk=3)
    assert cached.predict(0, x, mask.copy(), "zeros", 3) is occluded
    assert cached.predict(0, x, np.zeros((16, 16)), "mean", 3) is clean  # an empty mask is no mask
    assert cached.calls["predict"] == 1 and cached.calls["occlude"] == 1


def test_cached_explanations_stay_within_cache_bytes():
    ex = nbx.Explainer(TinyCNN().eval(), labels=[f"c{i}" for i in range(10)])
    x = example_input()
    one = explanation_bytes(ex.explain(x, "saliency", target=0))
    cached = CachedExplainer(ex, max_bytes=3 * one)
    try:
        for target in range(6):
            cached.explain(0, x, "saliency", target, {}, None)
        assert len(cached.explanations) == 3 and cached.explanations.bytes <= 3 * one
        assert cached.explain(0, x, "saliency", 5, {}, None) is not None
        assert cached.calls["explain"] == 6  # the newest three are still there
    finally:
        cached.close()


def test_cache_size_is_checked():
    with pytest.raises(ValueError, match="cache_size"):
        CachedExplainer(None, size=0)
