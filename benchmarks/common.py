"""Timing helpers shared by the benchmarks: fixed threads, warm-up, interleaved repetitions,
medians, markdown tables.

Interleaving matters on a shared machine: timing A ten times and then B ten times lets a burst
of load from elsewhere land on one of them only; alternating A, B, A, B spreads it over both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up, 3 repetitions")
    parser.add_argument("--repeat", type=int, default=None, help="timed repetitions (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up calls (default 2, quick 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: min(4, CPU count))")
    return parser


def settings(args: argparse.Namespace) -> tuple[int, int, int]:
    """(repeat, warmup, threads) from the parsed arguments, with threads applied to torch."""
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    threads = args.threads if args.threads is not None else min(4, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return repeat, warmup, threads


def timed(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds taken by one call of ``fn`` (CUDA work included) on ``clock`` (wall time, or
    ``time.process_time``: this process's CPU time, steadier on a loaded machine)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = clock()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return clock() - start


def best_of(contenders: Mapping[str, Callable[[], object]], repeats: int, *, warm: bool = True,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Best time (s) of each contender over ``repeats`` interleaved rounds, after one untimed
    call of each when ``warm``."""
    if warm:
        for fn in contenders.values():
            fn()
    times = {name: float("inf") for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name] = min(times[name], timed(fn, clock))
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def forward_backward(explainer, x: torch.Tensor, target: int) -> Callable[[], object]:
    """One forward and a backward to the input (what one gradient map costs), model guarded."""
    from nbexplain.engine.guard import preserved

    def run():
        with preserved(explainer.model):
            xx = x.detach().clone().requires_grad_(True)
            return torch.autograd.grad(explainer.model(xx)[0, target], xx)

    return run


def median_ms(fn: Callable[[], object], repeat: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeat`` calls after ``warmup`` calls."""
    return interleaved({"fn": fn}, repeat, warmup)["fn"]


def interleaved(
    fns: Mapping[str, Callable[[], object]], repeat: int = 10, warmup: int = 2
) -> dict[str, float]:
    """Median milliseconds of each function, the calls alternating round by round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            samples[name].append(timed(fn) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(headers[i]), *(len(row[i]) for row in cells)) for i in range(len(headers))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([line, rule, *body])


def machine() -> str:
    """One line describing where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")
