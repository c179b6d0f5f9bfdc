"""Occlusion (Zeiler & Fergus 2014), computed coarse-to-fine, and the brush: ``occlude``.

Occlusion slides a ``patch`` × ``patch`` window over the image with step ``stride``, replaces
the window by a baseline and records how much the target logit drops. A pixel's attribution is
the mean drop over every window covering it. Windows follow Captum's ``Occlusion``: they start
at 0, stride, 2·stride, … until the image is covered, so when the stride does not divide the
image evenly the last window is cut off at the border.

Speed: every perturbed image runs under ``torch.inference_mode`` in chunks sized from the input
(``Context.chunks``), and where the model traces with ``torch.fx`` only the part of each feature
map the window can reach is recomputed from the cached unoccluded activations
(``engine/incremental.py``, Krypton-style; exact). Windows are evaluated on a coarse lattice
first, so the first progress report already carries a full (estimated) map that then refines.
"""

from __future__ import annotations

import math
import numbers
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..checks import check_count
from ..engine.context import Context
from ..engine.guard import preserved
from ..engine.incremental import IncrementalRunner
from ..engine.layout import in_layout
from ..engine.outputs import select_logits
from ..engine.registry import Param, register
from ..engine.targets import top_predictions
from .gradient import _blur

BASELINES = ("zeros", "mean", "blur")
BASELINE = Param(
    "baseline", (float, str), "blur",
    "what replaces an occluded pixel: a number, 'zeros', 'mean' (the input's per-channel mean) "
    "or 'blur' (a strongly blurred copy of the input)",
    choices=BASELINES,
)
ENGINES = ("auto", "dense", "incremental")
TRIAL_CHUNKS = 4  # "auto" times both engines only when at least this many full chunks remain
DENSE_TRIAL = 8  # windows the dense engine is timed on, on the CPU (see FasterEvaluator)
Window = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive, clipped to the image)


# -- baselines -------------------------------------------------------------------------------
def check_baseline(baseline: Any, where: str) -> float | str:
    """``baseline`` validated: a finite number or one of ``BASELINES``."""
    value = BASELINE.validate(baseline, where)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: parameter 'baseline' must be finite, got {value!r}")
    return value


def baseline_image(x: torch.Tensor, baseline: float | str) -> torch.Tensor:
    """The ``(1, C, H, W)`` image an occluded pixel of ``x`` takes its value from."""
    if isinstance(baseline, numbers.Real):
        return torch.full_like(x, float(baseline))
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    if baseline == "blur":
        return _blur(x)
    raise ValueError(f"parameter 'baseline' must be a number or one of {list(BASELINES)}, got {baseline!r}")


# -- window geometry -------------------------------------------------------------------------
def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start of each window along one axis (Captum: ceil((size - patch) / stride) + 1 windows)."""
    return [i * stride for i in range(math.ceil((size - patch) / stride) + 1)]


def check_geometry(size: tuple[int, int], patch: int, stride: int, where: str = "occlusion") -> None:
    height, width = size
    if patch > height or patch > width:
        raise ValueError(
            f"{where}: parameter 'patch' ({patch}) must not exceed the image size "
            f"({height}×{width}); use a patch of at most {min(height, width)}"
        )
    if stride > patch and (patch < height or patch < width):
        raise ValueError(
            f"{where}: parameter 'stride' ({stride}) must not exceed 'patch' ({patch}), "
            "or some pixels would never be occluded"
        )


def coverage(size: int, patch: int, stride: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(size, windows)`` 0/1 matrix: is pixel ``y`` inside window ``i`` along this axis."""
    starts = torch.tensor(window_starts(size, patch, stride), device=device)
    pixels = torch.arange(size, device=device)[:, None]
    return ((pixels >= starts) & (pixels < starts + patch)).to(dtype)


def scores_to_map(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The ``(H, W)`` map of window ``scores`` (nh, nw): per pixel, the mean over covering windows.

    A window's mask is the outer product of a row and a column indicator, so the per-pixel sum
    is ``rows @ scores @ cols.T`` and the count ``rowcount ⊗ colcount``.
    """
    total = rows @ scores.to(rows.dtype) @ cols.T
    return total / (rows.sum(1)[:, None] * cols.sum(1)[None, :])


def progressive_order(nh: int, nw: int, first_points: int = 3) -> tuple[list[tuple[int, int]], int, list]:
    """Every window (i, j) once, coarse lattices first.

    Returns the order, how many windows the first (coarse) lattice has, and the lattices as
    ``(end, rows, cols)``: after the first ``end`` windows, lattice ``rows × cols`` is complete.
    """
    step = max(1, math.ceil((max(nh, nw) - 1) / max(1, first_points - 1)))
    order: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    lattices = []
    while True:
        rows = sorted(set(range(0, nh, step)) | {nh - 1})
        cols = sorted(set(range(0, nw, step)) | {nw - 1})
        for i in rows:
            for j in cols:
                if (i, j) not in seen:
                    seen.add((i, j))
                    order.append((i, j))
        lattices.append((len(order), rows, cols))
        if step == 1:
            break
        step = max(1, step // 2)
    return order, lattices[0][0], lattices


def _nearest(indices: Sequence[int], count: int) -> torch.Tensor:
    """For each of ``range(count)``, the nearest entry of the sorted ``indices``."""
    grid = torch.tensor(indices, dtype=torch.float64)
    return torch.tensor(indices)[(torch.arange(count, dtype=torch.float64)[:, None] - grid).abs().argmin(1)]


def estimate_scores(scores: torch.Tensor, done: torch.Tensor, rows: Sequence[int], cols: Sequence[int]):
    """Window scores with the not-yet-computed ones taken from the nearest point of a complete
    lattice ``rows × cols`` (a coarse map that refines into the exact one)."""
    nh, nw = scores.shape
    filled = scores[_nearest(rows, nh)[:, None], _nearest(cols, nw)[None, :]]
    return torch.where(done, scores, filled)


# -- evaluators: logits of x with windows replaced by the baseline ---------------------------
class DenseEvaluator:
    """Whole perturbed images through the model, batched, channels-last where the model takes it."""

    def __init__(self, ctx: Context, base: torch.Tensor):
        self.ctx, self.base = ctx, base

    def clean_logits(self) -> torch.Tensor:
        return in_layout(self.ctx.model, self.ctx.x, self.ctx.logits)

    def __call__(self, windows: Sequence[Window]) -> torch.Tensor:
        x = self.ctx.x
        height, width = x.shape[-2:]
        w = torch.tensor(windows, device=x.device)
        ys, xs = torch.arange(height, device=x.device), torch.arange(width, device=x.device)
        inside_y = (ys >= w[:, 0:1]) & (ys < w[:, 1:2])
        inside_x = (xs >= w[:, 2:3]) & (xs < w[:, 3:4])
        mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]
        return in_layout(self.ctx.model, torch.where(mask, self.base, x), self.ctx.logits)


class IncrementalEvaluator:
    """Only the window's reach in each feature map is recomputed (exact); see ``incremental``."""

    def __init__(self, ctx: Context, base: torch.Tensor, runner: IncrementalRunner):
        self.ctx, self.base, self.runner = ctx, base, runner

    def clean_logits(self) -> torch.Tensor:
        return select_logits(self.runner.clean_output, self.ctx.output, 1)

    def __call__(self, windows: Sequence[Window]) -> torch.Tensor:
        output = self.runner.run(self.ctx.x, self.base, windows)
        return select_logits(output, self.ctx.output, len(windows))


class FasterEvaluator:
    """Incremental and dense are both exact, and which is faster depends on the model, the device
    and how busy its cores are (many small ops suffer most on a contended CPU). After the coarse
    chunk, one full chunk is timed with the incremental engine and then ``dense_trial`` windows
    with plain batched forwards; the faster computes the rest. On the CPU a few windows time the
    dense engine well (a forward's cost per image hardly depends on the batch there), and they
    are what the trial costs when dense loses: 8 windows of a 32-window chunk cut that waste
    on ResNet-50 from ~0.7 s to ~0.2 s."""

    def __init__(self, incremental: IncrementalEvaluator, dense: DenseEvaluator,
                 dense_trial: int | None = None):
        self.engines = {"incremental": incremental, "dense": dense}
        self.trials = ["incremental", "dense"]
        self.dense_trial = dense_trial
        self.seconds: dict[str, float] = {}
        self.calls = 0
        self.choice = "incremental"

    def clean_logits(self) -> torch.Tensor:
        return self.engines["incremental"].clean_logits()

    def __call__(self, windows: Sequence[Window]) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1 or not self.trials:  # the coarse chunk, or decided
            return self.engines[self.choice](windows)
        name = self.trials.pop(0)
        timed = windows if name != "dense" or self.dense_trial is None else windows[:self.dense_trial]
        logits = self._timed(name, timed)
        if not self.trials:
            self.choice = min(self.seconds, key=self.seconds.get)
        if len(timed) < len(windows):
            logits = torch.cat([logits, self.engines[self.choice](windows[len(timed):])])
        return logits

    def _timed(self, name: str, windows: Sequence[Window]) -> torch.Tensor:
        device = self.engines["dense"].ctx.x.device
        _sync(device)
        start = time.perf_counter()
        logits = self.engines[name](windows)
        _sync(device)
        self.seconds[name] = (time.perf_counter() - start) / len(windows)
        return logits


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_evaluator(ctx: Context, base: torch.Tensor, engine: str, chunks: int = 0):
    """The evaluator for ``engine``. ``"auto"``: the incremental one where the model traces;
    with ``chunks`` full chunks to run, enough to pay for a trial, the faster of the two by
    measurement (``FasterEvaluator``)."""
    if engine not in ENGINES:
        raise ValueError(f"occlusion: engine must be one of {list(ENGINES)}, got {engine!r}")
    dense = DenseEvaluator(ctx, base)
    if engine == "dense":
        return dense
    runner = IncrementalRunner.build(ctx.model, ctx.x)
    if runner is None:
        if engine == "incremental":
            raise ValueError("occlusion: engine='incremental' needs a model that torch.fx can trace")
        return dense
    incremental = IncrementalEvaluator(ctx, base, runner)
    if engine == "auto" and chunks >= TRIAL_CHUNKS and not single_thread_cpu(ctx.x.device):
        return FasterEvaluator(incremental, dense, DENSE_TRIAL if ctx.x.device.type == "cpu" else None)
    return incremental


def single_thread_cpu(device: torch.device) -> bool:
    """On one CPU thread the incremental engine measured 2-4× less work than dense batches
    (benchmarks/bench_occlusion.py), so no trial is spent there; threads and GPUs may differ."""
    return device.type == "cpu" and torch.get_num_threads() == 1


# -- the method ------------------------------------------------------------------------------
def occlusion_map(
    ctx: Context, patch: int, stride: int, baseline: float | str, engine: str = "auto"
) -> torch.Tensor:
    """The ``(C, H, W)`` occlusion attribution of ``ctx.x`` (same value in every channel)."""
    x = ctx.x
    height, width = x.shape[-2:]
    check_geometry((height, width), patch, stride)
    baseline = check_baseline(baseline, "occlusion")
    ctx.report(0.0, None)
    with torch.inference_mode():
        base = baseline_image(x, baseline)
        starts_y = window_starts(height, patch, stride)
        starts_x = window_starts(width, patch, stride)
        nh, nw = len(starts_y), len(starts_x)
        order, first, lattices = progressive_order(nh, nw)
        chunks = [slice(0, first)] + [
            slice(first + part.start, first + part.stop) for part in ctx.chunks(len(order) - first)
        ]
        evaluate = make_evaluator(ctx, base, engine, chunks=len(chunks) - 1)
        clean = evaluate.clean_logits()
        ctx.classes = clean.shape[1]  # lets ctx.target check a requested class
        ctx.observe_clean(clean[0])
        target = ctx.target
        reference = clean[0, target]
        rows = coverage(height, patch, stride, x.dtype, x.device)
        cols = coverage(width, patch, stride, x.dtype, x.device)
        scores = torch.zeros((nh, nw), dtype=x.dtype, device=x.device)
        done = torch.zeros((nh, nw), dtype=torch.bool, device=x.device)
        for part in chunks:
            if part.stop <= part.start:
                continue
            positions = order[part]
            windows = [
                (starts_y[i], min(starts_y[i] + patch, height), starts_x[j], min(starts_x[j] + patch, width))
                for i, j in positions
            ]
            logits = evaluate(windows)
            index = torch.tensor(positions, device=x.device)
            scores[index[:, 0], index[:, 1]] = (reference - logits[:, target]).to(scores.dtype)
            done[index[:, 0], index[:, 1]] = True
            if part.stop < len(order):
                complete = max((lat for lat in lattices if lat[0] <= part.stop), key=lambda lat: lat[0])
                partial = scores_to_map(estimate_scores(scores, done, complete[1], complete[2]), rows, cols)
                ctx.report(part.stop / len(order), partial.expand(x.shape[1], -1, -1).clone())
        attribution = scores_to_map(scores, rows, cols).expand(x.shape[1], -1, -1).clone()
    ctx.report(1.0, attribution)
    return attribution


@register(
    "occlusion", family="perturbation", space="pixel", signed=True,
    summary="Logit drop when a sliding window is replaced by a baseline (Zeiler & Fergus 2014); "
            "coarse map first, then refined.",
    params=(
        Param("patch", int, 32, "window side in pixels", range=(1, None)),
        Param("stride", int, 16, "step between windows in pixels (at most patch)", range=(1, None)),
        BASELINE,
    ),
)
def occlusion(ctx: Context, patch: int, stride: int, baseline: float | str) -> torch.Tensor:
    return occlusion_map(ctx, patch, stride, baseline)


# -- the brush -------------------------------------------------------------------------------
def check_mask(mask: Any, size: tuple[int, int]) -> torch.Tensor:
    """``mask`` as a float ``(H, W)`` CPU tensor of blend weights in [0, 1]."""
    if isinstance(mask, np.ndarray):
        if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.number)):
            raise TypeError(f"mask must be a bool or float array; got dtype {mask.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(mask))
    elif isinstance(mask, torch.Tensor):
        tensor = mask.detach()
        if tensor.is_complex():
            raise TypeError(f"mask must be a bool or float tensor; got dtype {tensor.dtype}")
    else:
        raise TypeError(
            "mask must be an (H, W) numpy array or torch tensor (bool, or float blend weights "
            f"in [0, 1]); got {type(mask).__name__}"
        )
    if tuple(tensor.shape) != tuple(size):
        raise ValueError(
            f"mask must have shape {tuple(size)} (the model input's H, W); got {tuple(tensor.shape)}"
        )
    tensor = tensor.to(torch.float32) if tensor.dtype != torch.float64 else tensor
    if torch.isnan(tensor).any():
        raise ValueError("mask contains NaN values; expected blend weights in [0, 1]")
    if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
        raise ValueError(
            f"mask values must be in [0, 1]; got [{float(tensor.min()):.3g}, {float(tensor.max()):.3g}]"
        )
    return tensor


_BASELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_baseline(owner: Any, x: torch.Tensor, baseline: float | str) -> torch.Tensor:
    """``baseline_image(x, baseline)``, remembered per ``owner`` for the last input: brush strokes
    on one image then cost one forward, not a blur plus a forward."""
    entry = _BASELINES.get(owner)
    if (entry is not None and entry[0] == baseline and entry[1].shape == x.shape
            and entry[1].dtype == x.dtype and entry[1].device == x.device and torch.equal(entry[1], x)):
        return entry[2]
    base = baseline_image(x, baseline)
    _BASELINES[owner] = (baseline, x.clone(), base)
    return base


def occlude(explainer, x, mask, baseline: float | str = "blur", topk: int = 5) -> list:
    """Predictions for ``x`` with the ``mask``ed pixels blended into ``baseline``: one forward."""
    check_count(topk, "topk")
    baseline = check_baseline(baseline, "occlude")
    batch = explainer.prepare(x)
    weight = check_mask(mask, tuple(batch.shape[-2:])).to(batch.device, batch.dtype)
    with preserved(explainer.model), torch.inference_mode():
        occluded = torch.lerp(batch, cached_baseline(explainer, batch, baseline), weight)
        logits = select_logits(explainer.model(occluded), explainer.output, 1)
    return top_predictions(logits[0].float().cpu(), explainer.labels, topk)
