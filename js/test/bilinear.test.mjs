import { test } from "node:test";
import assert from "node:assert/strict";
import { upsampleBilinear } from "../src/lib/bilinear.js";

const close = (a, b, eps = 1e-6) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("same size is the identity", () => {
  const src = Float32Array.from([0, 0.5, 1, 0.25, 0.75, 0.125]);
  assert.deepEqual([...upsampleBilinear(src, 2, 3, 2, 3)], [...src]);
});

test("constant maps stay constant", () => {
  const out = upsampleBilinear(new Float32Array(9).fill(0.3), 3, 3, 17, 11);
  for (const v of out) close(v, 0.3);
});

test("half-pixel centres: 1x2 -> 1x4 matches PIL/torch align_corners=False", () => {
  const out = upsampleBilinear(Float32Array.from([0, 1]), 1, 2, 1, 4);
  // source coords: -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
  [0, 0.25, 0.75, 1].forEach((v, i) => close(out[i], v));
});

test("2x2 -> 4x4 interior value is the bilinear mix", () => {
  const out = upsampleBilinear(Float32Array.from([0, 1, 2, 3]), 2, 2, 4, 4);
  // (X=1, Y=2): sx = 0.25, sy = 0.75 -> 0*(.75*.25)+1*(.25*.25)+2*(.75*.75)+3*(.25*.75)
  close(out[2 * 4 + 1], 0 * 0.1875 + 1 * 0.0625 + 2 * 0.5625 + 3 * 0.1875);
  close(out[0], 0);
  close(out[15], 3);
});

function reference(src, h, w, H, W, X, Y) {
  const sx = Math.min(w - 1, Math.max(0, ((X + 0.5) * w) / W - 0.5));
  const sy = Math.min(h - 1, Math.max(0, ((Y + 0.5) * h) / H - 0.5));
  const x0 = Math.floor(sx);
  const y0 = Math.floor(sy);
  const x1 = Math.min(x0 + 1, w - 1);
  const y1 = Math.min(y0 + 1, h - 1);
  const fx = sx - x0;
  const fy = sy - y0;
  const at = (x, y) => src[y * w + x];
  return (at(x0, y0) * (1 - fx) + at(x1, y0) * fx) * (1 - fy) + (at(x0, y1) * (1 - fx) + at(x1, y1) * fx) * fy;
}

test("7x7 -> 224x224 (Grad-CAM size) agrees with the textbook formula", () => {
  const src = Float32Array.from({ length: 49 }, (_, i) => ((i * 37) % 49) / 48);
  const out = upsampleBilinear(src, 7, 7, 224, 224);
  assert.equal(out.length, 224 * 224);
  for (const v of out) assert.ok(v >= 0 && v <= 1);
  for (const [X, Y] of [[0, 0], [15, 16], [100, 37], [223, 223], [200, 5]]) {
    close(out[Y * 224 + X], reference(src, 7, 7, 224, 224, X, Y), 1e-5);
  }
});

test("wrong source length throws", () => {
  assert.throws(() => upsampleBilinear(new Float32Array(3), 2, 2, 4, 4), RangeError);
});
