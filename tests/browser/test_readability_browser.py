"""Readable maps in the Explorer (JupyterLab): every map carries its caption (the class first)
and a colour bar labelled in raw values, the hover readout shows the raw attribution under the
cursor (the kernel's ``Explanation.values`` there), and a signed map leaves the photo visible
where it is zero. Screenshots of Grad-CAM, integrated gradients, occlusion and LRP are saved for
looking at (NBX_SCREENSHOT=1 keeps them in docs/screenshots/).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nbexplain import render

from .conftest import ROOT
from .harness import client_point, explorer_output, scale_positions, upsample_bilinear, wait_canvas
from .test_explorer_browser import STATE_HELPER, shows

pytestmark = pytest.mark.browser
SHOTS = ROOT / "docs" / "screenshots"
METHODS = [  # (method, params, hover pixel)
    ("gradcam", {}, (150, 60)),
    ("integrated_gradients", {"steps": 16}, None),  # None: the strongest value, beyond the scale
    ("occlusion", {}, (160, 90)),
    ("lrp", {}, (70, 85)),
]


def readout_value(output, x: int, y: int) -> tuple[float, str]:
    """The number and unit the hover readout shows at input pixel (x, y)."""
    readout = output.locator(".nbx-readout").first
    prefix = f"x {x}, y {y} · "
    output.page.wait_for_function("([el, p]) => el.textContent.startsWith(p)",
                                  arg=[readout.element_handle(), prefix])
    text = readout.text_content()[len(prefix):]
    match = re.fullmatch(r"([+-]?[\d.]+(?:e[+-]\d+)?) (.+)", text)
    assert match, f"readout {text!r}"
    return float(match.group(1)), match.group(2)


def check_legend(output, state: dict) -> None:
    """Caption and colour bar say what the kernel's map is: class, method, layer, unit, range."""
    caption = output.locator(".nbx-caption").first
    assert caption.is_visible() and caption.text_content() == state["caption"]
    label = state["label"]
    assert caption.locator("b").text_content().startswith(f"{label} (class {state['e_target']}")
    assert f" · {state['method']}" in state["caption"]
    assert (f"layer {state['e_layer']}" in state["caption"]) == bool(state["e_layer"])
    legend = output.locator(".nbx-legend").first
    low, high = state["scale"]
    ticks = [legend.locator(f".nbx-{part}").text_content() for part in ("low", "mid", "high")]
    assert ticks == [format(low, ".3g"), format((low + high) / 2, ".3g"), format(high, ".3g")]
    unit = legend.locator(".nbx-unit").text_content()
    assert unit.startswith(state["unit"]) and ("signed" in unit) == state["signed"]


def test_explorer_maps_are_readable_in_jupyterlab(lab, tmp_path):
    page, probe = lab.page, lab.probe
    output = explorer_output(page)
    canvas = wait_canvas(output, 224)
    probe.run(STATE_HELPER + "\n"
              "def _nbx_readable():\n"
              "    e = explorer.explanation\n"
              "    return _json.dumps({'values': e.values.values.tolist(), 'label': e.label,\n"
              "                        'method': e.method, 'unit': e.values.unit})\n"
              "explorer.set(mode='explain', target=None, opacity=0.5, cmap=None)\n"
              "explorer.mask = None\n"
              "_layers = explainer.layers()\n"
              "explorer.layer = 'blocks.5.0' if 'blocks.5.0' in _layers else _layers[-1]")
    keep = os.environ.get("NBX_SCREENSHOT") == "1"
    folder = SHOTS if keep else Path(os.environ.get("NBX_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for method, params, hover in METHODS:
        probe.run(f"explorer.set(method={method!r}, params={params!r})")
        state, pixels = shows(page, canvas, probe, method, timeout=90)
        readable = probe.run("explorer.wait(60); print(_nbx_readable())").strip().splitlines()[-1]
        state.update(json.loads(readable))
        assert state["method"] == method and state["status"] == "ready"
        check_legend(output, state)

        # the readout: the raw value under the cursor, as the kernel's values say, with its unit
        values = np.asarray(state["values"], np.float32)
        shown = upsample_bilinear(values, 224, 224)
        if hover is None:  # the strongest value: beyond the scale's end, yet read as it is
            y, x = np.unravel_index(np.abs(shown).argmax(), shown.shape)
            assert abs(shown[y, x]) > max(np.abs(state["scale"]))
        else:
            x, y = hover
        page.mouse.move(*client_point(canvas, int(x), int(y)))
        value, unit = readout_value(output, int(x), int(y))
        assert unit == state["unit"] and value == pytest.approx(float(shown[y, x]), rel=1e-3, abs=1e-12)

        if state["signed"]:  # weighted by magnitude: near zero the photo shows, not a white wash
            t = scale_positions(state["heatmap"], 224, 224, state["scale"], True)
            weight = np.minimum(1, np.sqrt(np.abs(2 * t - 1)))  # at opacity 0.5
            weak = (weight < 0.3) & (state["mask_u8"] == 0)
            assert weak.sum() > 200, f"{method}: {weak.sum()} pixels near zero"
            off = np.abs(pixels[..., :3].astype(int) - state["rgb"].astype(int)).max(2)
            assert (off[weak] <= 1 + 255 * weight[weak]).all(), f"{method}: washed out where ~0"
            top = np.unravel_index(np.abs(t - 0.5).argmax(), t.shape)  # at a scale's end (99.5th pct)
            assert t[top] in (0, 1)
            end = render.lut("bwr")[int(t[top] * 255)].astype(int)
            assert np.abs(pixels[top][:3].astype(int) - end).max() <= 1  # the colour bar's colour, opaque

        shot = folder / f"explorer-map-{method}.png"  # the map, its caption, colour bar, readout
        page.mouse.move(*client_point(canvas, int(x), int(y)))
        figure = output.locator(".nbx-canvas").first
        figure.scroll_into_view_if_needed()
        page.wait_for_timeout(200)
        figure.screenshot(path=str(shot))
        Image.open(shot).convert("RGB").save(shot, optimize=True)
        print(f"saved {shot}")
