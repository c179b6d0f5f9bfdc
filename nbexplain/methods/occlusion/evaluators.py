"""Logits of the input with windows replaced by the baseline: plain batched forwards (dense),
recomputing only each window's reach (incremental, exact), or whichever measures faster (auto).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ...engine.context import Context
from ...engine.layout import in_layout
from ...engine.outputs import select_logits
from .runner import IncrementalRunner
from .windows import Window

ENGINES = ("auto", "dense", "incremental")
TRIAL_CHUNKS = 4  # "auto" times both engines only when at least this many full chunks remain
DENSE_TRIAL = 8  # windows the dense engine is timed on, on the CPU (see FasterEvaluator)


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
    """Only the window's reach in each feature map is recomputed (exact); see ``runner``."""

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
