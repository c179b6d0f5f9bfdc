// CanvasView: one view of a HeatmapCanvas model. It builds the DOM (caption, canvas, cursor
// overlay, busy indicator, error overlay, colour bar, readout), listens to the model's traits,
// loads what changed (image; the raw heatmap upsampled, put on its scale and coloured here; mask)
// and composites it on the next animation frame; it reports input-to-paint latency ("rendered").
// Pointer handling is in pointer.js, the caption and colour bar in legend.js.
import { asBytes, asFloat32, asShape } from "../lib/codec.js";
import { cmapName, composite, pickLut, SPOTLIGHT } from "../lib/lut.js";
import { mapLayer, mapWeights } from "../lib/layer.js";
import { asScale } from "../lib/scale.js";
import { LatestCoalescer, StrokeBatcher } from "../lib/coalesce.js";
import { Legend, make } from "./legend.js";
import { pointerMethods } from "./pointer.js";
import { STYLE } from "./style.js";

const INPUT_EVENTS = ["input", "change", "pointerdown", "keydown", "pointermove"];
const STALE_INPUT_MS = 10000;

export class CanvasView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.W = 0;
    this.H = 0;
    this.image = null; // RGBA bytes, H×W×4
    this.raw = null; // {values, h, w}: the map's raw values at its own resolution
    this.heat = null; // upsampled raw values, float32 H×W (the readout prints them)
    this.heatRGB = null; // colorized heat, H×W×3
    this.heat01 = null; // the heat's positions on its scale, [0, 1]
    this.weights = null; // a signed map's per-pixel opacity (render.signed_weight) at `weightsAt`
    this.weightsAt = null;
    this.lut = null; // the colormap that paints, 256×3
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
    this.legend = new Legend(this.root, this.stage);
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
    this.on("change:scale", mark("color", "paint"));
    this.on("change:cmap", mark("color", "paint"));
    this.on("change:luts", mark("color", "paint"));
    this.on("change:unit", mark("color"));
    this.on("change:caption", mark("color"));
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
    this.raw = null;
    if (bytes.byteLength && h * w > 0 && this.W && this.H) {
      this.raw = { values: asFloat32(bytes, h * w), h, w };
    } else if (bytes.byteLength && bytes.byteLength !== h * w * 4) {
      this.localError = `heatmap: ${bytes.byteLength} bytes do not fit ${h}×${w} float32`;
    }
    this.dirty.color = true;
  }

  loadColor() {
    const signed = !!this.model.get("signed");
    const name = cmapName(this.model.get("cmap"), signed);
    const [low, high] = asScale(this.model.get("scale"));
    const raw = this.raw;
    this.lut = raw ? pickLut(this.model.get("luts"), name, signed) : null;
    const layer = raw ? mapLayer(raw.values, raw.h, raw.w, this.H, this.W, [low, high], signed, this.lut) : {};
    this.heat = layer.heat || null;
    this.heat01 = layer.heat01 || null;
    this.heatRGB = layer.rgb || null;
    this.weights = this.weightsAt = null;
    this.legend.show({ caption: this.model.get("caption"), lut: this.lut, name, scale: [low, high], signed,
                       unit: this.model.get("unit") || "" });
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
    const signed = !!this.model.get("signed");
    const spotlight = cmapName(this.model.get("cmap"), signed) === SPOTLIGHT;
    const opacity = Math.min(1, Math.max(0, Number(this.model.get("opacity")) || 0));
    let weights = null;
    if (signed && !spotlight && this.heat01) {
      if (this.weightsAt !== opacity) {
        this.weights = mapWeights(this.heat01, opacity);
        this.weightsAt = opacity;
      }
      weights = this.weights;
    }
    composite(this.imageData.data, this.image, this.heatRGB, opacity, this.mask, weights, spotlight);
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

Object.assign(CanvasView.prototype, pointerMethods);
