"""Gradient family against Captum on the same inputs, and against the math where Captum is no oracle.

Captum is the reference on models whose rectifiers are ``nn.ReLU`` modules. Functional
rectifiers and ReLU6 are covered in ``test_reference_rectifiers.py`` against slow versions
written from the papers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbexplain as nbx
from nbexplain.engine.context import Cancelled, Context
from nbexplain.engine.guard import preserved
from nbexplain.methods.gradient import ig_points
from tests.models import ReusedReLUNet, TinyCNN, example_input

captum = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def resnet18_small():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


MODELS = {
    "tiny-relu": lambda: (TinyCNN("nn.ReLU").eval(), example_input()),
    "tiny-relu-inplace": lambda: (TinyCNN("nn.ReLU(inplace)").eval(), example_input()),
    "reused-relu-bn": lambda: (ReusedReLUNet().eval(), example_input(scale=1.0)),
    "resnet18": lambda: (resnet18_small(), example_input(shape=(3, 48, 48), scale=1.0)),
}


@pytest.fixture(params=list(MODELS), scope="module")
def model_and_input(request):
    return MODELS[request.param]()


def explain(model, x, method, target=3, **params):
    return nbx.Explainer(model).explain(x, method, target=target, **params)


def assert_close(got, expected, rtol=1e-4, noise=0.0):
    """Close to ``expected`` up to float32 rounding (relative to its largest value), plus ``noise``."""
    expected = expected.detach()
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(got, expected, rtol=rtol, atol=rtol * 0.1 * scale + noise)


def captum_batched(call):
    """Captum's result for a batched method, ``call(layout)`` with its tensors in memory order
    ``layout``, and how much it moves when they come in channels-last order (the order our
    batched CPU passes use: faster there). The float32 sums come out in another order, which on
    a random ResNet-18 moves results by up to ~3e-4 of their largest value; on the tiny models,
    not at all."""
    expected = call(torch.contiguous_format)[0].detach()
    moved = call(torch.channels_last)[0].detach()
    return expected, 2 * float((moved - expected).abs().max())


# -- Captum on nn.ReLU models ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "captum_call"),
    [
        ("gradient", lambda m, x, t: captum.Saliency(m).attribute(x, target=t, abs=False)),
        ("saliency", lambda m, x, t: captum.Saliency(m).attribute(x, target=t)),
        ("input_x_gradient", lambda m, x, t: captum.InputXGradient(m).attribute(x, target=t)),
        ("guided_backprop", lambda m, x, t: captum.GuidedBackprop(m).attribute(x, target=t)),
        ("deconvnet", lambda m, x, t: captum.Deconvolution(m).attribute(x, target=t)),
    ],
)
def test_matches_captum(model_and_input, method, captum_call):
    model, x = model_and_input
    expected = captum_call(model, x.clone(), 3)[0]
    assert_close(explain(model, x, method).attribution, expected)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [2, 7, 32])  # Captum's Riemann rules need two or more
def test_integrated_gradients_matches_captum(rule, steps):
    model, x = TinyCNN("nn.ReLU(inplace)").eval(), example_input()
    expected = captum.IntegratedGradients(model).attribute(x, target=3, n_steps=steps, method=rule)[0]
    if rule == "riemann_trapezoid":
        expected = expected * steps / (steps - 1)  # Captum's trapezoid weights sum to (n-1)/n, see below
    assert_close(explain(model, x, "integrated_gradients", steps=steps, rule=rule).attribution, expected)


@pytest.mark.parametrize("baseline", ["zeros", "blur", "tensor", "tensor4d"])
def test_integrated_gradients_baselines_match_captum(model_and_input, baseline):
    from nbexplain.engine.perturb import blur

    model, x = model_and_input
    base = {
        "zeros": torch.zeros_like(x),
        "blur": blur(x),
        "tensor": torch.full_like(x, 0.3),
        "tensor4d": torch.full_like(x, -0.2),
    }[baseline]
    given = {"zeros": "zeros", "blur": "blur", "tensor": base[0], "tensor4d": base}[baseline]
    expected, noise = captum_batched(lambda layout: captum.IntegratedGradients(model).attribute(
        x.contiguous(memory_format=layout), baselines=base.contiguous(memory_format=layout), target=3,
        n_steps=16))
    got = explain(model, x, "integrated_gradients", steps=16, baseline=given).attribution
    assert_close(got, expected, noise=noise)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [2, 5, 64])
def test_ig_points_are_captums_except_the_trapezoid_fix(rule, steps):
    """Same points and weights as Captum, except that Captum's trapezoid rule spaces its points
    1/(n-1) apart but weighs them 1/n (ends 1/2n), so its weights sum to (n-1)/n, not 1 (captum
    0.9 ``approximation_methods.riemann_builders``). Ours is the trapezoid rule: 1/(n-1), ends halved."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(rule)
    ours_alphas, ours_weights = ig_points(steps, rule)
    captum_weights = np.asarray(step_sizes(steps))
    if rule == "riemann_trapezoid":
        assert captum_weights.sum() == pytest.approx((steps - 1) / steps)
        captum_weights = captum_weights * steps / (steps - 1)
    np.testing.assert_allclose(ours_alphas, alphas(steps), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours_weights, captum_weights, rtol=1e-6, atol=1e-7)
    assert ours_weights.sum() == pytest.approx(1.0)
    # every rule integrates a straight line exactly (the trapezoid/middle/Gauss rules exactly, the
    # one-sided Riemann sums up to the 1/(2n) bias they are known for)
    exact = ours_weights @ ours_alphas
    assert exact == pytest.approx(0.5, abs=0.5 / steps + 1e-9)
    if rule not in ("riemann_left", "riemann_right"):
        assert exact == pytest.approx(0.5)


@pytest.mark.parametrize("shape", [(1, 3, 24, 24), (2, 3, 19, 40), (1, 1, 5, 7)])
def test_blur_equals_a_separable_gaussian_convolution_with_replicated_edges(shape):
    from nbexplain.engine.perturb import blur

    x = torch.randn(shape, dtype=torch.float64)
    sigma = max(shape[-2:]) / 16
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    # replicate padding one axis at a time (a pad wider than the image is fine this way)
    rows = x[..., torch.arange(-radius, shape[-2] + radius).clamp(0, shape[-2] - 1), :]
    padded = rows[..., torch.arange(-radius, shape[-1] + radius).clamp(0, shape[-1] - 1)]
    channels = shape[1]
    across = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    down = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = torch.nn.functional.conv2d(torch.nn.functional.conv2d(padded, across, groups=channels), down,
                                     groups=channels)
    torch.testing.assert_close(blur(x), out, rtol=1e-12, atol=1e-12)


def test_blur_baseline_is_a_smooth_copy():
    from nbexplain.engine.perturb import blur

    x = example_input(shape=(3, 32, 32))
    blurred = blur(x)
    assert blurred.shape == x.shape
    torch.testing.assert_close(blurred.mean((2, 3)), x.mean((2, 3)), atol=0.2, rtol=0)
    assert float(blurred.std()) < 0.5 * float(x.std())
    constant = torch.full((1, 3, 20, 20), 0.7)
    torch.testing.assert_close(blur(constant), constant)


# -- SmoothGrad: the same noise fed to a reference and to Captum's NoiseTunnel -----------------

class Recording(nn.Module):
    """``inner``, remembering every batch it is called on."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


def per_sample_gradients(model, xs, target):
    grads = []
    for row in xs:
        row = row[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(row)[0, target], row)
        grads.append(grad[0])
    return torch.stack(grads)


@pytest.mark.parametrize("magnitude", [False, True])
def test_smoothgrad_is_the_mean_gradient_over_its_noisy_inputs(magnitude):
    inner, x = TinyCNN("nn.ReLU").eval(), example_input()
    model = Recording(inner)
    got = explain(model, x, "smoothgrad", samples=12, noise=0.2, magnitude=magnitude, seed=4).attribution
    noisy, clean = model.seen  # one batched pass, then one forward of x for the score
    assert noisy.shape == (12, *x.shape[1:]) and torch.equal(clean, x)
    noise = noisy - x
    sigma = 0.2 * float(x.max() - x.min())
    assert abs(float(noise.std()) / sigma - 1) < 0.05 and abs(float(noise.mean())) < 0.05 * sigma
    grads = per_sample_gradients(inner, noisy, 3)
    assert_close(got, grads.square().mean(0) if magnitude else grads.mean(0))


@pytest.mark.parametrize("magnitude", [False, True])
def test_smoothgrad_matches_captum_noise_tunnel_with_the_same_noise(model_and_input, magnitude, monkeypatch):
    inner, x = model_and_input
    model = Recording(inner)
    got = explain(model, x, "smoothgrad", samples=8, noise=0.1, magnitude=magnitude).attribution
    noise = model.seen[0] - x
    sigma = 0.1 * float(x.max() - x.min())

    def same_noise(mean, std, *args, **kwargs):  # Captum draws torch.normal(0, stdev_expanded)
        assert std.shape == noise.shape and torch.allclose(std, torch.full_like(std, sigma))
        return noise.clone()

    monkeypatch.setattr(torch, "normal", same_noise)
    tunnel = captum.NoiseTunnel(captum.Saliency(inner))
    expected, layout_noise = captum_batched(lambda layout: tunnel.attribute(
        x.contiguous(memory_format=layout), nt_type="smoothgrad_sq" if magnitude else "smoothgrad",
        nt_samples=8, stdevs=sigma, target=3, abs=False))
    assert_close(got, expected, noise=layout_noise)


def test_smoothgrad_seed_makes_it_reproducible():
    model, x = TinyCNN("nn.ReLU").eval(), example_input()
    a = explain(model, x, "smoothgrad", samples=6, seed=1).attribution
    b = explain(model, x, "smoothgrad", samples=6, seed=1).attribution
    c = explain(model, x, "smoothgrad", samples=6, seed=2).attribution
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- integrated gradients: completeness --------------------------------------------------------

def completeness_error(model, x, baseline, **params):
    attribution = explain(model, x, "integrated_gradients", target=3, baseline=baseline, **params).attribution
    with torch.no_grad():
        base = torch.zeros_like(x) if baseline == "zeros" else baseline
        expected = float(model(x)[0, 3] - model(base)[0, 3])
    return abs(float(attribution.sum()) - expected) / abs(expected)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_completeness_on_a_smooth_model_is_exact(rule):
    """Softplus/tanh: a smooth path integral, so 32 points are enough, Gauss–Legendre far more so."""
    model, x = TinyCNN(F.softplus).eval(), example_input()
    error = completeness_error(model, x, "zeros", steps=32, rule=rule)
    assert error < (1e-5 if rule == "gausslegendre" else 1e-3)
    model = TinyCNN(torch.tanh).eval()
    assert completeness_error(model, x, torch.full_like(x, 0.5), steps=32, rule=rule) < 1e-3


def test_completeness_on_a_relu_model_converges_with_steps():
    """A ReLU net's gradient jumps along the path, so every rule converges only as the grid
    gets fine enough to resolve the jumps; with enough steps the sum meets y(x) − y(baseline)."""
    model, x = TinyCNN("nn.ReLU(inplace)").eval(), example_input()
    errors = [completeness_error(model, x, "zeros", steps=steps, rule="riemann_trapezoid")
              for steps in (4, 64, 1024)]
    assert errors[2] < 1e-3 and errors[2] < errors[1] < errors[0]
    assert completeness_error(model, x, "zeros", steps=512, rule="gausslegendre") < 1e-3


def test_ig_on_a_linear_model_is_exact_with_one_step():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5)).eval()
    x = example_input()
    attribution = explain(model, x, "integrated_gradients", steps=1, rule="riemann_middle").attribution
    expected = x[0] * model[1].weight[3].view(3, 16, 16)
    assert_close(attribution, expected.detach())


# -- targets, chunking, progress ---------------------------------------------------------------

class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.rows = inner, 0, 0

    def forward(self, x):
        self.calls += 1
        self.rows += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("method", ["gradient", "saliency", "input_x_gradient", "guided_backprop",
                                    "deconvnet"])
def test_one_forward_for_single_pass_methods(method):
    """The top-1 class and the score come from the gradient pass itself: no extra clean forward."""
    model = Counting(TinyCNN("nn.ReLU").eval())
    x = example_input()
    result = nbx.Explainer(model).explain(x, method)
    assert model.calls == 1
    with torch.no_grad():
        logits = model.inner(x)[0]
    assert result.target == int(logits.argmax())
    assert result.score == pytest.approx(float(logits.max()), rel=1e-5)


@pytest.mark.parametrize("method", nbx.methods("gradient") + nbx.methods("backprop"))
def test_default_target_is_top1(method):
    model, x = TinyCNN("nn.ReLU").eval(), example_input()
    explainer = nbx.Explainer(model)
    top = int(model(x)[0].argmax())
    default = explainer.explain(x, method)
    assert default.target == top
    torch.testing.assert_close(default.attribution, explainer.explain(x, method, target=top).attribution)


def run_in_context(model, x, method, batch_elements, target=3, **params):
    spec = nbx.method_info(method)
    ctx = Context(model=model, x=x, requested_target=target, grad_batch_elements=batch_elements)
    with preserved(model):
        return spec.fn(ctx, **spec.bind(params))


@pytest.mark.parametrize(("method", "params"), [("smoothgrad", {"samples": 10}),
                                                ("integrated_gradients", {"steps": 10})])
def test_chunking_does_not_change_the_result(method, params):
    model, x = TinyCNN("nn.ReLU").eval(), example_input()
    whole = run_in_context(model, x, method, batch_elements=10**9, **params)
    chunked = run_in_context(model, x, method, batch_elements=3 * x[0].numel(), **params)
    assert_close(chunked, whole)


def test_progress_is_reported_per_chunk_and_stop_is_honoured():
    model, x = TinyCNN("nn.ReLU").eval(), example_input()
    fractions = []
    spec = nbx.method_info("smoothgrad")
    ctx = Context(model=model, x=x, requested_target=3, grad_batch_elements=4 * x[0].numel(),
                  progress=lambda fraction, partial: fractions.append(fraction))
    with preserved(model):
        spec.fn(ctx, **spec.bind({"samples": 10}))
    assert fractions == pytest.approx([0.4, 0.8, 1.0])

    ctx = Context(model=model, x=x, requested_target=3, grad_batch_elements=4 * x[0].numel(),
                  should_stop=lambda: len(fractions) > 3, progress=lambda f, p: fractions.append(f))
    with preserved(model), pytest.raises(Cancelled):
        spec.fn(ctx, **spec.bind({"samples": 10}))


def test_saliency_is_abs_of_gradient_and_input_x_gradient_is_product():
    model, x = TinyCNN("F.relu").eval(), example_input()
    grad = explain(model, x, "gradient").attribution
    assert torch.equal(explain(model, x, "saliency").attribution, grad.abs())
    assert_close(explain(model, x, "input_x_gradient").attribution, x[0] * grad)


def test_results_are_pixel_maps():
    model, x = TinyCNN("nn.ReLU").eval(), example_input()
    for method in nbx.methods("gradient") + nbx.methods("backprop"):
        result = explain(model, x, method)
        assert result.attribution.shape == x.shape[1:] and result.attribution.dtype == torch.float32
        assert result.map.shape == x.shape[-2:] and 0 <= result.map.min() <= result.map.max() <= 1
        assert result.layer is None


@pytest.mark.parametrize(("rule", "forwards"), [("riemann_trapezoid", 1), ("riemann_right", 1),
                                                ("gausslegendre", 2), ("riemann_middle", 2)])
def test_ig_takes_the_score_from_the_path_when_it_ends_at_x(rule, forwards):
    """Where the path has a point at α = 1 (trapezoid, right), that point is x itself: its logits
    give the top-1 class and the score, so no separate forward of x is needed."""
    model = Counting(TinyCNN("nn.ReLU").eval())
    x = example_input()
    result = nbx.Explainer(model).explain(x, "integrated_gradients", steps=6, rule=rule)
    assert model.calls == forwards and model.rows == 6 + forwards - 1
    with torch.no_grad():
        logits = model.inner(x)[0]
    assert result.target == int(logits.argmax())
    assert result.score == pytest.approx(float(logits.max()), rel=1e-5)
    ig = captum.IntegratedGradients(model.inner)
    expected = ig.attribute(x, target=result.target, n_steps=6, method=rule)
    if rule == "riemann_trapezoid":
        expected = expected * 6 / 5
    assert_close(result.attribution, expected[0])
