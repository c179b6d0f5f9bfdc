"""The Explorer on a small ViT in JupyterLab (issue 11): Grad-CAM at a block, attention rollout
picked in the method picker, a sub-layer from the "inside" control, then the layer slider over
the blocks with Grad-CAM. Each step is checked against the kernel (``explorer.layer``,
``explorer.explanation.method``) and the canvas's pixels. NBX_SCREENSHOT=1 keeps its screenshot in
docs/screenshots/explorer-vit.png.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from .conftest import ROOT
from .harness import explorer_output, wait_canvas
from .test_explorer_browser import STATE_HELPER, shows, widget_with_label

pytestmark = pytest.mark.browser
SHOT = ROOT / "docs" / "screenshots" / "explorer-vit.png"
BLOCKS = ["patch_embed", "blocks.0", "blocks.1"]  # ex.layers() of the 3-block ViT (its last block
# is read only through the class token)


def changed(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def pick(output, label: str, option: str) -> None:
    select = widget_with_label(output, "dropdown", label).locator("select")
    select.scroll_into_view_if_needed()
    select.select_option(label=option)


def test_explorer_on_a_vit_in_jupyterlab(lab_vit, tmp_path):
    page, probe = lab_vit.page, lab_vit.probe
    output = explorer_output(page)
    canvas = wait_canvas(output, 64)
    probe.run(STATE_HELPER)
    caption = output.locator(".nbx-caption").first

    # 1. Grad-CAM at the last block that reaches the logits, at the 4×4 patch grid
    first, first_pixels = shows(page, canvas, probe, "Grad-CAM at blocks.1", timeout=90)
    assert first["layer"] == first["e_layer"] == "blocks.1" and first["heat_shape"] == [4, 4]
    assert probe.value("list(explorer.controls.layer.options)") == BLOCKS
    assert probe.value("explorer.explainer.layers()") == BLOCKS
    assert "layer blocks.1" in caption.text_content() and "gradcam" in caption.text_content()

    # 2. attention rollout from the method picker: a pixel-space map at patch resolution
    pick(output, "method", "attention · rollout")
    probe.wait_for("explorer.method", lambda m: m == "rollout")
    rollout, rollout_pixels = shows(page, canvas, probe, "rollout")
    assert probe.value("explorer.explanation.method") == "rollout" and rollout["e_layer"] is None
    assert rollout["heat_shape"] == [4, 4]
    assert "rollout" in caption.text_content() and "layer blocks" not in caption.text_content()
    assert changed(rollout_pixels, first_pixels) > 20
    inside = widget_with_label(output, "dropdown", "inside")
    assert not inside.is_visible()  # rollout takes no layer

    # 3. Grad-CAM again, then a sub-layer of the block from the inside control
    pick(output, "method", "cam · gradcam")
    probe.wait_for("explorer.method", lambda m: m == "gradcam")
    again, _ = shows(page, canvas, probe, "Grad-CAM again")
    assert probe.value("explorer.explanation.method") == "gradcam" and again["e_layer"] == "blocks.1"
    assert inside.is_visible()
    pick(output, "inside", "attn")
    probe.wait_for("explorer.layer", lambda layer: layer == "blocks.1.attn")
    attn, attn_pixels = shows(page, canvas, probe, "Grad-CAM at blocks.1.attn")
    assert attn["e_layer"] == "blocks.1.attn" and attn["heat_shape"] == [4, 4]
    assert probe.value("explorer.controls.layer.value") == "blocks.1"  # the slider shows the block
    assert "layer blocks.1.attn" in caption.text_content()

    # 4. the layer slider, dragged to the left: back at block level, over the blocks
    slider = widget_with_label(output, "hslider", "layer")
    slider.scroll_into_view_if_needed()
    assert slider.locator(".widget-readout").text_content().strip() == "blocks.1"
    handle = slider.locator(".noUi-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 90, box["y"] + box["height"] / 2, steps=6)
    page.mouse.up()
    layer = probe.wait_for("explorer.layer", lambda layer: layer in BLOCKS[:2])
    moved, moved_pixels = shows(page, canvas, probe, f"Grad-CAM at {layer}")
    assert moved["e_layer"] == moved["layer"] == layer
    assert probe.value("explorer.explanation.method") == "gradcam"
    assert changed(moved_pixels, attn_pixels) > 20
    assert f"layer {layer}" in caption.text_content()
    assert probe.value("explorer.controls.inside.dropdown.value") == layer  # the whole block

    output.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    shot = SHOT if os.environ.get("NBX_SCREENSHOT") == "1" else tmp_path / SHOT.name  # the repo as it was
    shot.parent.mkdir(parents=True, exist_ok=True)
    output.screenshot(path=str(shot))
