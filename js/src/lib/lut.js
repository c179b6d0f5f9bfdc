// Colormaps and compositing. The lookup tables come from Python (nbexplain.render.lut) through
// the `luts` trait, so the browser and the kernel colour a map identically; compositing mirrors
// nbexplain.render.overlay (a signed map weighted by its magnitude, gray as a spotlight).

/** The colormap that paints: "auto" is "bwr" for signed maps and "jet" otherwise. */
export function cmapName(cmap, signed) {
  return !cmap || cmap === "auto" ? (signed ? "bwr" : "jet") : cmap;
}

// The colormap drawn as a spotlight (render.SPOTLIGHT): the photo darkened where the map is low.
export const SPOTLIGHT = "gray";

/** The 256×3 table for `cmap` ("auto" = "bwr" for signed maps, "jet" otherwise). */
export function pickLut(luts, cmap, signed) {
  const name = cmapName(cmap, signed);
  const table = luts && luts[name];
  if (!table || table.length !== 768) {
    const fallback = luts && luts[signed ? "bwr" : "jet"];
    if (fallback && fallback.length === 768) return Uint8Array.from(fallback);
    return grayLut();
  }
  return Uint8Array.from(table);
}

export function grayLut() {
  const out = new Uint8Array(768);
  for (let i = 0; i < 256; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = i;
  return out;
}

/** The LUT index of a [0, 1] value, as nbexplain.render.colorize computes it. */
export function lutIndex(v) {
  if (!(v > 0)) return 0; // also NaN
  const i = Math.floor(v * 255 + 0.5);
  return i > 255 ? 255 : i;
}

/** RGB (H×W×3) of the map `values` through `lut`. */
export function colorize(values, lut) {
  const n = values.length;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const k = 3 * lutIndex(values[i]);
    out[3 * i] = lut[k];
    out[3 * i + 1] = lut[k + 1];
    out[3 * i + 2] = lut[k + 2];
  }
  return out;
}

export const MASK_COLOR = [255, 0, 255];
export const MASK_ALPHA = 0.5;

/**
 * Composite into `out` (RGBA, H×W×4): the image (RGBA) with `heat` (RGB or null) over it, then the
 * painted `mask` (uint8 weights or null) tinted on top. Alpha is opaque. Per channel, with the
 * heat's weight a = `weights[i]` when given (a signed map: render.signed_weight) or `opacity`:
 *   c = img*(1-a) + heat*a, or with `spotlight` c = img*(1-a) + img*(heat/255)*a (the photo dimmed
 *   where the map is low; without a picture the heat is blended as usual);
 * with a mask weight m: c = c*(1-k) + tint*k, k = m/255*MASK_ALPHA; stored as floor(c + 0.5).
 */
export function composite(out, image, heat, opacity, mask, weights = null, spotlight = false) {
  const n = out.length >> 2;
  const alpha = heat ? Math.min(1, Math.max(0, Number(opacity) || 0)) : 0;
  const dim = spotlight && !!image;
  const [mr, mg, mb] = MASK_COLOR;
  for (let i = 0; i < n; i++) {
    const p = 4 * i;
    let r = image ? image[p] : 0;
    let g = image ? image[p + 1] : 0;
    let bl = image ? image[p + 2] : 0;
    const a = heat && weights ? weights[i] : alpha;
    if (a > 0) {
      const q = 3 * i;
      const b = 1 - a;
      if (dim) {
        r = r * b + ((r * heat[q]) / 255) * a;
        g = g * b + ((g * heat[q + 1]) / 255) * a;
        bl = bl * b + ((bl * heat[q + 2]) / 255) * a;
      } else {
        r = r * b + heat[q] * a;
        g = g * b + heat[q + 1] * a;
        bl = bl * b + heat[q + 2] * a;
      }
    }
    const m = mask ? mask[i] : 0;
    if (m) {
      const k = (m / 255) * MASK_ALPHA;
      r = r * (1 - k) + mr * k;
      g = g * (1 - k) + mg * k;
      bl = bl * (1 - k) + mb * k;
    }
    out[p] = (r + 0.5) | 0; // round half up, the same for Uint8Array and Uint8ClampedArray
    out[p + 1] = (g + 0.5) | 0;
    out[p + 2] = (bl + 0.5) | 0;
    out[p + 3] = 255;
  }
  return out;
}
