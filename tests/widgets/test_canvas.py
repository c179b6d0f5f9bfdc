"""HeatmapCanvas without a browser: trait encoding, custom messages, callbacks, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from traitlets import TraitError

from nbexplain import render
from nbexplain.widgets.canvas import HeatmapCanvas, bresenham, disc, paint_stroke, square_bounds

ROOT = Path(__file__).resolve().parents[2]


def rgb(h=6, w=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_esm_is_the_shipped_bundle():
    canvas = HeatmapCanvas()
    source = (ROOT / "nbexplain" / "static" / "canvas.js").read_text()
    assert canvas._esm == source
    assert "export default { render }" in source


def test_image_travels_as_exact_rgba_bytes():
    picture = rgb()
    canvas = HeatmapCanvas(picture)
    assert canvas.image_shape == (6, 8)
    rgba = np.frombuffer(canvas.image, np.uint8).reshape(6, 8, 4)
    np.testing.assert_array_equal(rgba[..., :3], picture)
    assert (rgba[..., 3] == 255).all()
    canvas.set_image(np.full((6, 8, 3), 0.5, np.float32))  # floats in [0, 1]
    assert np.frombuffer(canvas.image, np.uint8)[0] == 128
    with pytest.raises(ValueError):
        canvas.set_image(np.zeros((4, 4, 2), np.uint8))


def test_pil_and_gray_images():
    from PIL import Image

    canvas = HeatmapCanvas()
    canvas.set_image(Image.fromarray(rgb()))
    assert canvas.image_shape == (6, 8)
    canvas.set_image(np.zeros((3, 5), np.uint8))
    assert canvas.image_shape == (3, 5)
    assert len(canvas.image) == 3 * 5 * 4


def test_heatmap_travels_as_float32_little_endian_at_its_own_resolution():
    canvas = HeatmapCanvas(rgb(224, 224))
    cam = np.linspace(0, 1, 49, dtype=np.float64).reshape(7, 7)
    cam[0, 0] = np.nan
    cam[0, 1] = 2.0
    canvas.set_heatmap(cam)
    assert canvas.heatmap_shape == (7, 7)
    assert len(canvas.heatmap) == 49 * 4
    values = np.frombuffer(canvas.heatmap, "<f4").reshape(7, 7)
    assert values[0, 0] == 0 and values[0, 1] == 1
    np.testing.assert_allclose(values.reshape(-1)[2:], cam.reshape(-1)[2:], atol=1e-7)
    assert canvas.signed is False
    canvas.set_heatmap(np.full((1, 7, 7), 0.5), signed=True)  # a leading batch axis is squeezed
    assert canvas.signed is True and canvas.heatmap_shape == (7, 7)
    canvas.set_heatmap(None)
    assert canvas.heatmap == b"" and canvas.heatmap_shape == (0, 0)
    with pytest.raises(ValueError):
        canvas.set_heatmap(np.zeros(5))


def test_torch_heatmap_is_accepted():
    torch = pytest.importorskip("torch")
    canvas = HeatmapCanvas(rgb())
    canvas.set_heatmap(torch.rand(3, 4))
    assert canvas.heatmap_shape == (3, 4)


def test_luts_come_from_render_and_cmap_is_checked():
    canvas = HeatmapCanvas()
    assert set(canvas.luts) == set(render.colormaps())
    assert canvas.luts["jet"] == render.lut("jet").reshape(-1).tolist()
    assert all(len(v) == 768 for v in canvas.luts.values())
    canvas.cmap = "viridis"
    with pytest.raises(TraitError, match="unknown cmap"):
        canvas.cmap = "nope"
    with pytest.raises(TraitError):
        canvas.mode = "draw"
    with pytest.raises(TraitError):
        canvas.opacity = 1.5


def test_strokes_paint_the_mask_and_call_back():
    canvas = HeatmapCanvas(rgb(20, 30), mode="brush")  # strokes are taken in brush mode only
    calls = []
    canvas.on_mask(lambda mask, final: calls.append((mask.copy(), final)))
    canvas._handle_custom_msg({"type": "stroke", "points": [[2, 3], [10, 3]], "size": 1,
                               "erase": False, "final": False}, [])
    assert len(calls) == 1 and calls[0][1] is False
    mask = canvas.mask
    assert mask.dtype == np.float32 and mask.shape == (20, 30)
    assert mask[3, 2:11].min() == 1.0 and mask[2, 5] == 1.0 and mask[5, 5] == 0.0
    version = canvas.mask_version
    canvas._handle_custom_msg({"type": "stroke", "points": [[10, 3]], "size": 1, "erase": False,
                               "final": True}, [])
    assert calls[-1][1] is True
    assert canvas.mask_version == version  # strokes never bump the version (the browser has them)
    np.testing.assert_array_equal(np.frombuffer(canvas.mask_bytes, np.uint8).reshape(20, 30),
                                  canvas.mask_u8)  # new views start from the painted mask
    canvas._handle_custom_msg({"type": "stroke", "points": [[5, 3]], "size": 0, "erase": True,
                               "final": True}, [])
    assert canvas.mask[3, 5] == 0.0 and canvas.mask[3, 6] == 1.0


def test_set_mask_and_clear_bump_the_version_and_send_bytes():
    canvas = HeatmapCanvas(rgb(4, 5))
    calls = []
    canvas.on_mask(lambda mask, final: calls.append(final))
    v0 = canvas.mask_version
    target = np.zeros((4, 5), bool)
    target[1:3, 2:4] = True
    canvas.set_mask(target)
    assert canvas.mask_version == v0 + 1
    np.testing.assert_array_equal(np.frombuffer(canvas.mask_bytes, np.uint8).reshape(4, 5), target * 255)
    np.testing.assert_array_equal(canvas.mask, target.astype(np.float32))
    canvas.set_mask(np.full((4, 5), 0.5))
    assert canvas.mask_u8[0, 0] == 128
    canvas.clear_mask()
    assert canvas.mask_version == v0 + 3 and canvas.mask.max() == 0
    assert calls == []  # programmatic changes do not call back
    with pytest.raises(ValueError):
        canvas.set_mask(np.zeros((3, 3)))


def test_new_image_size_clears_the_mask():
    canvas = HeatmapCanvas(rgb(4, 5))
    canvas.set_mask(np.ones((4, 5)))
    v = canvas.mask_version
    canvas.set_image(rgb(4, 5))  # same size: kept
    assert canvas.mask.sum() == 20 and canvas.mask_version == v
    canvas.set_image(rgb(6, 7))
    assert canvas.mask.shape == (6, 7) and canvas.mask.sum() == 0 and canvas.mask_version == v + 1


def test_patch_messages_give_a_square_mask_or_none():
    canvas = HeatmapCanvas(rgb(20, 20), mode="patch")  # patches are taken in patch mode only
    got = []
    canvas.on_patch(got.append)
    canvas._handle_custom_msg({"type": "patch", "x": 10, "y": 5, "size": 4}, [])
    assert canvas.patch == (10, 5, 4)
    square = got[-1]
    assert square.shape == (20, 20) and square.dtype == np.float32
    assert square.sum() == 16 and square[3:7, 8:12].min() == 1
    canvas._handle_custom_msg({"type": "patch", "x": 0, "y": 0, "size": 5}, [])
    assert got[-1].sum() == 9  # clipped at the corner
    canvas._handle_custom_msg({"type": "patch", "x": None}, [])
    assert got[-1] is None and canvas.patch is None


def test_pick_and_rendered_messages():
    canvas = HeatmapCanvas(rgb())
    picks, latencies = [], []
    canvas.on_pick(lambda x, y: picks.append((x, y)))
    canvas.on_rendered(latencies.append)
    canvas._handle_custom_msg({"type": "pick", "x": 3, "y": 4}, [])
    assert picks == [(3, 4)]
    canvas._handle_custom_msg({"type": "rendered", "t_event": 100.0, "t_paint": 142.5}, [])
    assert canvas.last_latency_ms == pytest.approx(42.5)
    assert latencies == [pytest.approx(42.5)] and list(canvas.latencies_ms) == [pytest.approx(42.5)]


def test_callbacks_can_be_removed_and_user_on_msg_still_runs():
    canvas = HeatmapCanvas(rgb())
    picks, raw = [], []

    def pick(x, y):
        picks.append((x, y))

    canvas.on_pick(pick)
    canvas.on_pick(pick)  # registered once
    canvas.on_msg(lambda widget, content, buffers: raw.append(content["type"]))
    canvas._handle_custom_msg({"type": "pick", "x": 1, "y": 1}, [])
    canvas.on_pick(pick, remove=True)
    canvas._handle_custom_msg({"type": "pick", "x": 2, "y": 2}, [])
    assert picks == [(1, 1)] and raw == ["pick", "pick"]


def test_callback_errors_are_shown_not_swallowed():
    canvas = HeatmapCanvas(rgb(), mode="brush")
    after = []

    def broken(mask, final):
        raise RuntimeError("model exploded")

    canvas.on_mask(broken)
    canvas.on_mask(lambda mask, final: after.append(final))
    canvas._handle_custom_msg({"type": "stroke", "points": [[1, 1]], "size": 1, "final": True}, [])
    assert canvas.error == "RuntimeError: model exploded"
    assert "Traceback" in canvas.errors[-1] and "model exploded" in canvas.errors[-1]
    assert after == [True]  # the other callbacks still ran
    canvas.clear_error()
    assert canvas.error == ""
    canvas.mode = "patch"
    canvas._handle_custom_msg({"type": "patch", "x": 1}, [])  # malformed: no y
    assert canvas.error.startswith("KeyError")


def test_unknown_messages_are_ignored():
    canvas = HeatmapCanvas(rgb())
    canvas._handle_custom_msg({"type": "hover", "x": 1, "y": 1}, [])
    canvas._handle_custom_msg("not a dict", [])
    assert canvas.error == ""


def test_rasterization_primitives():
    assert bresenham(0, 0, 5, 2) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2)]
    assert bresenham(2, 0, 0, 0) == [(2, 0), (1, 0), (0, 0)]
    assert disc(1).all() and disc(1).shape == (3, 3)
    assert disc(2).sum() == 21
    assert square_bounds(10, 10, 5, 100, 100) == (8, 8, 13, 13)
    assert square_bounds(200, 0, 4, 100, 100) is None
    m = np.zeros((3, 4), np.uint8)
    paint_stroke(m, [(0, 0)], 1, 255)
    np.testing.assert_array_equal(m, [[255, 255, 0, 0], [255, 255, 0, 0], [0, 0, 0, 0]])


STROKES = [
    {"type": "stroke", "points": [[3, 4], [40, 9], [60, 50]], "size": 5, "erase": False, "final": False},
    {"type": "stroke", "points": [[60, 50], [61, 52], [10, 70], [0, 79]], "size": 5, "erase": False,
     "final": True},
    {"type": "stroke", "points": [[79, 0]], "size": 9, "erase": False, "final": True},
    {"type": "stroke", "points": [[20, 20], [50, 30]], "size": 3, "erase": True, "final": True},
    {"type": "stroke", "points": [[5, 60], [6, 61], [7, 63], [30, 64]], "size": 0, "erase": False,
     "final": True},
    {"type": "stroke", "points": [[-3, 2], [90, 95]], "size": 2, "erase": False, "final": True},
]


def test_python_paints_the_same_mask_as_the_browser():
    """The front-end's rasterizer (js/src/lib/raster.js, run by node) and Python's agree exactly."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI to compare the JS and Python rasterizers")
        pytest.skip("node is not installed")
    width, height = 80, 90
    spec = json.dumps({"width": width, "height": height, "messages": STROKES})
    result = subprocess.run([node, str(ROOT / "js" / "tools" / "paint_mask.mjs")], input=spec,
                            capture_output=True, text=True, check=True, timeout=60)
    js_mask = np.array(json.loads(result.stdout), np.uint8).reshape(height, width)
    canvas = HeatmapCanvas(np.zeros((height, width, 3), np.uint8), mode="brush")
    for message in STROKES:
        canvas._handle_custom_msg(message, [])
    assert js_mask.sum() > 0
    np.testing.assert_array_equal(canvas.mask_u8, js_mask)


# -- raw values, their scale, and the browser's composite ----------------------------------------
def test_raw_values_travel_with_their_scale_unit_and_caption():
    from nbexplain.engine.maps import MapValues, signed_scale

    canvas = HeatmapCanvas(rgb(224, 224))
    raw = np.linspace(-2.5, 0.5, 49, dtype=np.float32).reshape(7, 7)
    given = MapValues(raw, -1.0, 1.0, signed=True, unit="logit share")
    canvas.set_heatmap(given, caption="tabby (class 281)")
    values = np.frombuffer(canvas.heatmap, "<f4").reshape(7, 7)
    np.testing.assert_array_equal(values, raw)  # raw, not clipped to the scale: the readout prints them
    assert canvas.scale == (-1.0, 1.0) and canvas.signed is True
    assert canvas.unit == "logit share" and canvas.caption == "tabby (class 281)"
    scaled = signed_scale(raw, unit="relevance")
    canvas.set_heatmap(scaled)
    assert canvas.scale == (scaled.low, scaled.high) and canvas.unit == "relevance" and canvas.caption == ""
    canvas.set_heatmap(np.array([[np.nan, np.inf], [-np.inf, 3.0]]), scale=(0.0, 2.0), unit="u")
    np.testing.assert_array_equal(np.frombuffer(canvas.heatmap, "<f4"), [0, 2, 0, 3])
    assert canvas.signed is False and canvas.scale == (0.0, 2.0)
    with pytest.raises(ValueError, match="scale must be two finite numbers"):
        canvas.set_heatmap(raw, scale=(0.0, float("nan")))
    canvas.set_heatmap(None)
    assert canvas.heatmap == b"" and canvas.scale == (0.0, 1.0) and canvas.caption == ""


def _node_tool(name: str, spec: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI to compare the JS and Python renderers")
        pytest.skip("node is not installed")
    result = subprocess.run([node, str(ROOT / "js" / "tools" / name)], input=json.dumps(spec),
                            capture_output=True, text=True, check=True, timeout=60)
    return json.loads(result.stdout)


def test_the_browser_composites_exactly_as_render_overlay():
    """The front-end's map layer (js/src/lib/layer.js, lut.js, run by node) paints what
    nbexplain.render.overlay draws for the same raw values and scale: signed maps weighted by
    their magnitude, gray as a spotlight, a low-resolution map upsampled."""
    from nbexplain.engine.maps import MapValues

    H, W = 56, 56
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    smooth = np.sin(np.linspace(0, 6, W))[None, :] * np.cos(np.linspace(0, 4, H))[:, None]
    fine = (smooth * 0.03).astype(np.float32)
    coarse = rng.normal(0, 1, (7, 7)).astype(np.float32)
    cases = [(fine, -0.02, 0.02, True, "bwr", 0.5), (fine, -0.02, 0.02, True, "bwr", 0.8),
             (fine, -0.03, 0.03, True, "gray", 0.5), (np.abs(fine), 0.0, 0.025, False, "jet", 0.5),
             (np.abs(fine), 0.0, 0.03, False, "gray", 1.0), (coarse, -1.5, 1.5, True, "bwr", 0.5),
             (coarse, -2.0, 2.0, False, "viridis", 0.7)]
    image = np.concatenate([photo, np.full((H, W, 1), 255, np.uint8)], 2).reshape(-1).tolist()
    luts = HeatmapCanvas().luts
    spec = {"cases": [{"H": H, "W": W, "image": image, "raw": raw.reshape(-1).tolist(), "h": raw.shape[0],
                       "w": raw.shape[1], "scale": [low, high], "signed": signed, "cmap": cmap,
                       "opacity": opacity, "luts": luts} for raw, low, high, signed, cmap, opacity in cases]}
    painted = _node_tool("composite.mjs", spec)["pixels"]
    for (raw, low, high, signed, cmap, opacity), pixels in zip(cases, painted, strict=True):
        map01 = MapValues(raw, low, high, signed).normalized((H, W))
        expected = np.asarray(render.overlay(photo, map01, cmap, opacity, signed=signed)).astype(int)
        got = np.array(pixels, np.uint8).reshape(H, W, 4)[..., :3].astype(int)
        diff = np.abs(got - expected).max(2)
        label = f"{cmap} signed={signed} opacity={opacity} map {raw.shape}"
        assert (diff <= 1).mean() >= 0.998 and diff.max() <= 4, f"{label}: max diff {diff.max()}"
        assert np.abs(got - photo).max() > 30, f"{label}: the map is visible"


def test_the_browser_formats_numbers_as_python_does():
    values = [0.0, 1.0, -1.0, 0.0956184, 3.7240819, -3.889e-7, 123456.0, 999.6, 9.9996, 1e-4, 1.234e-5,
              0.1 + 0.2, 2.5e6, -0.000123456, 42.0, 0.015625]
    numbers = [[v, digits] for v in values for digits in (3, 4)]
    formatted = _node_tool("composite.mjs", {"numbers": numbers})["formatted"]
    assert formatted == [format(v, f".{digits}g") for v, digits in numbers]
