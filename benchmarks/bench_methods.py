"""Gradient-family methods against Captum, on CPU at 224×224, as multiples of one forward pass.

For each model (the embedded EfficientNet-Lite0; torchvision ResNet-50 with random weights) and
each method, ours (``Explainer.explain``, the user-facing call: map and display picture included)
and the Captum counterpart run interleaved on the same input and target; the table gives the
median of the repetitions, each relative to one plain forward pass (no_grad, eval, batch 1).

Usage: python benchmarks/bench_methods.py [--quick] [--threads N] [--repeat N] [--models ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

import torch
from common import add_common_arguments, interleaved, machine, markdown_table, median_ms, settings

SMOOTHGRAD_SAMPLES = 25
IG_STEPS = 32
NOISE = 0.15  # ours: fraction of the input's value range; Captum gets the same absolute std


def load_models(names: list[str]):
    """name -> (model in eval mode, (1, 3, 224, 224) input)."""
    import nbexplain as nbx

    models = {}
    if "efficientnet_lite0" in names:
        explainer = nbx.Explainer.pretrained("efficientnet_lite0", device="cpu")
        models["efficientnet_lite0"] = (explainer.model, explainer.prepare(nbx.samples.load("cat")))
    if "resnet50" in names:
        from torchvision.models import resnet50

        torch.manual_seed(0)
        x = models["efficientnet_lite0"][1] if models else torch.randn(1, 3, 224, 224)
        models["resnet50"] = (resnet50().eval(), x)
    return models


def method_pairs(model: torch.nn.Module, x: torch.Tensor, target: int) -> dict[str, tuple[Callable, ...]]:
    """method -> (ours, Captum's), both computing the same attribution."""
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        NoiseTunnel,
        Saliency,
    )

    import nbexplain as nbx

    explainer = nbx.Explainer(model)
    sigma = NOISE * float(x.max() - x.min())

    def ours(method: str, **params):
        return lambda: explainer.explain(x, method, target=target, **params)

    return {
        "gradient": (ours("gradient"), lambda: Saliency(model).attribute(x, target=target, abs=False)),
        "saliency": (ours("saliency"), lambda: Saliency(model).attribute(x, target=target)),
        "input_x_gradient": (ours("input_x_gradient"),
                             lambda: InputXGradient(model).attribute(x, target=target)),
        f"smoothgrad ({SMOOTHGRAD_SAMPLES})": (
            ours("smoothgrad", samples=SMOOTHGRAD_SAMPLES, noise=NOISE),
            lambda: NoiseTunnel(Saliency(model)).attribute(
                x, nt_type="smoothgrad", nt_samples=SMOOTHGRAD_SAMPLES, stdevs=sigma, target=target,
                abs=False),
        ),
        f"integrated_gradients ({IG_STEPS})": (
            ours("integrated_gradients", steps=IG_STEPS),
            lambda: IntegratedGradients(model).attribute(
                x, target=target, n_steps=IG_STEPS, internal_batch_size=None),
        ),
        "guided_backprop": (ours("guided_backprop"),
                            lambda: GuidedBackprop(model).attribute(x, target=target)),
        "deconvnet": (ours("deconvnet"), lambda: Deconvolution(model).attribute(x, target=target)),
    }


def bench_model(name: str, model: torch.nn.Module, x: torch.Tensor, repeat: int, warmup: int,
                only: list[str] | None) -> str:
    with torch.no_grad():
        target = int(model(x)[0].argmax())

    def forward():
        with torch.no_grad():
            model(x)

    forward_ms = median_ms(forward, repeat, warmup)
    rows = []
    for method, (ours, theirs) in method_pairs(model, x, target).items():
        if only and not any(method.startswith(o) for o in only):
            continue
        times = interleaved({"ours": ours, "captum": theirs}, repeat, warmup)
        a, b = times["ours"], times["captum"]
        rows.append([method, f"{a:.0f}", f"{a / forward_ms:.1f}", f"{b:.0f}", f"{b / forward_ms:.1f}",
                     f"{b / a:.2f}×"])
        print(f"  {name} {method}: ours {a:.0f} ms, captum {b:.0f} ms", file=sys.stderr, flush=True)
    headers = ["method", "ours ms", "×forward", "captum ms", "×forward", "speedup"]
    return f"### {name} (forward: {forward_ms:.1f} ms)\n\n" + markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = add_common_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"],
                        choices=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--methods", nargs="+", default=None, help="only methods starting with these names")
    args = parser.parse_args(argv)
    repeat, warmup, _ = settings(args)
    warnings.filterwarnings("ignore", module="captum")
    warnings.filterwarnings("ignore", message=".*required_grads has been set automatically.*")
    models = load_models(args.models)
    print(f"Gradient methods vs Captum, CPU, 224×224, batch 1; median of {repeat} after {warmup} warm-up; "
          f"{machine()}\n")
    for name in args.models:
        model, x = models[name]
        print(bench_model(name, model, x, repeat, warmup, args.methods) + "\n", flush=True)
    print("speedup = captum ms / ours ms. Ours is the full Explainer.explain call (map and picture "
          "included); Captum gets the same target, sample/step count and noise level.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
