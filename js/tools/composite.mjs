// Composites a map over a picture exactly as the canvas does (lib/layer.js, lib/lut.js) and
// formats numbers as its labels do (lib/scale.js), for the Python test that checks both against
// nbexplain.render. stdin: {"cases": [{H, W, image (RGBA list), raw (list), h, w, scale, signed,
// cmap, opacity, luts}], "numbers": [[v, digits]]}; stdout: {"pixels": [RGBA lists], "formatted": [...]}.
import { readFileSync } from "node:fs";
import { mapLayer, mapWeights } from "../src/lib/layer.js";
import { cmapName, composite, pickLut, SPOTLIGHT } from "../src/lib/lut.js";
import { formatG } from "../src/lib/scale.js";

const spec = JSON.parse(readFileSync(0, "utf8"));
const pixels = (spec.cases || []).map((c) => {
  const name = cmapName(c.cmap, c.signed);
  const lut = pickLut(c.luts, name, c.signed);
  const layer = mapLayer(Float32Array.from(c.raw), c.h, c.w, c.H, c.W, c.scale, c.signed, lut);
  const spotlight = name === SPOTLIGHT;
  const weights = c.signed && !spotlight ? mapWeights(layer.heat01, c.opacity) : null;
  const out = new Uint8ClampedArray(c.H * c.W * 4);
  composite(out, Uint8Array.from(c.image), layer.rgb, c.opacity, null, weights, spotlight);
  return Array.from(out);
});
const formatted = (spec.numbers || []).map(([v, digits]) => formatG(v, digits));
process.stdout.write(JSON.stringify({ pixels, formatted }));
