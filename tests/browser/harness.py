"""Helpers for the browser tests: open a notebook in a front-end, probe the kernel, read pixels."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np

from nbexplain import render

MAIN = "canvas.nbx-main"
OUTPUT = ".jp-OutputArea-output"  # JupyterLab, Notebook 7 and Voilà 0.5 render outputs alike


def explorer_output(page):
    """The (visible) output holding the Explorer (it has the mode toggle buttons)."""
    return page.locator(f"{OUTPUT}:visible").filter(has=page.locator(".widget-toggle-buttons")).first


def canvas_output(page):
    """The (visible) output holding the HeatmapCanvas alone."""
    return (page.locator(f"{OUTPUT}:visible").filter(has=page.locator(MAIN))
            .filter(has_not=page.locator(".widget-toggle-buttons")).first)


def wait_canvas(output, width: int, timeout: float = 90_000):
    """The main canvas inside ``output`` once it has its picture (``width`` pixels wide); on a
    timeout the error says what the notebook's outputs show (a traceback, say)."""
    from playwright.sync_api import expect

    canvas = output.locator(MAIN).first
    try:
        expect(canvas).to_have_attribute("data-w", str(width), timeout=timeout)
    except AssertionError as error:
        texts = output.page.locator(OUTPUT).all_inner_texts()
        shown = "\n---\n".join(t[-1500:] for t in texts) or "(no outputs)"
        raise AssertionError(f"no {width}-pixel-wide canvas; the outputs show:\n{shown}") from error
    canvas.scroll_into_view_if_needed()
    return canvas


_PIXELS_JS = """(canvas) => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let s = '';
  for (let i = 0; i < data.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
  }
  return {w: canvas.width, h: canvas.height, b64: btoa(s)};
}"""


# Injected into notebook pages: once the kernel is idle, run all cells and say which kernel it is.
_AUTORUN_JS = """(() => {
  if (window.top !== window) return;
  const tick = async () => {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    if (k && k.status === 'idle' && w.content && w.content.widgets && w.content.widgets.length) {
      await app.commands.execute('notebook:run-all-cells');
      window.__nbxKernel = k.id;
      return;
    }
    setTimeout(tick, 100);
  };
  setTimeout(tick, 100);
})();"""
_VOILA_KERNEL_JS = """() => {
  const config = document.getElementById('jupyter-config-data');
  return config ? JSON.parse(config.textContent).kernelId : null;
}"""


def start_notebook(page, server, app: str, path: str) -> None:
    """Start opening ``path`` in JupyterLab ("lab") or Notebook 7 ("notebook"); the page runs all
    cells by itself once its kernel is idle (see ``notebook_kernel``)."""
    page.add_init_script(_AUTORUN_JS)
    page.goto(server.page_url(app, path), wait_until="commit")


def start_voila(page, server, path: str) -> None:
    """Start rendering ``path`` with Voilà."""
    page.goto(server.page_url("voila", path), wait_until="commit", timeout=120_000)


def notebook_kernel(page, timeout: float = 180_000) -> str:
    """The id of the page's kernel, once its cells were sent to run (notebook) or it started (Voilà)."""
    handle = page.wait_for_function(f"() => window.__nbxKernel || ({_VOILA_KERNEL_JS})()",
                                    timeout=timeout, polling=100)
    return handle.json_value()


class KernelProbe:
    """A second client on a notebook's kernel: run code there and read what it prints."""

    def __init__(self, server, kernel_id: str):
        from jupyter_client import BlockingKernelClient

        connection = Path(server.runtime) / f"kernel-{kernel_id}.json"
        self.client = BlockingKernelClient(connection_file=str(connection))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> str:
        out: list[str] = []
        errors: list[str] = []

        def hook(msg):
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                errors.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_result":
                out.append(msg["content"]["data"].get("text/plain", "") + "\n")

        self.client.execute_interactive(code, output_hook=hook, timeout=timeout, store_history=False)
        if errors:
            raise AssertionError(f"kernel code failed:\n{code}\n{errors[0]}")
        return "".join(out)

    def value(self, expression: str):
        """``expression`` evaluated in the kernel, passed through JSON."""
        import json

        text = self.run(f"import json as _j; print(_j.dumps({expression}))")
        return json.loads(text.strip().splitlines()[-1])

    def wait_for(self, expression: str, predicate=bool, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expression)
            if predicate(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on kernel expression {expression!r}; "
                                     f"last: {value!r}")
            time.sleep(0.1)

    def close(self):
        self.client.stop_channels()


def canvas_pixels(locator) -> np.ndarray:
    """The canvas's RGBA pixels (H×W×4 uint8), read with getImageData."""
    got = locator.evaluate(_PIXELS_JS)
    return np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(got["h"], got["w"], 4)


def client_point(locator, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of the centre of input pixel (x, y) of the canvas."""
    box = locator.bounding_box()
    w, h = (int(v) for v in locator.evaluate("c => [c.width, c.height]"))
    return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h


def upsample_bilinear(src: np.ndarray, H: int, W: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize (the front-end's and PIL's), float32 result."""
    h, w = src.shape

    def axis(n, out):
        s = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
        lo = np.floor(s).astype(int)
        return lo, np.minimum(lo + 1, n - 1), s - lo

    y0, y1, fy = axis(h, H)
    x0, x1, fx = axis(w, W)
    src = src.astype(np.float64)
    top = src[y0][:, x0] + (src[y0][:, x1] - src[y0][:, x0]) * fx
    bottom = src[y1][:, x0] + (src[y1][:, x1] - src[y1][:, x0]) * fx
    return (top + (bottom - top) * fy[:, None]).astype(np.float32)


def scale_positions(heat: np.ndarray, H: int, W: int, scale=(0.0, 1.0), signed: bool = False) -> np.ndarray:
    """Where the upsampled raw ``heat`` sits on its colour scale, [0, 1], as js/src/lib/scale.js
    computes it (float32 values, double arithmetic, a float32 result)."""
    up = upsample_bilinear(heat, H, W).astype(np.float64)
    low, high = (float(v) for v in scale)
    if not high - low > 0:
        return np.full(up.shape, 0.5 if signed else 0.0)
    t = np.nan_to_num(np.clip((up - low) / (high - low), 0, 1))
    return t.astype(np.float32).astype(np.float64)


def expected_composite(rgb: np.ndarray, heat: np.ndarray | None, cmap: str = "jet", opacity: float = 0.5,
                       mask_u8: np.ndarray | None = None, scale=(0.0, 1.0),
                       signed: bool = False) -> np.ndarray:
    """What the front-end should paint (H×W×3 uint8) for the raw ``heat`` on ``scale``, from
    js/src/lib/layer.js and lut.js composite(): a signed map weighted by its magnitude, gray as a
    spotlight (nbexplain.render.overlay does the same)."""
    H, W = rgb.shape[:2]
    out = rgb.astype(np.float64)
    if heat is not None:
        t = scale_positions(heat, H, W, scale, signed)
        index = np.clip(np.floor(t * 255 + 0.5), 0, 255).astype(int)
        colors = render.lut(cmap)[index].astype(np.float64)
        if cmap == render.SPOTLIGHT:
            out = out * (1 - opacity) + out * colors / 255 * opacity
        else:
            a = np.minimum(1.0, 2 * opacity * np.sqrt(np.abs(2 * t - 1)))[..., None] if signed else opacity
            out = out * (1 - a) + colors * a
    if mask_u8 is not None:
        k = (mask_u8.astype(np.float64) / 255 * 0.5)[..., None]
        out = out * (1 - k) + np.array([255, 0, 255], np.float64) * k
    return np.floor(out + 0.5).astype(np.uint8)


def assert_close_pixels(actual_rgba: np.ndarray, expected_rgb: np.ndarray, label: str = "") -> None:
    """Every pixel within 3 (LUT steps at float boundaries) and nearly all within 1."""
    actual = actual_rgba[..., :3].astype(int)
    assert actual.shape == expected_rgb.shape, f"{label}: shape {actual.shape} != {expected_rgb.shape}"
    diff = np.abs(actual - expected_rgb.astype(int))
    where = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= 3, f"{label}: max pixel difference {diff.max()} at {where}"
    off = (diff.max(axis=2) > 1).sum()
    assert off <= 0.005 * diff.shape[0] * diff.shape[1], f"{label}: {off} pixels off by > 1"


class Stopwatch:
    """Laps of a browser test, printed at the end (pytest -s shows them; -rA in the report)."""

    def __init__(self, label: str):
        self.label = label
        self.start = self.last = time.monotonic()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append((name, now - self.last))
        self.last = now

    def report(self) -> str:
        total = time.monotonic() - self.start
        text = f"{self.label}: {total:.1f} s (" + ", ".join(f"{n} {s:.1f}" for n, s in self.laps) + ")"
        print(text)
        return text


def wait_pixels(canvas, expected_rgb: np.ndarray, label: str = "", timeout: float = 10) -> np.ndarray:
    """Poll until the canvas shows ``expected_rgb`` (see ``assert_close_pixels``); its pixels."""
    deadline = time.monotonic() + timeout
    while True:
        pixels = canvas_pixels(canvas)
        try:
            assert_close_pixels(pixels, expected_rgb, label)
            return pixels
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
