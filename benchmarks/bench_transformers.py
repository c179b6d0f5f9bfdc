"""Grad-CAM at every block of ViT-B/16 and Swin-T against one forward+backward and against
pytorch-grad-cam layer by layer (with the reshape function its documentation gives).

Random weights (nothing downloaded; the zero-initialized ViT head drawn at random), 224×224,
CPU. Usage: python benchmarks/bench_transformers.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable

import torch
import torchvision
from common import best_of, forward_backward, ms

import nbexplain as nbx
from nbexplain.engine.grid import find_grid
from nbexplain.engine.hooks import find_module


def pytorch_grad_cam(explainer: nbx.Explainer, x: torch.Tensor, target: int,
                     layers: list[str]) -> Callable[[], object]:
    """pytorch-grad-cam, one extractor per layer, each with the reshape its docs give."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = explainer.model
    with torch.no_grad():
        outputs = {}
        handles = [find_module(model, n).register_forward_hook(
            lambda m, i, o, n=n: outputs.update({n: o})) for n in layers]
        try:
            model(x)
        finally:
            for handle in handles:
                handle.remove()
    grids = {n: find_grid(outputs[n].shape, x.shape[-2:], prefix=explainer.prefix_tokens) for n in layers}

    def reshape_for(grid):
        if grid.kind == "nchw":
            return None
        if grid.kind == "nhwc":
            return lambda t: t.permute(0, 3, 1, 2)
        h, w = grid.size
        def tokens(t):
            return t[:, grid.prefix:, :].reshape(t.size(0), h, w, t.size(2)).transpose(2, 3).transpose(1, 2)

        return tokens

    def run():
        maps = []
        for name in layers:
            with GradCAM(model=model, target_layers=[find_module(model, name)],
                         reshape_transform=reshape_for(grids[name])) as cam:
                maps.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))
        return maps

    return run


def models() -> list[tuple[str, nbx.Explainer]]:
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16().eval()
    with torch.no_grad():
        vit.heads.head.weight.normal_(0, 0.02)  # torchvision draws it as zeros: no gradient at all
    swin = torchvision.models.swin_t().eval()
    return [("ViT-B/16 (random weights)", nbx.Explainer(vit)),
            ("Swin-T (random weights)", nbx.Explainer(swin))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round, pytorch-grad-cam on 3 layers, scaled")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    rows = []
    for title, explainer in models():
        layers = explainer.layers()
        target = int(explainer.logits(x).argmax())
        sampled = layers[:: max(1, len(layers) // 3)] if args.quick else layers
        times = best_of({
            "input": forward_backward(explainer, x, target),
            "ours": lambda e=explainer, t=target, names=layers: e.explain_layers(x, "gradcam", t, names),
        }, repeats)
        pgc = best_of({"pgc": pytorch_grad_cam(explainer, x, target, sampled)}, 1)
        times["pgc"] = pgc["pgc"] * len(layers) / len(sampled)
        rows.append((title, len(layers), times, len(sampled) < len(layers)))
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, input 1×3×224×224, "
          f"{'quick: 1 round' if args.quick else f'best of {repeats}'} (pytorch-grad-cam: one round)\n")
    print("| model | layers | fwd+bwd to input | ours: Grad-CAM at every layer | ratio (≤ 1.5×) "
          "| pytorch-grad-cam, layer by layer | ours faster by |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    missed = []
    for title, count, t, estimated in rows:
        ratio, speedup = t["ours"] / t["input"], t["pgc"] / t["ours"]
        print(f"| {title} | {count} | {ms(t['input'])} | {ms(t['ours'])} | {ratio:.2f}× "
              f"| {ms(t['pgc'])}{' (est.)' if estimated else ''} | {speedup:.1f}× |")
        if ratio > 1.5:
            missed.append(f"{title}: ≤ 1.5× one forward+backward")
    print()
    print("targets met" if not missed else "missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
