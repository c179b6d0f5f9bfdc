"""Grad-CAM at every layer of a CNN: one pass (ours) against the alternatives, CPU, 224×224.

Compares, per model (torchvision ResNet-50 with random weights, the embedded EfficientNet-Lite0):

* one forward + backward to the input (what a single gradient map costs) — ours should be
  within 1.5× of it while giving a map at every layer of ``Explainer.layers()``;
* pytorch-grad-cam's ``GradCAM`` called once per layer (its usual use) — ours ≥ 5× faster;
* torchcam's ``GradCAM`` given the whole list of layers (one pass too) — ours no slower;
* a ``LayerSession`` answering a new target from its kept forward (what a class switch costs).

Times are the best of the repeats, the contenders interleaved so a load spike on a shared
machine hits them alike. Prints a markdown table.

Usage: python benchmarks/bench_layers.py [--quick] [--threads N] [--clock wall|process]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

import torch
import torchvision
from common import best_of, forward_backward, ms

import nbexplain as nbx
from nbexplain.engine.guard import preserved
from nbexplain.engine.hooks import find_module
from nbexplain.engine.layerwise import layer_attributions, layer_method


def ours(explainer: nbx.Explainer, x: torch.Tensor, target: int, layers: list[str]) -> Callable[[], object]:
    return lambda: explainer.explain_layers(x, "gradcam", target=target, layers=layers)


def ours_raw(explainer: nbx.Explainer, x: torch.Tensor, target: int, layers: list[str]) -> Callable:
    """The maps at layer resolution only: no upsampling, normalization or Explanation objects."""
    spec, bound = layer_method("gradcam", {})

    def run():
        ctx = explainer.context(x, target)
        with preserved(explainer.model):
            return layer_attributions(spec, ctx, layers, bound)

    return run


def session_switch(explainer: nbx.Explainer, x: torch.Tensor, layers: list[str]) -> Callable[[], object]:
    """A new target each call (the session's caches never hit)."""
    session = explainer.layer_session(x, layers, cache=0)
    targets = iter(range(10**6))
    return lambda: session.explain("gradcam", next(targets))


def pytorch_grad_cam(model, x: torch.Tensor, target: int, layers: list[str]) -> Callable[[], object]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run():
        maps = []
        for name in layers:
            with GradCAM(model=model, target_layers=[find_module(model, name)]) as cam:
                maps.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))
        return maps

    return run


def torchcam(model, x: torch.Tensor, target: int, layers: list[str]) -> Callable[[], object]:
    from torchcam.methods import GradCAM

    def run():
        with GradCAM(model, layers) as extractor:
            scores = model(x)
            return extractor(class_idx=target, scores=scores)

    return run


def models() -> list[tuple[str, nbx.Explainer]]:
    torch.manual_seed(0)
    resnet = nbx.Explainer(torchvision.models.resnet50().eval())
    lite0 = nbx.Explainer.pretrained(device="cpu")
    return [("ResNet-50 (random weights)", resnet), ("EfficientNet-Lite0", lite0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round; pytorch-grad-cam timed on a "
                        "sample of layers and scaled to all of them")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="'process': this process's CPU time — steadier on a shared machine (use "
                        "with --threads 1, since it adds up the threads)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "process" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 5

    explainers = models()
    x = explainers[1][1].prepare(nbx.samples.load("cat"))  # the embedded model's 224×224 input
    rows = []
    for title, explainer in explainers:
        layers = explainer.layers()
        target = int(explainer.logits(x).argmax())
        sampled = layers[:: max(1, len(layers) // 6)] if args.quick else layers
        times = best_of(
            {
                "input": forward_backward(explainer, x, target),
                "ours": ours(explainer, x, target, layers),
                "raw": ours_raw(explainer, x, target, layers),
                "session": session_switch(explainer, x, layers),
                "torchcam": torchcam(explainer.model, x, target, layers),
            },
            repeats,
            clock=clock,
        )
        pgc = best_of({"pgc": pytorch_grad_cam(explainer.model, x, target, sampled)}, max(1, repeats // 2),
                      clock=clock)
        times["pgc"] = pgc["pgc"] * len(layers) / len(sampled)
        rows.append((title, len(layers), times, len(sampled) < len(layers)))

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, input 1×3×224×224, "
          f"{'quick: 1 round' if args.quick else f'best of {repeats}'}, {args.clock} time\n")
    print("| model | layers | fwd+bwd to input | ours: every layer | ratio (≤ 1.5×) | ours, maps only "
          "| pytorch-grad-cam, per layer | ours faster by (≥ 5×) | torchcam, all layers "
          "| ours / torchcam (≤ 1×) | new target, kept pass |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    missed = []
    for title, count, t, estimated in rows:
        ratio, speedup, versus = t["ours"] / t["input"], t["pgc"] / t["ours"], t["ours"] / t["torchcam"]
        est = " (est.)" if estimated else ""
        print(f"| {title} | {count} | {ms(t['input'])} | {ms(t['ours'])} | {ratio:.2f}× | {ms(t['raw'])} "
              f"| {ms(t['pgc'])}{est} | {speedup:.1f}× | {ms(t['torchcam'])} | {versus:.2f}× "
              f"| {ms(t['session'])} |")
        missed += [f"{title}: {what}" for what, ok in
                   (("≤ 1.5× input gradient", ratio <= 1.5), ("≥ 5× pytorch-grad-cam", speedup >= 5),
                    ("no slower than torchcam", versus <= 1.05)) if not ok]
    print()
    print("targets met" if not missed else "missed: " + "; ".join(missed))
    return 0



if __name__ == "__main__":
    sys.exit(main())
