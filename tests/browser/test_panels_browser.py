"""The Explorer's panels and controls in JupyterLab, on the embedded EfficientNet-Lite0: what the
browser lays out and paints, checked against the kernel's state.

The feature-map panel at a deep layer (192 channels) keeps its own size and frames the channel
clicked in it; the filter panel shows a 1×1 convolution as a weight matrix; a long error stays
inside the picture column, shown once; the class search takes "Tabby" and never picks "tiger" on
the way to "tiger cat"; LRP's epsilon slider is logarithmic and its readout fits; the occlusion
progress row keeps the buttons whole. NBX_SCREENSHOT=1 keeps the screenshots in docs/screenshots/.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import ROOT
from .harness import canvas_pixels, explorer_output, wait_canvas

pytestmark = pytest.mark.browser
SHOTS = ROOT / "docs" / "screenshots"
DEEP = "blocks.5.3"  # 192 channels of 7×7; its block's first conv (conv_pw) is 1×1
FEATURES, FILTERS = "feature maps of this layer (click one)", "filters of this layer"
RESET = ("explorer.wait(60); explorer.panels.selected_index = None; "
         "explorer.set(mode='explain', mask=None, target=None, method='gradcam', layer={layer!r}, cmap=None)"
         "; explorer.wait(60)")


def panel_canvas(output, title: str):
    """The ipycanvas <canvas> of the accordion section ``title`` (once it is open)."""
    section = output.locator(".jupyter-widget-Collapse").filter(has_text=title).first
    return section.locator("canvas").first


def open_section(page, output, probe, title: str, index: int, layer: str) -> None:
    output.get_by_text(title, exact=True).first.click()
    probe.wait_for("explorer.panels.selected_index", lambda i: i == index)
    panel = "explorer.features" if index == 0 else "explorer.filters"
    probe.wait_for(f"explorer.wait(60) is not None and {panel}.picture is not None "
                   f"and {layer!r} in {panel}.note.value", timeout=90)


def box(locator) -> dict:
    return locator.evaluate("e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, "
                            "w: r.width, h: r.height, cw: e.width, ch: e.height}; }")


# Every visible control of the Explorer: its box, whether its text is cut off, and the output's edge.
CONTROLS_JS = """(out) => {
  const edge = out.getBoundingClientRect().right;
  const found = [];
  for (const e of out.querySelectorAll('button, select, input, .widget-readout, .widget-label')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || getComputedStyle(e).visibility === 'hidden') continue;
    found.push({text: (e.innerText || e.value || e.getAttribute('placeholder') || '').slice(0, 40),
                right: r.right, cut: e.scrollWidth > e.clientWidth + 1, tag: e.tagName});
  }
  return {edge, found};
}"""


def assert_controls_fit(output, label: str) -> None:
    """No control reaches past the output's right edge, and no button's or readout's text is cut."""
    got = output.evaluate(CONTROLS_JS)
    outside = [c["text"] for c in got["found"] if c["right"] > got["edge"] + 1]
    cut = [c["text"] for c in got["found"] if c["cut"] and c["tag"] != "SELECT"]
    assert not outside and not cut, f"{label}: past the edge {outside}, cut off {cut}"


def screenshot(page, output, name: str) -> None:
    """The whole Explorer output, in a page tall enough to hold it: kept in docs/screenshots/ with
    NBX_SCREENSHOT=1, else in NBX_ARTIFACTS (or a temporary folder), so a test run leaves the
    repository as it was."""
    folder = SHOTS if os.environ.get("NBX_SCREENSHOT") == "1" else Path(
        os.environ.get("NBX_ARTIFACTS") or tempfile.mkdtemp(prefix="nbx-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 2000})
    try:
        output.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        output.screenshot(path=str(folder / name))
    finally:
        page.set_viewport_size({"width": 1280, "height": 1000})


def test_feature_and_filter_panels_at_a_deep_layer(lab):
    page, probe = lab.page, lab.probe
    output = explorer_output(page)
    wait_canvas(output, 224)
    probe.run(RESET.format(layer=DEEP))
    main_before = box(output.locator("canvas.nbx-main").first)

    open_section(page, output, probe, FEATURES, 0, DEEP)
    canvas = panel_canvas(output, FEATURES)
    canvas.scroll_into_view_if_needed()
    page.wait_for_function("c => c.width > 300", arg=canvas.element_handle())
    shape = probe.value("list(explorer.features.picture.shape[:2])")
    got = box(canvas)
    assert (got["cw"], got["ch"]) == (shape[1], shape[0])
    assert abs(got["w"] - shape[1]) <= 1 and abs(got["h"] - shape[0]) <= 1  # not stretched (was ~1170 px)
    assert probe.value("explorer.features.note.value").count("64 of 192 channels") == 1
    assert box(output.locator("canvas.nbx-main").first)["w"] == main_before["w"]

    # click the fourth tile: its channel goes over the image and its frame is painted in the panel
    position = 3
    grid = "explorer.features.grid"
    top, left, tile = probe.value(f"[*{grid}.origin({position}), {grid}.tile_w]")
    page.mouse.click(got["x"] + (left + tile / 2) * got["w"] / got["cw"],
                     got["y"] + (top + tile / 2) * got["h"] / got["ch"])
    channel = probe.value(f"explorer.features.tiles[{position}]")
    probe.wait_for("explorer.wait(60) and explorer.params", lambda p: p.get("channel") == channel)
    assert probe.value("explorer.method") == "activations"
    probe.wait_for("explorer.explanation.params", lambda p: p.get("channel") == channel)
    highlight = probe.value("list(__import__('nbexplain').montage.HIGHLIGHT)")
    frame_y, frame_x = top - probe.value("__import__('nbexplain').montage.LABEL") - 2, left
    page.wait_for_function(
        "([c, x, y, r]) => c.getContext('2d').getImageData(x, y, 1, 1).data[0] === r",
        arg=[canvas.element_handle(), frame_x, frame_y, highlight[0]])
    pixels = canvas_pixels(canvas)
    assert list(pixels[frame_y, frame_x, :3]) == highlight
    assert_controls_fit(output, "activations")
    screenshot(page, output, "explorer-feature-panel.png")

    # a layer with fewer channels: the channel number does not follow it
    probe.run("explorer.layer = 'blocks.1.0'; explorer.wait(60)")
    assert probe.value("[explorer.params, explorer.status, explorer.error]") == [{"channel": -1}, "ready", ""]

    # the filters of the deep block: its first conv is 1×1, drawn as a weight matrix
    probe.run(RESET.format(layer=DEEP))
    open_section(page, output, probe, FILTERS, 1, "conv_pw")
    note = probe.value("explorer.filters.note.value")
    assert "1×1 convolution" in note and "input channels" in note, note
    canvas = panel_canvas(output, FILTERS)
    canvas.scroll_into_view_if_needed()
    shape = probe.value("list(explorer.filters.picture.shape[:2])")
    page.wait_for_function(f"c => c.width === {shape[1]}", arg=canvas.element_handle())
    got = box(canvas)
    assert abs(got["w"] - shape[1]) <= 1 and shape[1] <= 400
    pixels = canvas_pixels(canvas)
    assert len({tuple(p) for p in pixels[..., :3].reshape(-1, 3)}) > 100  # not identical gray squares
    screenshot(page, output, "explorer-filter-panel-1x1.png")
    probe.run("explorer.panels.selected_index = None")


def test_controls_search_sliders_progress_and_errors(lab):
    page, probe = lab.page, lab.probe
    output = explorer_output(page)
    wait_canvas(output, 224)
    probe.run(RESET.format(layer=DEEP))
    assert_controls_fit(output, "gradcam")

    # class search: any case; a label that begins a longer one is never picked on the way
    probe.run("_seen = []; explorer.observe(lambda c: _seen.append(c['new']), names='target')")
    search = output.get_by_placeholder("search all classes…")
    search.scroll_into_view_if_needed()
    search.click()
    search.press_sequentially("tiger cat", delay=40)
    probe.wait_for("explorer.target", lambda t: t == 282)  # tiger cat
    assert 292 not in probe.value("_seen"), "'tiger' (292) was picked on the way to 'tiger cat'"
    expect(search).to_have_value("tiger cat")  # the kernel's echo of the pick, before typing again
    search.fill("")
    search.press_sequentially("Tabby", delay=40)
    probe.wait_for("explorer.target", lambda t: t == 281)  # was: nothing (a case-sensitive match)
    expect(search).to_have_value("tabby")
    search.fill("")
    search.press_sequentially("tiger", delay=40)
    page.wait_for_timeout(300)
    assert probe.value("explorer.target") == 281
    expect_hint = output.get_by_text("Enter picks “tiger”", exact=False)
    expect_hint.first.wait_for()
    search.press("Enter")
    probe.wait_for("explorer.target", lambda t: t == 292)
    probe.run("explorer.target = None; explorer.wait(60)")

    # LRP's epsilon: a log slider; a few pixels of drag change it by a factor, not 1e-6 → 2.6
    probe.run("explorer.method = 'lrp'; explorer.wait(120)")
    slider = output.locator(".widget-hslider").filter(has=page.locator("label:text-is('epsilon')")).first
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout").first
    readout.wait_for()
    assert readout.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), readout.inner_text()
    before = probe.value("explorer.params['epsilon']")
    handle = slider.locator(".noUi-handle").first
    hb = handle.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(hb["x"] + hb["width"] / 2 + 4, hb["y"] + hb["height"] / 2, steps=4)
    page.mouse.up()
    after = probe.wait_for("explorer.params['epsilon']", lambda v: v != before)
    assert 1 < after / before < 3, (before, after)
    assert readout.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), readout.inner_text()
    assert_controls_fit(output, "lrp")
    screenshot(page, output, "explorer-lrp-log-sliders.png")
    probe.run("explorer.method = 'gradcam'; explorer.wait(60)")

    # the full occlusion map: its progress (with a percentage) in a row of its own, buttons whole
    output.get_by_role("button", name="full occlusion map").click()
    percent = output.locator(".widget-label").filter(has_text="%").first
    percent.wait_for(timeout=60_000)
    assert_controls_fit(output, "occlusion running")
    screenshot(page, output, "explorer-occlusion-progress.png")
    output.get_by_role("button", name="stop").click()
    probe.wait_for("explorer.wait(60).status", lambda s: s in ("stopped", "ready"))

    # a long error: shown once, on the picture, and the columns keep their place
    side_x = box(output.get_by_role("button", name="full occlusion map"))["x"]
    probe.run("explorer.from_control('target', 'y' * 300)")
    overlay = output.locator(".nbx-error").first
    overlay.wait_for()
    shown = output.locator(":scope *:visible").filter(has_text="y" * 50)
    innermost = shown.evaluate_all("es => es.filter(e => ![...e.children].some(c => c.innerText"
                                   " && c.innerText.includes('y'.repeat(50)))).length")
    assert innermost == 1, f"the error is shown {innermost} times"
    stage = box(output.locator(".nbx-stage").first)
    error = box(overlay)
    assert error["x"] >= stage["x"] - 1 and error["x"] + error["w"] <= stage["x"] + stage["w"] + 1
    assert abs(box(output.get_by_role("button", name="full occlusion map"))["x"] - side_x) <= 1
    assert_controls_fit(output, "error")
    screenshot(page, output, "explorer-error.png")
    probe.run("explorer.controls.opacity.value = 0.55")  # a control's next good value clears it
    probe.wait_for("explorer.error", lambda e: e == "")
    probe.run("explorer.opacity = 0.5; " + RESET.format(layer=DEEP))
