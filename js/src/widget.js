// The anywidget view of nbexplain.widgets.HeatmapCanvas: the image with its heatmap composited
// on a <canvas>, hover readout, brush painting, patch occluder, busy indicator, error overlay.
// Model contract: /work/main/.notes/WIDGET.md (traits image, image_shape, heatmap, heatmap_shape,
// signed, cmap, luts, opacity, mode, brush_size, mask_version, mask_bytes, busy, error,
// display_width).
import { asBytes, asFloat32, asShape } from "./codec.js";
import { upsampleBilinear } from "./bilinear.js";
import { colorize, composite, pickLut } from "./lut.js";
import { paintStroke, squareBounds, toPixel } from "./raster.js";
import { LatestCoalescer, StrokeBatcher } from "./coalesce.js";

const STYLE = `
.nbx-canvas { position: relative; display: inline-block; max-width: 100%; line-height: 0;
  font: 12px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; user-select: none; }
.nbx-canvas .nbx-stage { position: relative; line-height: 0; }
.nbx-canvas canvas.nbx-main { display: block; max-width: 100%; height: auto; background: #222; }
.nbx-canvas canvas.nbx-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%;
  pointer-events: none; }
.nbx-canvas .nbx-readout { line-height: 18px; height: 18px; color: var(--jp-ui-font-color1, #333);
  font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; }
.nbx-canvas .nbx-busy { position: absolute; top: 6px; right: 6px; width: 14px; height: 14px;
  border-radius: 50%; border: 2px solid rgba(255,255,255,0.35); border-top-color: #fff;
  box-shadow: 0 0 2px rgba(0,0,0,0.6); opacity: 0; transition: opacity 120ms;
  animation: nbx-spin 0.8s linear infinite; pointer-events: none; }
.nbx-canvas .nbx-busy.nbx-on { opacity: 1; }
@keyframes nbx-spin { to { transform: rotate(360deg); } }
.nbx-canvas .nbx-error { position: absolute; left: 0; right: 0; bottom: 0; max-height: 70%;
  overflow: auto; display: none; background: rgba(150, 20, 20, 0.92); color: #fff;
  line-height: 1.35; padding: 6px 26px 6px 8px; white-space: pre-wrap; word-break: break-word; }
.nbx-canvas .nbx-error.nbx-on { display: block; }
.nbx-canvas .nbx-error button { position: absolute; top: 2px; right: 4px; border: 0;
  background: transparent; color: #fff; font-size: 16px; cursor: pointer; line-height: 1; }
`;

function make(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

const INPUT_EVENTS = ["input", "change", "pointerdown", "keydown", "pointermove"];
const STALE_INPUT_MS = 10000;

class CanvasView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.W = 0;
    this.H = 0;
    this.image = null; // RGBA bytes, H×W×4
    this.heat = null; // upsampled float32 H×W
    this.heatRGB = null; // colorized heat, H×W×3
    this.mask = new Uint8Array(0);
    this.imageData = null;
    this.localError = "";
    this.dirty = { image: true, heat: true, color: true, mask: true, paint: true };
    this.frameId = null;
    this.heatArrived = false;
    this.pendingInput = null;
    this.heatPaints = 0;
    this.cursor = null; // [x, y] in input pixels, or null
    this.down = null;
    this.patchSent = false;
    this.patchKey = null;
    this.handlers = [];
    this.docHandlers = [];
    this.build();
    this.batcher = new StrokeBatcher((msg) => this.send(msg));
    this.patches = new LatestCoalescer((p) => {
      this.patchSent = true;
      this.send({ type: "patch", x: p.x, y: p.y, size: p.size });
    });
    this.listen();
    this.frame();
  }

  // -- DOM ---------------------------------------------------------------------------------
  build() {
    this.root = make("div", "nbx-canvas", this.el);
    make("style", "", this.root).textContent = STYLE;
    this.stage = make("div", "nbx-stage", this.root);
    this.canvas = make("canvas", "nbx-main", this.stage);
    this.overlay = make("canvas", "nbx-overlay", this.stage);
    this.busyNode = make("div", "nbx-busy", this.stage);
    this.busyNode.title = "computing…";
    this.errorNode = make("div", "nbx-error", this.stage);
    this.errorText = make("span", "", this.errorNode);
    const close = make("button", "", this.errorNode);
    close.textContent = "×";
    close.title = "dismiss";
    close.addEventListener("click", () => {
      this.localError = "";
      if (this.model.get("error")) {
        this.model.set("error", "");
        this.model.save_changes();
      }
      this.showError();
    });
    this.readout = make("div", "nbx-readout", this.root);
    this.readout.textContent = "\u00a0";
    this.ctx = this.canvas.getContext("2d");
    this.canvas.style.cursor = "crosshair";
    this.canvas.dataset.heatPaints = "0";
    this.showMode();
  }

  showMode() {
    const mode = this.model.get("mode");
    this.canvas.dataset.mode = mode;
    this.canvas.style.touchAction = mode === "explain" ? "auto" : "none"; // touch paints, not scrolls
    // the right button erases: keep JupyterLab's context menu off the canvas while painting
    if (mode === "explain") delete this.canvas.dataset.jpSuppressContextMenu;
    else this.canvas.dataset.jpSuppressContextMenu = "true";
  }

  layout() {
    const width = Math.max(16, Number(this.model.get("display_width")) || 448);
    if (this.W > 0) {
      this.canvas.style.width = `${width}px`;
      this.root.style.width = `${width}px`;
      this.canvas.style.imageRendering = this.W * 4 <= width ? "pixelated" : "auto";
    }
  }

  // -- model events ------------------------------------------------------------------------
  on(name, fn) {
    const bound = (...args) => {
      try {
        fn(...args);
      } catch (error) {
        this.fail(error);
      }
    };
    this.model.on(name, bound);
    this.handlers.push([name, bound]);
  }

  listen() {
    const mark = (...keys) => () => {
      for (const key of keys) this.dirty[key] = true;
      this.schedule();
    };
    this.on("change:image", mark("image", "heat", "mask", "paint"));
    this.on("change:image_shape", mark("image", "heat", "mask", "paint"));
    this.on("change:heatmap", () => {
      this.heatArrived = true;
      mark("heat", "paint")();
    });
    this.on("change:heatmap_shape", mark("heat", "paint"));
    this.on("change:signed", mark("color", "paint"));
    this.on("change:cmap", mark("color", "paint"));
    this.on("change:luts", mark("color", "paint"));
    this.on("change:opacity", mark("paint"));
    this.on("change:mask_version", mark("mask", "paint"));
    this.on("change:display_width", () => this.layout());
    this.on("change:busy", () => this.showBusy());
    this.on("change:error", () => this.showError());
    this.on("change:mode", () => {
      this.showMode();
      this.batcher.end();
      this.leavePatch();
      this.drawOverlay();
    });
    this.on("change:brush_size", () => this.drawOverlay());
    this.showBusy();
    this.showError();

    const c = this.canvas;
    this.listenDom(c, "pointerdown", (e) => this.pointerDown(e));
    this.listenDom(c, "pointermove", (e) => this.pointerMove(e));
    this.listenDom(c, "pointerup", (e) => this.pointerUp(e));
    this.listenDom(c, "pointercancel", (e) => this.pointerUp(e));
    this.listenDom(c, "pointerleave", () => this.pointerLeave());
    this.listenDom(c, "contextmenu", (e) => {
      if (this.model.get("mode") !== "explain") e.preventDefault();
    });
    // Input anywhere near the widget (its sliders and dropdowns live in sibling widgets) starts
    // the clock for the 'rendered' latency report.
    const record = (e) => {
      if (e.type === "pointermove" && !e.buttons) return;
      const scope = this.scope();
      if (scope && e.target instanceof Node && !scope.contains(e.target)) return;
      this.noteInput(e);
    };
    for (const type of INPUT_EVENTS) {
      document.addEventListener(type, record, true);
      this.docHandlers.push([type, record]);
    }
  }

  listenDom(node, type, fn) {
    node.addEventListener(type, (e) => {
      try {
        fn(e);
      } catch (error) {
        this.fail(error);
      }
    });
  }

  scope() {
    if (!this.el.isConnected) return null;
    return this.el.closest(".jp-OutputArea-output, .output_subarea, .jp-Cell") || null;
  }

  noteInput(e) {
    const now = performance.now();
    const t = e && e.timeStamp > now - 1000 && e.timeStamp <= now ? e.timeStamp : now;
    this.pendingInput = t;
  }

  send(msg) {
    this.model.send(msg);
  }

  // -- data --------------------------------------------------------------------------------
  loadImage() {
    let [H, W] = asShape(this.model.get("image_shape"));
    const bytes = asBytes(this.model.get("image"));
    this.image = null;
    if (!bytes.byteLength) {
      [H, W] = asShape(this.model.get("heatmap_shape")); // no picture: the map alone
    } else if (bytes.byteLength === H * W * 4) {
      this.image = bytes;
    } else {
      this.localError = `image: ${bytes.byteLength} bytes do not fit ${H}×${W}×4`;
    }
    if (H !== this.H || W !== this.W || !this.imageData) {
      this.H = H;
      this.W = W;
      this.canvas.width = W;
      this.canvas.height = H;
      this.canvas.dataset.w = String(W);
      this.canvas.dataset.h = String(H);
      this.imageData = W && H ? this.ctx.createImageData(W, H) : null;
      this.mask = new Uint8Array(W * H);
      this.dirty.mask = true;
      this.layout();
    }
  }

  loadHeat() {
    const [h, w] = asShape(this.model.get("heatmap_shape"));
    const raw = this.model.get("heatmap");
    const bytes = asBytes(raw);
    this.heat = null;
    if (bytes.byteLength && h * w > 0 && this.W && this.H) {
      const small = asFloat32(bytes, h * w);
      this.heat = upsampleBilinear(small, h, w, this.H, this.W);
    } else if (bytes.byteLength && bytes.byteLength !== h * w * 4) {
      this.localError = `heatmap: ${bytes.byteLength} bytes do not fit ${h}×${w} float32`;
    }
    this.dirty.color = true;
  }

  loadColor() {
    if (!this.heat) {
      this.heatRGB = null;
      return;
    }
    const lut = pickLut(this.model.get("luts"), this.model.get("cmap"), !!this.model.get("signed"));
    this.heatRGB = colorize(this.heat, lut);
  }

  loadMask() {
    const bytes = asBytes(this.model.get("mask_bytes"));
    const n = this.W * this.H;
    if (bytes.byteLength === n) this.mask = Uint8Array.from(bytes);
    else this.mask = new Uint8Array(n);
    this.canvas.dataset.maskVersion = String(this.model.get("mask_version") || 0);
  }

  // -- painting ----------------------------------------------------------------------------
  schedule() {
    if (this.frameId !== null) return;
    this.frameId = requestAnimationFrame(() => {
      this.frameId = null;
      try {
        this.frame();
      } catch (error) {
        this.fail(error);
      }
    });
  }

  frame() {
    const d = this.dirty;
    const hadError = !!this.localError;
    if (d.image || d.heat) this.localError = "";
    if (d.image) this.loadImage();
    if (d.heat) this.loadHeat();
    if (d.color) this.loadColor();
    if (d.mask) this.loadMask();
    const painted = d.paint || d.image || d.heat || d.color || d.mask;
    this.dirty = { image: false, heat: false, color: false, mask: false, paint: false };
    if (painted) this.paint();
    if (this.localError || hadError) this.showError();
    if (this.heatArrived) {
      this.heatArrived = false;
      this.heatPaints += 1;
      this.canvas.dataset.heatPaints = String(this.heatPaints);
      this.reportRendered();
    }
  }

  paint() {
    if (!this.imageData) return;
    composite(this.imageData.data, this.image, this.heatRGB, this.model.get("opacity"), this.mask);
    this.ctx.putImageData(this.imageData, 0, 0);
  }

  reportRendered() {
    const tEvent = this.pendingInput;
    if (tEvent === null) return;
    this.pendingInput = null;
    const tPaint = performance.now();
    if (tPaint - tEvent > STALE_INPUT_MS) return;
    const detail = { type: "rendered", t_event: tEvent, t_paint: tPaint, latency_ms: tPaint - tEvent };
    this.send(detail);
    this.el.dispatchEvent(new CustomEvent("nbx-rendered", { bubbles: true, detail }));
  }

  // -- overlays ----------------------------------------------------------------------------
  showBusy() {
    this.busyNode.classList.toggle("nbx-on", !!this.model.get("busy"));
  }

  showError() {
    const text = this.model.get("error") || this.localError || "";
    this.errorText.textContent = text;
    this.errorNode.classList.toggle("nbx-on", !!text);
  }

  fail(error) {
    this.localError = `front-end error: ${error && error.message ? error.message : error}`;
    this.showError();
    console.error("nbexplain canvas:", error);
  }

  drawOverlay() {
    const o = this.overlay;
    const rect = this.canvas.getBoundingClientRect();
    const dpr = globalThis.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(rect.width * dpr));
    const h = Math.max(1, Math.round(rect.height * dpr));
    if (o.width !== w || o.height !== h) {
      o.width = w;
      o.height = h;
    }
    const g = o.getContext("2d");
    g.clearRect(0, 0, w, h);
    if (!this.cursor || !this.W || !this.H) return;
    const sx = w / this.W;
    const sy = h / this.H;
    const [x, y] = this.cursor;
    const mode = this.model.get("mode");
    const size = Math.max(0, Number(this.model.get("brush_size")) || 0);
    g.lineWidth = Math.max(1, dpr);
    if (mode === "brush") {
      const r = size + 0.5;
      g.beginPath();
      g.ellipse((x + 0.5) * sx, (y + 0.5) * sy, r * sx, r * sy, 0, 0, 2 * Math.PI);
      g.strokeStyle = "rgba(0,0,0,0.8)";
      g.stroke();
      g.beginPath();
      g.ellipse((x + 0.5) * sx, (y + 0.5) * sy, r * sx + g.lineWidth, r * sy + g.lineWidth, 0, 0, 2 * Math.PI);
      g.strokeStyle = "rgba(255,255,255,0.9)";
      g.stroke();
    } else if (mode === "patch") {
      const b = squareBounds(x, y, size, this.W, this.H);
      if (!b) return;
      const [x0, y0, x1, y1] = b;
      g.fillStyle = "rgba(128,128,128,0.55)";
      g.fillRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
      g.strokeStyle = "rgba(255,255,255,0.9)";
      g.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
    }
  }

  readoutAt(x, y) {
    let text = `x ${x}, y ${y}`;
    if (this.heat) {
      const v = this.heat[y * this.W + x];
      text += this.model.get("signed") ? ` · ${v >= 0.5 ? "+" : ""}${(2 * v - 1).toFixed(3)}` : ` · ${v.toFixed(3)}`;
    }
    this.readout.textContent = text;
  }

  // -- pointer input -----------------------------------------------------------------------
  pixel(e) {
    return toPixel(e.clientX, e.clientY, this.canvas.getBoundingClientRect(), this.W, this.H);
  }

  pointerDown(e) {
    if (!this.W || !this.H) return;
    const mode = this.model.get("mode");
    const p = this.pixel(e);
    this.cursor = p;
    if (mode === "brush") {
      if (e.button !== 0 && e.button !== 2) return;
      e.preventDefault();
      const erase = e.button === 2 || e.shiftKey;
      const r = Math.max(0, Math.floor(Number(this.model.get("brush_size")) || 0));
      this.canvas.setPointerCapture?.(e.pointerId);
      this.noteInput(e);
      paintStroke(this.mask, this.W, this.H, [p], r, erase ? 0 : 255);
      this.batcher.begin(p, r, erase);
      this.dirty.paint = true;
      this.schedule();
    } else if (mode === "explain" && e.button === 0) {
      this.down = { x: e.clientX, y: e.clientY, p };
    }
    this.drawOverlay();
  }

  pointerMove(e) {
    if (!this.W || !this.H) return;
    const p = this.pixel(e);
    this.cursor = p;
    this.readoutAt(p[0], p[1]);
    const mode = this.model.get("mode");
    if (mode === "brush" && this.batcher.active) {
      const last = this.batcher.points[this.batcher.points.length - 1];
      if (this.batcher.add(p)) {
        this.noteInput(e);
        paintStroke(this.mask, this.W, this.H, [last, p], this.batcher.size, this.batcher.erase ? 0 : 255);
        this.dirty.paint = true;
        this.schedule();
      }
    } else if (mode === "patch") {
      const size = Math.max(1, Math.floor(Number(this.model.get("brush_size")) || 1));
      const key = `${p[0]},${p[1]},${size}`;
      if (key !== this.patchKey) {
        this.patchKey = key;
        this.noteInput(e);
        this.patches.push({ x: p[0], y: p[1], size });
      }
    }
    this.drawOverlay();
  }

  pointerUp(e) {
    if (this.batcher.active) {
      const p = this.W ? this.pixel(e) : null;
      const last = this.batcher.points[this.batcher.points.length - 1];
      if (p && this.batcher.add(p)) {
        paintStroke(this.mask, this.W, this.H, [last, p], this.batcher.size, this.batcher.erase ? 0 : 255);
        this.dirty.paint = true;
        this.schedule();
      }
      this.noteInput(e);
      this.batcher.end();
      this.canvas.releasePointerCapture?.(e.pointerId);
    }
    if (this.down && e.type === "pointerup") {
      const moved = Math.hypot(e.clientX - this.down.x, e.clientY - this.down.y);
      if (moved < 4) {
        this.noteInput(e);
        this.send({ type: "pick", x: this.down.p[0], y: this.down.p[1] });
      }
    }
    this.down = null;
  }

  pointerLeave() {
    if (this.batcher.active) return; // captured stroke continues outside
    this.cursor = null;
    this.readout.textContent = "\u00a0";
    this.leavePatch();
    this.drawOverlay();
  }

  leavePatch() {
    this.patches.drop();
    this.patchKey = null;
    if (this.patchSent) {
      this.patchSent = false;
      this.send({ type: "patch", x: null });
    }
  }

  destroy() {
    if (this.frameId !== null) cancelAnimationFrame(this.frameId);
    this.frameId = null;
    this.batcher.dispose();
    this.patches.dispose();
    for (const [name, fn] of this.handlers) this.model.off(name, fn);
    for (const [type, fn] of this.docHandlers) document.removeEventListener(type, fn, true);
    this.handlers = [];
    this.docHandlers = [];
    this.root.remove();
  }
}

/** anywidget entry point. */
export function render({ model, el }) {
  const view = new CanvasView(model, el);
  return () => view.destroy();
}

export default { render };
