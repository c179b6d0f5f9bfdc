"""How fast the Explorer answers a move, as ratios to one pass of the model (CPU, embedded model).

Driven through the Explorer's programmatic state (``explorer.layer = …; explorer.wait()``), so
each time covers everything the kernel does for that move: validation, the cache, the worker
thread, the engine, encoding the map and setting the canvas's traits (no browser attached).
The reference passes run on the explorer's worker thread too (see ``on_worker``).

* layer-slider step with a warm cache ≤ 0.2× one forward (the all-layer pass already ran);
* class change (Grad-CAM, a class not seen before) ≤ 1.5× one forward+backward;
* brush update (a stroke segment: rasterized, then top-5 under the new mask) ≤ 1.3× one forward;
  the same with fill "zeros" for comparison (the default fill, "blur", blurs the image each time).

Medians over the repeats. With a results file from the browser test
(``benchmarks/results/browser_latency.json``, or ``--browser FILE``), its input→repaint time is
printed too. Prints a markdown table, a ✗ where a budget is missed (``--strict``: then exit 1).

Usage: python benchmarks/bench_widget.py [--quick] [--strict] [--threads N] [--browser FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import forward_backward

import nbexplain as nbx
from nbexplain.engine.guard import preserved

BROWSER_RESULTS = Path(__file__).parent / "results" / "browser_latency.json"


def interleaved_medians(steps: dict[str, Callable[[int], object]], repeats: int) -> dict[str, float]:
    """Median wall time (ms) of each ``step(i)``, the steps interleaved round by round (so a load
    spike on a shared machine hits them alike), after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(-1, repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            own = step(i)  # a step that sets something up first times itself
            if i >= 0:
                times[name].append(own if own is not None else 1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def on_worker(explorer, fn: Callable[[], object]) -> Callable[[int], object]:
    """``fn`` run on the explorer's worker thread, where the moves compute (a torch op is slower
    on a thread other than the last one that ran torch: each thread has its own OpenMP team, and
    the idle team spins for a while after its last op)."""
    def run(_):
        explorer.scheduler.submit("panel", lambda job: fn())
        explorer.wait()

    return run


def forward(ex: nbx.Explainer, x: torch.Tensor) -> Callable[[], object]:
    def run():
        with preserved(ex.model), torch.no_grad():
            return ex.model(x)

    return run


def browser_latency(path: Path) -> str | None:
    """The browser test's input→repaint summary, if it left a results file."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    values = data.get("input_to_repaint_ms") or data.get("latencies_ms")
    if isinstance(values, list) and values:
        return f"median {statistics.median(values):.0f} ms over {len(values)} moves ({path.name})"
    if "median_ms" in data:
        return f"median {data['median_ms']:.0f} ms ({path.name})"
    return f"{path.name}: {json.dumps(data)[:200]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke run)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--browser", type=Path, default=BROWSER_RESULTS, help="browser test results file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 15

    ex = nbx.Explainer.pretrained(device="cpu")
    cat = nbx.samples.load("cat")
    x = ex.prepare(cat)
    top = ex.predict(x, topk=1)[0].index
    explorer = nbx.Explorer(ex, cat, method="gradcam", mode="brush", brush_size=12).wait()
    layers = ex.layers()

    def layer_step(i):
        explorer.layer = layers[i % len(layers)]
        explorer.wait()

    targets = iter(range(1000))  # every class change is one not computed before

    def class_change(_):
        explorer.target = next(targets)
        explorer.wait()

    segments = iter(range(10**6))

    def brush(_):
        y = 20 + next(segments) % 180  # a new segment each time, so every mask is new
        explorer.canvas._handle_custom_msg(
            {"type": "stroke", "points": [[20, y], [200, y]], "size": 12, "erase": False, "final": False}, []
        )
        explorer.wait()

    def brush_zeros(i):
        explorer.baseline = "zeros"
        explorer.wait()
        start = time.perf_counter()
        brush(i)
        elapsed = 1000 * (time.perf_counter() - start)
        explorer.baseline = "blur"
        explorer.wait()
        return elapsed

    ms = interleaved_medians({
        "forward": on_worker(explorer, forward(ex, x)),
        "forward+backward": on_worker(explorer, forward_backward(ex, x, top)),
        "layer": layer_step, "class": class_change, "brush": brush, "brush zeros": brush_zeros,
    }, repeats)
    one_forward, one_pass = ms["forward"], ms["forward+backward"]
    rows = [
        ("layer-slider step, warm cache", ms["layer"], "forward", 0.2),
        ("class change (Grad-CAM, new class)", ms["class"], "forward+backward", 1.5),
        ("brush update (top-5 under the mask)", ms["brush"], "forward", 1.3),
        ("brush update, fill 'zeros' (no blur)", ms["brush zeros"], "forward", None),
    ]
    calls = dict(explorer.engine.calls)
    explorer.close()

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; EfficientNet-Lite0 at 224×224; {len(layers)} layers; "
          f"median of {repeats}\n")
    print(f"one forward: {one_forward:.1f} ms; one forward+backward: {one_pass:.1f} ms\n")
    print("| move | median | ratio | budget |")
    print("|---|---:|---:|---:|")
    failed = []
    for name, value, unit, budget in rows:
        ratio = value / ms[unit]
        mark = "" if budget is None or ratio <= budget else " ✗"
        if mark:
            failed.append(name)
        limit = "(for comparison)" if budget is None else f"≤ {budget}×{mark}"
        print(f"| {name} | {value:.1f} ms | {ratio:.2f}× {unit} | {limit} |")
    print(f"\nengine calls: {calls}")
    latency = browser_latency(args.browser)
    print(f"browser input→repaint: {latency or f'no results file ({args.browser}); run the browser test'}")
    if failed:
        print(f"over budget: {failed}")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
