import { test } from "node:test";
import assert from "node:assert/strict";
import { cmapName, colorize, composite, grayLut, lutIndex, MASK_ALPHA, MASK_COLOR, pickLut } from "../src/lib/lut.js";

const luts = { jet: Array.from({ length: 768 }, (_, i) => i % 256), bwr: Array(768).fill(7) };

test("lutIndex matches render.colorize (clip(v*255+0.5))", () => {
  assert.equal(lutIndex(0), 0);
  assert.equal(lutIndex(1), 255);
  assert.equal(lutIndex(2), 255);
  assert.equal(lutIndex(-1), 0);
  assert.equal(lutIndex(Number.NaN), 0);
  assert.equal(lutIndex(0.5), 128);
  assert.equal(lutIndex(1 / 255), 1);
});

test("pickLut: auto picks bwr for signed maps and jet otherwise; unknown names fall back", () => {
  assert.equal(pickLut(luts, "auto", true)[0], 7);
  assert.equal(pickLut(luts, "auto", false)[1], 1);
  assert.equal(pickLut(luts, "nope", false)[1], 1);
  assert.deepEqual(pickLut({}, "jet", false), grayLut());
});

test("colorize looks values up", () => {
  const lut = grayLut();
  assert.deepEqual([...colorize(Float32Array.from([0, 1, 0.5]), lut)], [0, 0, 0, 255, 255, 255, 128, 128, 128]);
});

test("composite blends image, heat and mask and rounds half up", () => {
  const image = Uint8Array.from([100, 50, 0, 255, 10, 20, 30, 255]);
  const heat = Uint8Array.from([200, 0, 255, 0, 0, 0]);
  const out = new Uint8ClampedArray(8);
  composite(out, image, heat, 0.5, null);
  assert.deepEqual([...out], [150, 25, 128, 255, 5, 10, 15, 255]);
  composite(out, image, null, 0.5, null); // no heatmap: the picture as it is
  assert.deepEqual([...out], [...image]);
  composite(out, image, heat, 0, Uint8Array.from([255, 0]));
  const k = MASK_ALPHA;
  assert.deepEqual([...out.slice(0, 3)], [
    Math.floor(100 * (1 - k) + MASK_COLOR[0] * k + 0.5),
    Math.floor(50 * (1 - k) + MASK_COLOR[1] * k + 0.5),
    Math.floor(0 * (1 - k) + MASK_COLOR[2] * k + 0.5),
  ]);
  assert.deepEqual([...out.slice(4, 8)], [10, 20, 30, 255]);
});

test("cmapName resolves auto", () => {
  assert.equal(cmapName("auto", true), "bwr");
  assert.equal(cmapName(undefined, false), "jet");
  assert.equal(cmapName("gray", true), "gray");
});

test("composite: per-pixel weights (a signed map) blend each pixel by its own opacity", () => {
  const image = Uint8Array.from([40, 40, 40, 255, 40, 40, 40, 255]);
  const heat = Uint8Array.from([255, 0, 0, 255, 0, 0]);
  const out = new Uint8ClampedArray(8);
  composite(out, image, heat, 0.5, null, Float32Array.from([0, 1]));
  assert.deepEqual([...out], [40, 40, 40, 255, 255, 0, 0, 255]); // weight 0: the photo; 1: the colour
});

test("composite: the spotlight dims the photo where the map is low", () => {
  const image = Uint8Array.from([200, 100, 50, 255, 200, 100, 50, 255]);
  const heat = Uint8Array.from([0, 0, 0, 255, 255, 255]); // gray LUT at 0 and at 1
  const out = new Uint8ClampedArray(8);
  composite(out, image, heat, 0.5, null, null, true);
  assert.deepEqual([...out], [100, 50, 25, 255, 200, 100, 50, 255]);
  composite(out, null, heat, 0.5, null, null, true); // no picture: blended as usual
  assert.deepEqual([...out.slice(4, 7)], [128, 128, 128]);
});
