import { test } from "node:test";
import assert from "node:assert/strict";
import { bresenham, discSpans, paintStroke, squareBounds, stampDisc, toPixel } from "../src/lib/raster.js";

test("bresenham covers both ends, is 8-connected and follows the direction", () => {
  const line = bresenham(0, 0, 5, 2);
  assert.deepEqual(line[0], [0, 0]);
  assert.deepEqual(line.at(-1), [5, 2]);
  assert.equal(line.length, 6);
  for (let i = 1; i < line.length; i++) {
    assert.ok(Math.abs(line[i][0] - line[i - 1][0]) <= 1 && Math.abs(line[i][1] - line[i - 1][1]) <= 1);
  }
  assert.deepEqual(bresenham(3, 3, 3, 3), [[3, 3]]);
  assert.deepEqual(bresenham(2, 0, 0, 0), [[2, 0], [1, 0], [0, 0]]);
});

test("disc radius r covers dx²+dy² <= r²+r", () => {
  assert.deepEqual([...discSpans(0)], [0]);
  assert.deepEqual([...discSpans(1)], [1, 1, 1]); // 3x3 square: corners have 2 <= 2
  assert.deepEqual([...discSpans(2)], [1, 2, 2, 2, 1]);
  const r = 5;
  const mask = new Uint8Array(21 * 21);
  stampDisc(mask, 21, 21, 10, 10, r, 255);
  for (let y = 0; y < 21; y++) {
    for (let x = 0; x < 21; x++) {
      const inside = (x - 10) ** 2 + (y - 10) ** 2 <= r * r + r;
      assert.equal(mask[y * 21 + x], inside ? 255 : 0, `(${x}, ${y})`);
    }
  }
});

test("stamps clip at the borders", () => {
  const mask = new Uint8Array(4 * 3);
  stampDisc(mask, 4, 3, 0, 0, 1, 255);
  assert.deepEqual([...mask], [255, 255, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0]);
  stampDisc(mask, 4, 3, -5, -5, 2, 9); // fully outside: nothing
  assert.equal(mask.filter((v) => v === 9).length, 0);
});

test("a stroke split into overlapping messages paints the same mask as in one piece", () => {
  const W = 40;
  const H = 30;
  const pts = [[3, 4], [10, 9], [25, 5], [30, 28], [2, 20]];
  const whole = paintStroke(new Uint8Array(W * H), W, H, pts, 3, 255);
  const parts = new Uint8Array(W * H);
  paintStroke(parts, W, H, pts.slice(0, 2), 3, 255);
  paintStroke(parts, W, H, pts.slice(1, 4), 3, 255);
  paintStroke(parts, W, H, pts.slice(3), 3, 255);
  paintStroke(parts, W, H, pts.slice(4), 3, 255);
  assert.deepEqual(parts, whole);
  paintStroke(parts, W, H, [[10, 9]], 2, 0); // erase
  assert.equal(parts[9 * W + 10], 0);
});

test("squareBounds centres the square and clips it", () => {
  assert.deepEqual(squareBounds(10, 10, 4, 100, 100), [8, 8, 12, 12]);
  assert.deepEqual(squareBounds(10, 10, 5, 100, 100), [8, 8, 13, 13]);
  assert.deepEqual(squareBounds(0, 0, 4, 100, 100), [0, 0, 2, 2]);
  assert.equal(squareBounds(200, 0, 4, 100, 100), null);
});

test("toPixel maps client coordinates through the element's rectangle and clamps", () => {
  const rect = { left: 10, top: 20, width: 448, height: 448 };
  assert.deepEqual(toPixel(10, 20, rect, 224, 224), [0, 0]);
  assert.deepEqual(toPixel(10 + 447.9, 20 + 447.9, rect, 224, 224), [223, 223]);
  assert.deepEqual(toPixel(10 + 3, 20 + 200, rect, 224, 224), [1, 100]);
  assert.deepEqual(toPixel(-100, 1000, rect, 224, 224), [0, 223]);
});
