"""Unit ablation: finds the channel wired to the target, equals a slow one-channel-at-a-time loop
(batched, chunked, with the layers before run once when the model allows it), and leaves the
model untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nbx
from nbexplain import render
from nbexplain.engine.context import Cancelled, Context
from nbexplain.engine.maps import upsample
from tests.untouched import ModelState

WIRED = 3


class Wired(nn.Module):
    """stem conv → ReLU → ``units`` conv (8 channels) → ReLU ``act`` → GAP → linear. Class 0 reads
    channel ``WIRED`` of ``act`` with a large weight and every other channel with a small one."""

    def __init__(self, dense: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.dense = dense  # concatenate the stem's output with the units' (a DenseNet-style skip)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.units = nn.Conv2d(6, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(14 if dense else 8, 4)
        with torch.no_grad():
            self.units.bias[WIRED] = 1.0  # the wired channel is active everywhere
            self.fc.weight.mul_(0.1)
            self.fc.weight[0, WIRED] = 5.0

    def forward(self, x):
        a = F.relu(self.stem(x))
        b = self.act(self.units(a))
        if self.dense:
            b = torch.cat([a, b], 1)
        return self.fc(b.mean((2, 3)))


def slow_drops(model: nn.Module, x: torch.Tensor, layer: str, target: int) -> torch.Tensor:
    """Zero one channel, run the model, repeat: the definition, one forward per channel."""
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        clean = model(x)[0, target]
        drops = []
        for k in range(model.units.out_channels):
            def zero(module, args, output, k=k):
                output = output.clone()
                output[:, k] = 0
                return output

            handle = module.register_forward_hook(zero)
            try:
                drops.append(clean - model(x)[0, target])
            finally:
                handle.remove()
    return torch.stack(drops)


def batches_seen(model: nn.Module):
    """Batch sizes the stem sees from now on, and the handle of the hook that records them."""
    seen: list[int] = []
    return seen, model.stem.register_forward_hook(lambda m, a, out: seen.append(out.shape[0]))


def run(model, x, batch_elements=32 * 3 * 224 * 224, **callbacks) -> torch.Tensor:
    """The method called directly on a Context (target 0, layer ``act``)."""
    ctx = Context(model=model, x=x, requested_target=0, layer="act", batch_elements=batch_elements,
                  **callbacks)
    return nbx.method_info("ablation").fn(ctx, top=5)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(1, 3, 10, 10, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("dense", [False, True], ids=["expanded", "repeated"])
def test_finds_the_wired_channel_and_equals_the_slow_loop(dense, x):
    model = Wired(dense=dense).eval()
    seen, handle = batches_seen(model)
    drops = run(model, x)
    handle.remove()
    assert drops.shape == (8,) and int(drops.argmax()) == WIRED
    torch.testing.assert_close(drops, slow_drops(model, x, "act", 0), rtol=1e-5, atol=1e-5)
    # the layers before ``act`` run on the single input when the model allows it, else on the batch
    assert (max(seen) == 1) != dense


def test_chunks_report_progress_and_give_the_same_drops(x):
    model = Wired().eval()
    whole = run(model, x)
    fractions = []
    per_row = 8 * 10 * 10  # the layer's output per channel row
    chunked = run(model, x, batch_elements=3 * per_row, progress=lambda f, partial=None: fractions.append(f))
    torch.testing.assert_close(chunked, whole)
    assert fractions == pytest.approx([3 / 8, 6 / 8, 1.0])


def test_cancel_stops_and_removes_the_hook(x):
    model = Wired().eval()
    state = ModelState.take(model)
    with pytest.raises(Cancelled):
        run(model, x, batch_elements=2 * 8 * 10 * 10, should_stop=lambda: True)
    state.assert_same(model)


def test_through_the_explainer_map_and_untouched(x):
    model = Wired()
    explainer = nbx.Explainer(model)
    state = ModelState.take(model)
    explanation = explainer.explain(x, "ablation", target=0, layer="act", top=1)
    state.assert_same(model)
    assert explanation.attribution.shape == (8,) and explanation.layer == "act"
    with torch.no_grad():
        activation = model.act(model.units(F.relu(model.stem(x))))[0, WIRED]
    expected = render.normalize_minmax(upsample(activation, (10, 10)))
    assert explanation.map.shape == (10, 10)
    torch.testing.assert_close(torch.from_numpy(explanation.map), torch.from_numpy(expected))
    info = nbx.method_info("ablation")
    assert info.space == "unit" and info.needs_layer and info.param_names() == ["top"]


def test_a_layer_without_spatial_output_has_no_map(x):
    model = Wired().eval()
    with pytest.raises(ValueError, match="spatial"):
        nbx.Explainer(model).explain(x, "ablation", layer="fc")
