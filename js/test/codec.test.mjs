import { test } from "node:test";
import assert from "node:assert/strict";
import { asBytes, asFloat32, asShape } from "../src/lib/codec.js";

test("asBytes accepts DataView, ArrayBuffer, typed arrays, arrays and null", () => {
  const buf = new Uint8Array([1, 2, 3, 4, 5]).buffer;
  assert.deepEqual([...asBytes(new DataView(buf, 1, 3))], [2, 3, 4]);
  assert.deepEqual([...asBytes(buf)], [1, 2, 3, 4, 5]);
  assert.deepEqual([...asBytes(new Uint16Array([258]))], [2, 1]);
  assert.deepEqual([...asBytes([7, 8])], [7, 8]);
  assert.equal(asBytes(null).length, 0);
  assert.equal(asBytes(undefined).length, 0);
  assert.throws(() => asBytes("abc"), TypeError);
});

test("asFloat32 reads little-endian float32, aligned or not", () => {
  const values = [0, 0.25, 1, -2.5, 3.125];
  const bytes = new Uint8Array(4 * values.length + 1);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setFloat32(1 + 4 * i, v, true));
  const unaligned = new DataView(bytes.buffer, 1, 4 * values.length);
  assert.deepEqual([...asFloat32(unaligned)], values);
  const aligned = new Uint8Array(bytes.slice(1));
  assert.deepEqual([...asFloat32(aligned, 5)], values);
  assert.throws(() => asFloat32(aligned, 4), RangeError);
  assert.throws(() => asFloat32(new Uint8Array(3)), RangeError);
});

test("asShape", () => {
  assert.deepEqual(asShape([7, 9]), [7, 9]);
  assert.deepEqual(asShape(null), [0, 0]);
  assert.deepEqual(asShape([]), [0, 0]);
  assert.deepEqual(asShape([-1, "3"]), [0, 3]);
});
