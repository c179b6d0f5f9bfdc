"""A widget's lifetime: it stops when its views are gone, ``close()`` gives everything back, and a
process that ends while one computes exits cleanly.

The page's view count arrives as ipywidgets delivers it (``widget._handle_msg`` with an update
of ``_view_count``, which the front end keeps as it displays and removes views).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _instances

from nbexplain.engine import registry
from nbexplain.widgets.canvas import HeatmapCanvas
from nbexplain.widgets.compare import Compare
from nbexplain.widgets.explorer import Explorer
from nbexplain.widgets.view import show_explanation
from tests.models import example_input

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def slow(monkeypatch):
    """Method "slow": ten seconds of work that checks for a stop every 25 ms (as the engine's
    progressive methods do), holding the model's lock as every engine call does."""

    def run(ctx):
        for step in range(400):
            ctx.report(step / 400)
            time.sleep(0.025)
        return ctx.x[0].abs()

    spec = dataclasses.replace(registry.get("saliency"), name="slow", fn=run)
    monkeypatch.setitem(registry._REGISTRY, "slow", spec)
    return "slow"


def views(widget, count) -> None:
    """The page's view count of ``widget``, as ipywidgets' comm delivers it."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": {"_view_count": count},
                                             "buffer_paths": []}}, "buffers": []})


def shows(canvas, explanation) -> bool:
    """Whether ``canvas`` shows ``explanation``'s map (and nothing else)."""
    reference = HeatmapCanvas()
    show_explanation(reference, explanation)
    return canvas.heatmap == reference.heatmap and canvas.heatmap_shape == reference.heatmap_shape


def computing_started(widget, lane="explain", timeout=10.0):
    """The job of ``lane`` once the worker runs it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = widget.scheduler._running
        if job is not None and job.lane == lane:
            return job
        time.sleep(0.005)
    raise AssertionError(f"no {lane!r} job started within {timeout} s")


# -- views -------------------------------------------------------------------------------------
def test_an_explorer_whose_views_are_all_gone_stops_computing(ex, x, slow):
    explorer = Explorer(ex, x).wait(30)
    try:
        assert explorer.widget._view_count == 0  # the front end counts the views from here on
        shown = explorer.explanation
        views(explorer.widget, 1)  # displayed
        explorer.method = slow
        computing_started(explorer)
        assert explorer.status == "computing"
        views(explorer.widget, 0)  # its output cleared, or its cell run again
        explorer.wait(3)  # was: the whole ten seconds
        assert explorer.status == "stopped" and explorer.explanation is shown
        assert shows(explorer.canvas, shown)  # what is shown is what `explanation` holds
        views(explorer.widget, 1)  # displayed again: it computes what its state asks for
        assert explorer.status == "computing" and not explorer.scheduler.idle
    finally:
        explorer.close()


def test_the_first_display_does_not_restart_a_computation(ex, x, slow):
    explorer = Explorer(ex, x, method=slow)
    try:
        job = computing_started(explorer)
        views(explorer.widget, 1)
        views(explorer.widget, 2)  # a second view of the same output
        views(explorer.widget, 1)
        assert explorer.scheduler._running is job and not job.cancelled
    finally:
        explorer.close()


def test_running_the_cell_again_leaves_no_orphan_computing(ex, x, slow):
    old = Explorer(ex, x).wait(30)
    views(old.widget, 1)
    old.method = slow
    computing_started(old)
    views(old.widget, 0)  # the front end clears the cell's output as it runs again …
    started = time.perf_counter()
    new = Explorer(ex, x)  # … and the cell makes a new Explorer on the same model
    try:
        new.wait(5)  # was: behind the orphan's ten seconds
        assert new.status == "ready" and time.perf_counter() - started < 4
        assert old.status == "stopped" and old.scheduler.idle
    finally:
        new.close()
        old.close()


def test_compare_stops_when_its_views_are_gone(ex, x, slow):
    compare = Compare(ex, x, methods=["saliency", slow])
    try:
        views(compare.widget, 1)
        computing_started(compare, lane=slow)
        views(compare.widget, 0)
        compare.wait(3)
        assert compare.views[slow].status == "stopped"
        views(compare.widget, 1)
        assert compare.views[slow].status == "computing"  # asked for again
    finally:
        compare.close()


# -- close -------------------------------------------------------------------------------------
def tensor_bytes() -> int:
    """Bytes of every torch storage a live tensor holds (each storage once)."""
    seen, total = set(), 0
    with warnings.catch_warnings():  # isinstance on torch.distributed's deprecated proxies warns
        warnings.simplefilter("ignore")
        tensors = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def use_and_close(widget) -> None:
    """A short session: a few requests, the panels, the brush; then close."""
    if isinstance(widget, Explorer):
        widget.wait(30).set(method="saliency").wait(30)
        widget.set(method="smoothgrad", params={"samples": 2}).wait(30)
        widget.panels.selected_index = 0
        widget.set(mode="brush", mask=np.ones(widget.image_shape)).wait(30)
    else:
        widget.wait(30).set(target=3).wait(30)
    widget.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.parametrize("kind", ["explorer", "compare"])
def test_closing_fifty_gives_back_widgets_threads_objects_and_memory(ex, kind):
    x = example_input(shape=(3, 64, 64))[0]  # results of some size, so a leak shows in bytes

    def make():
        return Explorer(ex, x) if kind == "explorer" else Compare(ex, x, methods=["saliency", "gradcam"])

    use_and_close(make())  # the first one fills what stays for good (lazy imports, lru caches)
    gc.collect()
    widgets, threads, tensors = set(_instances), threading.active_count(), tensor_bytes()
    objects, rss = len(gc.get_objects()), rss_bytes()
    closed, refs = [], []
    for _ in range(50):
        widget = make()
        use_and_close(widget)
        closed.append(widget)  # closed, but still held (a notebook variable)
        refs.append(weakref.ref(widget))
    gc.collect()
    assert set(_instances) == widgets  # every ipywidget made (layouts, styles) left the registry
    assert threading.active_count() == threads
    held = tensor_bytes() - tensors
    assert held < 64 * 2**10, f"50 closed {kind}s still hold {held / 2**20:.2f} MB of tensors"
    assert all(w.status == "closed" and len(w.engine.explanations) == 0 for w in closed)
    del closed, widget
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []  # nothing keeps one alive
    grown = len(gc.get_objects()) - objects
    assert grown < 500, f"{grown} more objects after 50 {kind}s"
    assert rss_bytes() - rss < 64 * 2**20  # loose: the allocator keeps freed pages


# -- exiting -----------------------------------------------------------------------------------
def test_a_script_that_ends_while_a_widget_computes_exits_cleanly(tmp_path):
    script = tmp_path / "ends_while_computing.py"
    script.write_text(textwrap.dedent("""
        import time, torch
        from torch import nn
        import nbexplain as nbx
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                              nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()
        explorer = nbx.Explorer(nbx.Explainer(model), torch.rand(3, 96, 96), method="occlusion",
                                patch=4, stride=1)  # minutes of work
        time.sleep(1.5)
        print("still", explorer.status, flush=True)
    """))
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's nbexplain
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert "still computing" in result.stdout, result.stderr
    assert result.returncode == 0, result.stderr[-2000:]  # was 134: "terminate called without an …"
    assert "terminate called" not in result.stderr and elapsed < 60
