// The map layer as the canvas paints it, step by step, shared by the canvas view and the tool
// that checks it against nbexplain.render.overlay (js/tools/composite.mjs): the raw values
// upsampled to the picture, put on their scale, coloured, and (a signed map) weighted.
import { upsampleBilinear } from "./bilinear.js";
import { colorize } from "./lut.js";
import { positions, signedWeight } from "./scale.js";

/** `raw` (h×w float32) at the picture's H×W: {heat: raw values, heat01: positions on the
 * scale [low, high], rgb: coloured through `lut`}. */
export function mapLayer(raw, h, w, H, W, scale, signed, lut) {
  const heat = h === H && w === W ? Float32Array.from(raw) : upsampleBilinear(raw, h, w, H, W);
  const heat01 = positions(heat, scale[0], scale[1], signed);
  return { heat, heat01, rgb: colorize(heat01, lut) };
}

/** Each pixel's opacity for a signed map (render.signed_weight at `opacity`). */
export function mapWeights(heat01, opacity) {
  return heat01.map((t) => signedWeight(t, opacity));
}
