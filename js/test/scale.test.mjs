import { test } from "node:test";
import assert from "node:assert/strict";
import { asScale, formatG, formatReading, position, positions, signedWeight } from "../src/lib/scale.js";
import { legendText } from "../src/canvas/legend.js";

test("position: (v - low) / (high - low), clipped, as MapValues.normalized", () => {
  assert.equal(position(0.5, 0, 2, false), 0.25);
  assert.equal(position(-3, -2, 2, true), 0); // beyond the ends: clipped
  assert.equal(position(3, -2, 2, true), 1);
  assert.equal(position(0, -2, 2, true), 0.5); // zero in the middle of a signed scale
  assert.equal(position(Number.NaN, 0, 1, false), 0);
  assert.equal(position(7, 1, 1, true), 0.5); // an empty scale: the middle (signed) or the start
  assert.equal(position(7, 1, 1, false), 0);
  assert.deepEqual([...positions(Float32Array.from([-0.1, 0.05, 0.1]), -0.1, 0.1, true)], [0, 0.75, 1]);
});

test("asScale reads [low, high] and falls back to [0, 1]", () => {
  assert.deepEqual(asScale([-0.5, 2]), [-0.5, 2]);
  assert.deepEqual(asScale(undefined), [0, 1]);
  assert.deepEqual(asScale([0, "x"]), [0, 1]);
});

test("signedWeight: zero shows the photo; the ends are opaque at opacity 0.5", () => {
  assert.equal(signedWeight(0.5, 0.5), 0);
  assert.equal(signedWeight(1, 0.5), 1);
  assert.equal(signedWeight(0, 0.5), 1);
  assert.equal(signedWeight(0.625, 0.5), 0.5); // a quarter of the way out: sqrt(0.25)
  assert.equal(signedWeight(0.625, 1), 1);
  assert.equal(signedWeight(1, 0.25), 0.5);
  assert.equal(signedWeight(1, 0), 0);
});

test("formatG is Python's format(v, '.Ng')", () => {
  const cases = [
    [0, 3, "0"], [1, 3, "1"], [-1, 3, "-1"], [0.25, 4, "0.25"], [0.0956184, 3, "0.0956"],
    [3.7240819, 3, "3.72"], [-3.889e-7, 3, "-3.89e-07"], [123456, 3, "1.23e+05"], [999.6, 3, "1e+03"],
    [9.9996, 4, "10"], [0.0001, 3, "0.0001"], [0.00001234, 3, "1.23e-05"], [100, 3, "100"],
    [1000, 3, "1e+03"], [12.5, 4, "12.5"], [-0.5, 1, "-0.5"], [Number.NaN, 3, "nan"],
    [Number.POSITIVE_INFINITY, 3, "inf"],
  ];
  for (const [v, digits, text] of cases) assert.equal(formatG(v, digits), text, `${v} .${digits}g`);
});

test("formatReading: the raw value with 4 digits, + on signed maps, then the unit", () => {
  assert.equal(formatReading(0.012345, true, "logit drop when hidden"), "+0.01235 logit drop when hidden");
  assert.equal(formatReading(-1.5, true, "logit share"), "-1.5 logit share");
  assert.equal(formatReading(0.25, false, ""), "0.25");
  assert.equal(formatReading(0, true, "relevance"), "0 relevance");
});

test("legendText says what the colours mean", () => {
  assert.equal(legendText("relevance", true, "bwr"), "relevance · signed: zero shows the photo");
  assert.equal(legendText("Grad-CAM", false, "jet"), "Grad-CAM");
  assert.match(legendText("", false, "gray"), /^spotlight/);
});

test("mapLayer upsamples the raw values, puts them on the scale and colours them; mapWeights weights them", async () => {
  const { mapLayer, mapWeights } = await import("../src/lib/layer.js");
  const lut = new Uint8Array(768).map((_, i) => Math.floor(i / 3));
  const layer = mapLayer(Float32Array.from([-4, 4]), 1, 2, 1, 4, [-2, 2], true, lut);
  assert.deepEqual([...layer.heat], [-4, -2, 2, 4]); // raw values at the picture's size
  assert.deepEqual([...layer.heat01], [0, 0, 1, 1]); // clipped at the scale's ends
  assert.deepEqual([...layer.rgb.slice(0, 3)], [0, 0, 0]);
  assert.deepEqual([...mapWeights(Float32Array.from([0.5, 0.625, 1]), 0.5)], [0, 0.5, 1]);
});
