"""Occlusion equals Captum's ``Occlusion`` (both engines, and \"auto\"); window geometry and the
coarse-to-fine order, reports and cancellation; parameters."""

from __future__ import annotations

import time

import pytest
import torch

import nbexplain as nbx
from nbexplain.engine.context import Context
from nbexplain.methods.occlusion import evaluators
from nbexplain.methods.occlusion import method as occlusion_method
from nbexplain.methods.occlusion.method import occlusion_map
from nbexplain.methods.occlusion.runner import IncrementalRunner
from nbexplain.methods.occlusion.windows import coverage, progressive_order, scores_to_map, window_starts
from tests.methods.occlusion.nets import (
    MODELS,
    LocalNet,
    _init,
    captum,
    example,
)


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
