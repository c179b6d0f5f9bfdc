"""Channels-last where it pays, and models that cannot take it (``.view`` of a conv output)
still work, with the same results."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nbx
from nbexplain.engine.layout import accepts_channels_last, in_layout
from nbexplain.methods.occlusion.runner import IncrementalRunner


class ViewNet(nn.Module):
    """A hand-written CNN that flattens with ``.view`` (fails on a channels-last batch) and has
    a depthwise convolution (so even one image is tried in channels-last order)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Linear(4 * 12 * 12, 5)

    def forward(self, x):
        y = torch.relu(self.depthwise(torch.relu(self.conv(x))))
        return self.head(y.view(y.shape[0], -1))


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(1, 3, 12, 12)


def test_a_model_that_cannot_take_channels_last_falls_back_once_and_is_remembered(x):
    model = ViewNet().eval()
    seen = []
    with torch.no_grad():
        out = in_layout(model, x, lambda b: seen.append(b.is_contiguous()) or model(b))
    assert seen == [False, True]  # tried channels-last, then the default order
    assert not accepts_channels_last(model)
    seen.clear()
    with torch.no_grad():
        in_layout(model, x, lambda b: seen.append(b.is_contiguous()) or model(b))
    assert seen == [True]
    torch.testing.assert_close(out, model(x))


def test_an_error_of_the_model_s_own_is_raised_not_hidden(x):
    model = ViewNet().eval()
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        in_layout(model, torch.randn(1, 3, 10, 10), model)
    assert accepts_channels_last(model)  # not blamed on the memory order


@pytest.mark.parametrize("method,params", [
    ("saliency", {}), ("smoothgrad", {"samples": 6}), ("integrated_gradients", {"steps": 8}),
    ("occlusion", {"patch": 4, "stride": 2}), ("gradcam", {"layer": "depthwise"}),
    ("activations", {"layer": "depthwise"}),
])
def test_methods_work_on_a_model_that_flattens_with_view(x, method, params):
    model = ViewNet().eval()
    explanation = nbx.Explainer(model).explain(x, method, target=2, **params)
    assert torch.isfinite(explanation.attribution).all()
    with torch.no_grad():
        assert explanation.score == pytest.approx(float(model(x)[0, 2]), rel=1e-5)


def test_incremental_occlusion_runs_in_the_default_order_there_and_stays_exact(x):
    model = ViewNet().eval()
    with torch.inference_mode():
        runner = IncrementalRunner.build(model, x)
        assert runner is not None and runner.memory_format == torch.contiguous_format
        base = torch.zeros_like(x)
        windows = [(0, 4, 0, 4), (4, 8, 8, 12)]
        batch = x.repeat(2, 1, 1, 1)
        for n, (y0, y1, x0, x1) in enumerate(windows):
            batch[n, :, y0:y1, x0:x1] = 0
        torch.testing.assert_close(runner.run(x, base, windows), model(batch), rtol=1e-5, atol=1e-6)
