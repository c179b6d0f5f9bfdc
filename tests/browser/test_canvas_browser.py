"""HeatmapCanvas alone in a real browser: pixels, colour bar and caption, hover readout (raw
values), signed maps and the gray spotlight, brush, patch, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from nbexplain import render

from .harness import (
    Stopwatch,
    canvas_output,
    canvas_pixels,
    client_point,
    expected_composite,
    scale_positions,
    upsample_bilinear,
    wait_canvas,
    wait_pixels,
)
from .notebooks import HEAT, SIGNED_CODE, SIGNED_SCALE, H, W, picture, signed_map

pytestmark = pytest.mark.browser


def readout_shows(page, output, prefix: str) -> str:
    readout = output.locator(".nbx-readout").first
    page.wait_for_function("([el, p]) => el.textContent.startsWith(p)",
                           arg=[readout.element_handle(), prefix])
    return readout.text_content()


def wait_mode(page, canvas, mode: str) -> None:
    from playwright.sync_api import expect

    expect(canvas).to_have_attribute("data-mode", mode)


def test_canvas_in_jupyterlab(lab):
    page, probe = lab.page, lab.probe
    clock = Stopwatch("canvas in JupyterLab")
    output = canvas_output(page)
    canvas = wait_canvas(output, W)
    clock.lap("painted")

    # 1. the picture and the upsampled, coloured heatmap, composited at opacity 0.5
    wait_pixels(canvas, expected_composite(picture(), HEAT), "first paint")
    box = canvas.bounding_box()
    assert 440 <= box["width"] <= 456, box  # shown at display_width (448 px), scaled
    clock.lap("pixels")

    # 2. hover readout: coordinates and the upsampled value under the cursor
    page.mouse.move(*client_point(canvas, 30, 20))
    value = upsample_bilinear(HEAT, H, W)[20, 30]
    assert readout_shows(page, output, "x 30, y 20") == f"x 30, y 20 · {value:.4g}"
    # the colour bar (jet, the map's default scale 0..1) under the picture; no caption was given
    assert_legend(output, "jet", ("0", "0.5", "1"))
    assert not output.locator(".nbx-caption").first.is_visible()
    clock.lap("hover")

    # 3. opacity and colormap are applied in the browser
    probe.run("canvas.opacity = 1.0; canvas.cmap = 'viridis'")
    wait_pixels(canvas, expected_composite(picture(), HEAT, "viridis", 1.0), "opacity")
    probe.run("canvas.opacity = 0.5; canvas.cmap = 'auto'")
    clock.lap("opacity")

    # 4. brush: paint a stroke, then erase part of it with the right button
    probe.run("canvas.mode = 'brush'; finals = []; canvas.on_mask(lambda m, final: finals.append(final))")
    wait_mode(page, canvas, "brush")
    page.mouse.move(*client_point(canvas, 10, 10))
    page.mouse.down()
    page.mouse.move(*client_point(canvas, 40, 30), steps=12)
    page.mouse.move(*client_point(canvas, 80, 15), steps=12)
    page.mouse.up()
    probe.wait_for("finals.count(True)", lambda n: n == 1)
    painted = probe.value("int(canvas.mask_u8.sum() // 255)")
    assert painted > 100
    mask = np.array(probe.value("canvas.mask_u8.tolist()"), np.uint8)
    assert mask[10, 10] == 255 and mask[15, 80] == 255 and mask[50, 50] == 0
    # the browser's own mask (visible as the tint) is the kernel's, pixel for pixel
    wait_pixels(canvas, expected_composite(picture(), HEAT, mask_u8=mask), "brush")

    page.mouse.move(*client_point(canvas, 40, 30))
    page.mouse.down(button="right")
    page.mouse.move(*client_point(canvas, 45, 30), steps=3)
    page.mouse.up(button="right")
    probe.wait_for("finals.count(True)", lambda n: n == 2)
    assert probe.value("int(canvas.mask_u8.sum() // 255)") < painted
    mask = np.array(probe.value("canvas.mask_u8.tolist()"), np.uint8)
    assert mask[30, 42] == 0
    wait_pixels(canvas, expected_composite(picture(), HEAT, mask_u8=mask), "erase")
    assert page.locator(".lm-Menu").count() == 0  # no JupyterLab context menu over the canvas
    clock.lap("brush")

    # 5. clearing from Python reaches the browser
    probe.run("canvas.clear_mask()")
    wait_pixels(canvas, expected_composite(picture(), HEAT), "cleared")
    clock.lap("clear")

    # 6. patch mode: the square follows the cursor, coalesced to at most one message per frame
    probe.run("canvas.mode = 'patch'; canvas.brush_size = 10; patches = []\n"
              "def on_patch(m):\n"
              "    patches.append(None if m is None else [*canvas.patch, int(m.sum())])\n"
              "canvas.on_patch(on_patch)")
    wait_mode(page, canvas, "patch")
    moves = 0
    for x, y in [(20, 20), (50, 40), (70, 30)]:
        page.mouse.move(*client_point(canvas, x, y), steps=5)
        moves += 5
    patches = probe.wait_for("patches", lambda p: p and p[-1] and p[-1][:2] == [70, 30])
    assert patches[-1] == [70, 30, 10, 100]
    assert len(patches) <= moves
    overlay = output.locator("canvas.nbx-overlay").first
    assert canvas_pixels(overlay)[..., 3].max() > 0  # the occluder is drawn over the picture
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] + 80)  # leave
    probe.wait_for("patches[-1]", lambda p: p is None)
    clock.lap("patch")

    # 7. busy indicator and error overlay (dismissed with its button, which clears Python's error)
    probe.run("canvas.busy = True; canvas.error = 'ValueError: boom'")
    output.locator(".nbx-busy.nbx-on").wait_for()
    output.locator(".nbx-error.nbx-on").wait_for()
    assert "boom" in output.locator(".nbx-error").first.text_content()
    output.locator(".nbx-error button").first.click()
    probe.wait_for("canvas.error", lambda e: e == "")
    probe.run("canvas.busy = False")
    output.locator(".nbx-busy:not(.nbx-on)").wait_for(state="attached")
    clock.lap("overlays")

    # 8. a click in explain mode is a 'pick'; an input followed by a new heatmap reports a latency
    probe.run("canvas.mode = 'explain'; picks = []; canvas.on_pick(lambda x, y: picks.append([x, y]))")
    wait_mode(page, canvas, "explain")
    page.mouse.click(*client_point(canvas, 5, 6))
    assert probe.wait_for("picks") == [[5, 6]]
    probe.run("canvas.set_heatmap(heat[::-1].copy())")
    latency = probe.wait_for("canvas.last_latency_ms", lambda v: v is not None)
    assert 0 <= latency < 10_000
    wait_pixels(canvas, expected_composite(picture(), HEAT[::-1]), "new heatmap")
    probe.run("canvas.set_heatmap(heat)")
    clock.lap("latency")

    # 9. raw values on a signed scale: magnitude-weighted, the photo itself where the map is zero,
    # the raw value (also beyond the scale's end) in the readout, the caption and colour bar
    probe.run(SIGNED_CODE)
    signed = signed_map()
    pixels = wait_pixels(canvas, expected_composite(picture(), signed, "bwr", 0.5, scale=SIGNED_SCALE,
                                                    signed=True), "signed")
    zero = np.abs(scale_positions(signed, H, W, SIGNED_SCALE, True) - 0.5) < 1e-9
    assert zero[:, 40:56].all()
    np.testing.assert_array_equal(pixels[zero][:, :3], picture()[zero])  # no white wash at zero
    end = render.lut("bwr")[255].astype(int)  # the scale's end shows its colour-bar colour
    assert np.abs(pixels[10, 31, :3].astype(int) - end).max() <= 1
    page.mouse.move(*client_point(canvas, 90, 40))
    assert readout_shows(page, output, "x 90, y 40") == "x 90, y 40 · -3 logit share"
    page.mouse.move(*client_point(canvas, 10, 5))
    assert readout_shows(page, output, "x 10, y 5") == f"x 10, y 5 · +{signed[5, 10]:.4g} logit share"
    caption = output.locator(".nbx-caption").first
    assert caption.is_visible() and caption.locator("b").text_content() == "tabby (class 281)"
    assert caption.text_content() == "tabby (class 281) · integrated_gradients"
    assert_legend(output, "bwr", ("-2", "0", "2"), "logit share · signed: zero shows the photo")

    # 10. gray is a spotlight: the photo dimmed where the map is low, kept where it is high
    probe.run("canvas.cmap = 'gray'")
    pixels = wait_pixels(canvas, expected_composite(picture(), signed, "gray", 0.5, scale=SIGNED_SCALE,
                                                    signed=True), "spotlight")
    np.testing.assert_array_equal(pixels[10, 31, :3], picture()[10, 31])  # the top: the photo itself
    assert_legend(output, "gray", ("-2", "0", "2"))
    probe.run("canvas.cmap = 'auto'; canvas.set_heatmap(heat)")
    wait_pixels(canvas, expected_composite(picture(), HEAT), "back")
    clock.lap("scale")
    clock.report()


def assert_legend(output, cmap: str, ticks: tuple[str, str, str], unit: str | None = None) -> None:
    """The colour bar shows ``cmap``'s 256 colours and is labelled ``ticks`` (low, middle, high)."""
    legend = output.locator(".nbx-legend").first
    assert legend.is_visible()
    bar = legend.locator("canvas.nbx-colorbar")
    output.page.wait_for_function("([el, c]) => el.dataset.cmap === c", arg=[bar.element_handle(), cmap])
    colours = canvas_pixels(bar)[0, :, :3]
    np.testing.assert_array_equal(colours, render.lut(cmap))
    assert bar.bounding_box()["width"] > 400  # as wide as the picture
    shown = tuple(legend.locator(f".nbx-{part}").text_content() for part in ("low", "mid", "high"))
    assert shown == ticks
    if unit is not None:
        assert legend.locator(".nbx-unit").text_content() == unit


def test_canvas_in_voila(voila):
    page = voila.page
    output = canvas_output(page)
    canvas = wait_canvas(output, W)
    wait_pixels(canvas, expected_composite(picture(), HEAT), "voila")
    page.mouse.move(*client_point(canvas, 30, 20))
    readout_shows(page, output, "x 30, y 20")
