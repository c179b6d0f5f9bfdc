// Pointer input on the canvas, as methods that view.js installs on CanvasView (`this` is the view):
// the hover readout and the cursor overlay (brush circle, patch square); brush strokes, painted into
// the local mask at once and sent batched as "stroke" messages; the patch occluder ("patch"); a
// click in explain mode ("pick"). Their state (cursor, down, patchKey, patchSent, batcher, patches)
// is set up in CanvasView's constructor.
import { paintStroke, squareBounds, toPixel } from "../lib/raster.js";
import { formatReading } from "../lib/scale.js";

export const pointerMethods = {
  // -- cursor and readout ------------------------------------------------------------------
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
  },

  readoutAt(x, y) {
    let text = `x ${x}, y ${y}`;
    if (this.heat) {
      // the raw value under the cursor (the map upsampled as it is painted), in the method's unit
      const v = this.heat[y * this.W + x];
      text += ` · ${formatReading(v, !!this.model.get("signed"), this.model.get("unit") || "")}`;
    }
    this.readout.textContent = text;
  },

  // -- pointer input -----------------------------------------------------------------------
  pixel(e) {
    return toPixel(e.clientX, e.clientY, this.canvas.getBoundingClientRect(), this.W, this.H);
  },

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
  },

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
  },

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
  },

  pointerLeave() {
    if (this.batcher.active) return; // captured stroke continues outside
    this.cursor = null;
    this.readout.textContent = "\u00a0";
    this.leavePatch();
    this.drawOverlay();
  },

  leavePatch() {
    this.patches.drop();
    this.patchKey = null;
    if (this.patchSent) {
      this.patchSent = false;
      this.send({ type: "patch", x: null });
    }
  },
};
