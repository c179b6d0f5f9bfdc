"""The brush (``occlude``): one forward under a mask, its baselines and its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbexplain as nbx
from nbexplain.engine.perturb import baseline_image, blur
from tests.methods.occlusion.nets import (
    LocalNet,
    _init,
    example,
)


# -- the brush -------------------------------------------------------------------------------
@pytest.fixture
def brush():
    model = _init(LocalNet(), 0).float()
    x = example((3, 20, 20), seed=13).float()
    return nbx.Explainer(model, labels=[f"c{i}" for i in range(7)]), model, x


def _top(model, image, k=3):
    with torch.no_grad():
        probs = model(image).softmax(1)[0]
    values, indices = probs.topk(k)
    return [(int(i), float(v)) for v, i in zip(values, indices, strict=True)]


@pytest.mark.parametrize("baseline", ["blur", "mean", "zeros", 0.3])
def test_occlude_matches_a_manual_forward(brush, baseline):
    explainer, model, x = brush
    mask = np.zeros((20, 20), dtype=bool)
    mask[3:9, 5:15] = True
    base = baseline_image(x, baseline)
    expected = _top(model, torch.where(torch.from_numpy(mask), base, x))
    got = explainer.occlude(x, mask, baseline=baseline, topk=3)
    assert [p.index for p in got] == [i for i, _ in expected]
    assert np.allclose([p.prob for p in got], [v for _, v in expected], rtol=1e-5)
    assert all(isinstance(p, nbx.Prediction) and p.label == f"c{p.index}" for p in got)


def test_occlude_empty_mask_is_predict_and_float_mask_blends(brush):
    explainer, model, x = brush
    assert explainer.occlude(x, np.zeros((20, 20)), topk=4) == explainer.predict(x, topk=4)
    weight = torch.rand(20, 20, generator=torch.Generator().manual_seed(1))
    base = blur(x)
    expected = _top(model, x + weight * (base - x), k=2)
    got = explainer.occlude(x, weight, topk=2)
    assert [p.index for p in got] == [i for i, _ in expected]
    assert np.allclose([p.prob for p in got], [v for _, v in expected], rtol=1e-5)


@pytest.mark.parametrize(("mask", "error", "words"), [
    ([[0, 1]], TypeError, ["mask", "numpy", "tensor"]),
    (np.zeros((10, 20)), ValueError, ["mask", "(20, 20)", "(10, 20)"]),
    (np.zeros((20, 20, 1)), ValueError, ["mask", "(20, 20)"]),
    (np.full((20, 20), np.nan), ValueError, ["mask", "NaN"]),
    (np.full((20, 20), 1.5), ValueError, ["mask", "[0, 1]"]),
    (-torch.ones(20, 20), ValueError, ["mask", "[0, 1]"]),
    (np.array([["a"] * 20] * 20), TypeError, ["mask"]),
])
def test_occlude_rejects_bad_masks(brush, mask, error, words):
    explainer, _, x = brush
    with pytest.raises(error) as caught:
        explainer.occlude(x, mask)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"baseline": "grey"}, ValueError), ({"baseline": None}, TypeError), ({"topk": 0}, ValueError),
])
def test_occlude_rejects_bad_arguments(brush, kwargs, error):
    explainer, _, x = brush
    with pytest.raises(error):
        explainer.occlude(x, np.zeros((20, 20), bool), **kwargs)


def test_occlude_leaves_the_model_in_train_mode(brush):
    explainer, model, x = brush
    model.train()
    explainer.occlude(x, np.ones((20, 20), bool))
    assert model.training


def test_occlude_baseline_follows_the_image(brush):
    """The blurred baseline is remembered for the last image only (strokes on one image are one
    forward each); a new image gets its own."""
    explainer, model, x = brush
    mask = np.ones((20, 20), bool)
    other = example((3, 20, 20), seed=14).float()
    for image in (x, x, other, x):
        got = explainer.occlude(image, mask, topk=2)
        expected = _top(model, blur(image), k=2)
        assert [p.index for p in got] == [i for i, _ in expected]
        assert np.allclose([p.prob for p in got], [v for _, v in expected], rtol=1e-5)
