// Bilinear upsampling with half-pixel centres (PIL's BILINEAR and torch's align_corners=False
// when enlarging): output pixel (X, Y) samples the source at ((X+0.5)*w/W - 0.5, ...), clamped.

function axisWeights(size, outSize) {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const frac = new Float32Array(outSize);
  const scale = size / outSize;
  for (let i = 0; i < outSize; i++) {
    let s = (i + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    if (s > size - 1) s = size - 1;
    const l = Math.floor(s);
    lo[i] = l;
    hi[i] = Math.min(l + 1, size - 1);
    frac[i] = s - l;
  }
  return { lo, hi, frac };
}

/** `src` (h×w, row-major) resampled to H×W; returns a new Float32Array. */
export function upsampleBilinear(src, h, w, H, W) {
  if (src.length !== h * w) throw new RangeError(`source has ${src.length} values, not ${h}×${w}`);
  const out = new Float32Array(H * W);
  if (h === 0 || w === 0 || H === 0 || W === 0) return out;
  const xs = axisWeights(w, W);
  const ys = axisWeights(h, H);
  for (let Y = 0; Y < H; Y++) {
    const r0 = ys.lo[Y] * w;
    const r1 = ys.hi[Y] * w;
    const fy = ys.frac[Y];
    const row = Y * W;
    for (let X = 0; X < W; X++) {
      const x0 = xs.lo[X];
      const x1 = xs.hi[X];
      const fx = xs.frac[X];
      const top = src[r0 + x0] + (src[r0 + x1] - src[r0 + x0]) * fx;
      const bottom = src[r1 + x0] + (src[r1 + x1] - src[r1 + x0]) * fx;
      out[row + X] = top + (bottom - top) * fy;
    }
  }
  return out;
}
