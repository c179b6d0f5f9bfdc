"""The Explorer in real front-ends: JupyterLab and Notebook 7 (everything), Voilà (the canvas).

Each test opens a notebook showing ``nbx.Explorer`` on the embedded model and checks, against the
kernel's own state: the canvas pixels (picture + heatmap), the layer slider and the class picker
(both the pixels and ``explorer.layer``/``target``/``explanation`` change), painting with the
brush (``explorer.mask`` and the prediction panel change), and that the console stays clean.
Input→repaint latencies (the canvas's 'rendered' reports) are printed and saved for
benchmarks/bench_widget.py. NBX_SCREENSHOT=1 saves docs/explorer.png from the JupyterLab run.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from .conftest import ROOT
from .harness import (
    KernelProbe,
    Stopwatch,
    assert_close_pixels,
    canvas_pixels,
    client_point,
    expected_composite,
    explorer_output,
    wait_canvas,
)

pytestmark = pytest.mark.browser
# Kernel-side: what the canvas was told to show, for the expected pixels.
STATE_HELPER = """
import base64 as _b64, json as _json
import numpy as _np
def _nbx_state(c=None):
    c = c or explorer.canvas
    e = explorer.explanation
    return _json.dumps({
        "image": _b64.b64encode(c.image).decode(), "shape": list(c.image_shape),
        "heat": _b64.b64encode(c.heatmap).decode(), "heat_shape": list(c.heatmap_shape),
        "signed": c.signed, "cmap": c.cmap, "opacity": c.opacity, "scale": list(c.scale),
        "unit": c.unit, "caption": c.caption,
        "mask": _b64.b64encode(c.mask_u8.tobytes()).decode(),
        "layer": explorer.layer, "target": explorer.target, "status": explorer.status,
        "e_layer": None if e is None else e.layer, "e_target": None if e is None else e.target,
    })
"""
RENDERED_LISTENER = """() => {
  window.__nbxRendered = window.__nbxRendered || [];
  if (!window.__nbxListening) {
    window.__nbxListening = true;
    document.addEventListener('nbx-rendered', (e) => window.__nbxRendered.push(e.detail.latency_ms));
  }
}"""
LATENCIES: dict[str, list[float]] = {}


@pytest.fixture(scope="module", autouse=True)
def save_latencies():
    yield
    values = [v for front in LATENCIES.values() for v in front]
    if not values:
        return
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "browser_latency.json").write_text(json.dumps({
        "what": "browser input event (slider drag, class pick, brush) -> canvas repaint of the new heatmap",
        "input_to_repaint_ms": [round(v, 1) for v in values],
        "by_frontend": {k: [round(v, 1) for v in vs] for k, vs in LATENCIES.items()},
        "median_ms": round(statistics.median(values), 1),
    }, indent=1))


def kernel_state(probe: KernelProbe) -> dict:
    state = json.loads(probe.run("explorer.wait(60); print(_nbx_state())").strip().splitlines()[-1])
    shape = state["shape"]
    state["rgb"] = np.frombuffer(base64.b64decode(state["image"]), np.uint8).reshape(*shape, 4)[..., :3]
    heat = base64.b64decode(state["heat"])
    state["heatmap"] = np.frombuffer(heat, "<f4").reshape(state["heat_shape"]) if heat else None
    state["mask_u8"] = np.frombuffer(base64.b64decode(state["mask"]), np.uint8).reshape(shape)
    return state


def expected(state: dict) -> np.ndarray:
    cmap = state["cmap"] if state["cmap"] != "auto" else ("bwr" if state["signed"] else "jet")
    return expected_composite(state["rgb"], state["heatmap"], cmap, state["opacity"], state["mask_u8"],
                              scale=state["scale"], signed=state["signed"])


def shows(page, canvas, probe, label: str, timeout: float = 20) -> tuple[dict, np.ndarray]:
    """Wait until the canvas shows the kernel's current state; (state, pixels)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        state = kernel_state(probe)
        pixels = canvas_pixels(canvas)
        try:
            assert_close_pixels(pixels, expected(state), label)
            return state, pixels
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.wait_for_timeout(100)


def widget_with_label(scope, kind: str, label: str):
    """The ipywidgets control of class ``widget-<kind>`` (in ``scope``) whose description is ``label``."""
    return scope.locator(f".widget-{kind}").filter(has=scope.page.locator(f"label:text-is('{label}')")).first


def rendered(page) -> list[float]:
    return page.evaluate("() => window.__nbxRendered.splice(0)")


def run_explorer(frontend, screenshot: Path | None = None) -> None:
    page, probe, app = frontend.page, frontend.probe, frontend.app
    clock = Stopwatch(f"explorer in {app}")
    page.evaluate(RENDERED_LISTENER)
    output = explorer_output(page)
    canvas = wait_canvas(output, 224)
    clock.lap("shown")
    latencies: list[float] = LATENCIES.setdefault(app, [])
    try:
        probe.run(STATE_HELPER)
        # 1. the picture with its heatmap, exactly as the kernel sent them
        first, first_pixels = shows(page, canvas, probe, "first map", timeout=60)
        assert first["heatmap"] is not None and first["e_layer"] == first["layer"]
        assert first["heatmap"].shape[0] < 224  # Grad-CAM travels at its own resolution
        clock.lap("first map")

        # 2. the layer slider: drag its handle to the left
        rendered(page)
        slider = widget_with_label(output, "hslider", "layer")
        slider.scroll_into_view_if_needed()
        handle = slider.locator(".noUi-handle").first
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 - 90, box["y"] + box["height"] / 2, steps=6)
        page.mouse.up()
        probe.wait_for("explorer.layer", lambda layer: layer != first["layer"])
        moved, moved_pixels = shows(page, canvas, probe, "after the layer slider")
        assert moved["layer"] != first["layer"] and moved["e_layer"] == moved["layer"]
        assert np.abs(moved_pixels.astype(int) - first_pixels.astype(int)).max() > 20
        page.wait_for_timeout(50)
        latencies += rendered(page)
        clock.lap("layer slider")

        # 3. another class from the picker
        select = widget_with_label(output, "dropdown", "class").locator("select")
        select.scroll_into_view_if_needed()
        options = select.locator("option")
        assert options.count() >= 3, "the class picker lists the top-k classes"
        value = options.nth(2).get_attribute("value")
        select.select_option(value=value)
        picked = probe.wait_for("explorer.target", lambda t: t is not None)
        other, other_pixels = shows(page, canvas, probe, "after the class pick")
        assert other["e_target"] == picked and other["target"] == picked
        assert np.abs(other_pixels.astype(int) - moved_pixels.astype(int)).max() > 20
        page.wait_for_timeout(50)
        latencies += rendered(page)
        clock.lap("class pick")

        # 4. the brush: the mask reaches explorer.mask and the predictions follow
        panel_before = probe.value("explorer.predictions_panel.value")
        output.locator(".widget-toggle-buttons button").filter(has_text="brush").first.click()
        probe.wait_for("explorer.mode", lambda m: m == "brush")
        expect(canvas).to_have_attribute("data-mode", "brush")
        canvas.scroll_into_view_if_needed()
        page.mouse.move(*client_point(canvas, 30, 80))  # a band over both eyes
        page.mouse.down()
        for x, y in [(110, 84), (200, 78)]:
            page.mouse.move(*client_point(canvas, x, y), steps=10)
        page.mouse.up()
        probe.wait_for("float(explorer.mask.sum())", lambda s: s > 2000)
        assert probe.value("bool((explorer.mask == explorer.canvas.mask).all())")
        probe.wait_for("explorer.wait(60) and explorer.predictions_panel.value", lambda v: v != panel_before)
        changed = probe.value("[round(p.prob, 4) for p in explorer.predictions] != "
                              "[round(p.prob, 4) for p in explorer.clean_predictions]")
        assert changed, "painting over the cat changes the predictions"
        shows(page, canvas, probe, "with the painted mask")  # the browser's mask is the kernel's
        assert output.locator(".widget-html").filter(has_text="%").count() >= 1  # the predictions
        clock.lap("brush")

        if screenshot is not None:
            output.scroll_into_view_if_needed()
            page.mouse.move(*client_point(canvas, 200, 40))  # hover: the readout and brush outline
            output.locator(".nbx-readout").filter(has_text="x 200, y 40").wait_for()
            page.wait_for_timeout(300)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            output.screenshot(path=str(screenshot))
            print(f"saved {screenshot}")
    finally:
        clock.report()
        if latencies:
            print(f"{app}: input→repaint ms: {[round(v) for v in latencies]} "
                  f"(median {statistics.median(latencies):.0f})")


def test_explorer_in_jupyterlab(lab):
    shot = ROOT / "docs" / "explorer.png" if os.environ.get("NBX_SCREENSHOT") == "1" else None
    run_explorer(lab, screenshot=shot)


def test_explorer_in_notebook7(notebook7):
    run_explorer(notebook7)


def test_explorer_canvas_in_voila(voila):
    page, probe = voila.page, voila.probe
    canvas = wait_canvas(explorer_output(page), 224, timeout=120_000)
    probe.run(STATE_HELPER)
    state, _ = shows(page, canvas, probe, "voila", timeout=60)
    assert state["heatmap"] is not None
