// Brush and patch rasterization. nbexplain/widgets/raster.py implements the same integer
// algorithm, so the mask painted here and the kernel's copy agree pixel for pixel:
// - points are integer input-pixel coordinates (the pixel under the cursor);
// - a stroke is a polyline; each segment p[i] -> p[i+1] is walked with Bresenham's algorithm
//   (always in stroke order) and a disc is stamped at every pixel visited; a one-point stroke
//   stamps one disc;
// - a disc of radius r covers the offsets (dx, dy) with dx*dx + dy*dy <= r*r + r;
// - painting writes 255, erasing writes 0; stamps are clipped to the image.

/** Integer pixel under a pointer: client coords -> input pixels through the element's rect. */
export function toPixel(clientX, clientY, rect, W, H) {
  const fx = rect.width > 0 ? (clientX - rect.left) / rect.width : 0;
  const fy = rect.height > 0 ? (clientY - rect.top) / rect.height : 0;
  const x = Math.min(W - 1, Math.max(0, Math.floor(fx * W)));
  const y = Math.min(H - 1, Math.max(0, Math.floor(fy * H)));
  return [x, y];
}

/** Pixels of the Bresenham line from (x0, y0) to (x1, y1), both ends included. */
export function bresenham(x0, y0, x1, y1) {
  const points = [];
  const dx = Math.abs(x1 - x0);
  const sx = x0 < x1 ? 1 : -1;
  const dy = -Math.abs(y1 - y0);
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    points.push([x0, y0]);
    if (x0 === x1 && y0 === y1) break;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
  return points;
}

const discCache = new Map();

/** Row half-widths of a disc of radius r: span[dy + r] = max |dx| with dx²+dy² <= r²+r. */
export function discSpans(r) {
  r = Math.max(0, Math.floor(r));
  let spans = discCache.get(r);
  if (!spans) {
    spans = new Int32Array(2 * r + 1);
    const limit = r * r + r;
    for (let dy = -r; dy <= r; dy++) {
      let half = 0;
      while ((half + 1) * (half + 1) + dy * dy <= limit) half++;
      spans[dy + r] = half;
    }
    discCache.set(r, spans);
  }
  return spans;
}

/** Stamp a disc of radius r at (x, y) into `mask` (W×H uint8) with `value`. */
export function stampDisc(mask, W, H, x, y, r, value) {
  r = Math.max(0, Math.floor(r));
  const spans = discSpans(r);
  for (let dy = -r; dy <= r; dy++) {
    const yy = y + dy;
    if (yy < 0 || yy >= H) continue;
    const half = spans[dy + r];
    const from = Math.max(0, x - half);
    const to = Math.min(W - 1, x + half);
    if (from > to) continue;
    mask.fill(value, yy * W + from, yy * W + to + 1);
  }
}

/** Paint the polyline `points` ([[x, y], ...]) with discs of radius r; returns the mask. */
export function paintStroke(mask, W, H, points, r, value) {
  if (!points.length) return mask;
  if (points.length === 1) {
    stampDisc(mask, W, H, points[0][0], points[0][1], r, value);
    return mask;
  }
  for (let i = 0; i + 1 < points.length; i++) {
    const [x0, y0] = points[i];
    const [x1, y1] = points[i + 1];
    for (const [x, y] of bresenham(x0, y0, x1, y1)) stampDisc(mask, W, H, x, y, r, value);
  }
  return mask;
}

/** The square patch of side `size` centred at (x, y), clipped: [x0, y0, x1, y1) or null. */
export function squareBounds(x, y, size, W, H) {
  size = Math.max(1, Math.floor(size));
  const x0 = x - Math.floor(size / 2);
  const y0 = y - Math.floor(size / 2);
  const bx0 = Math.max(0, x0);
  const by0 = Math.max(0, y0);
  const bx1 = Math.min(W, x0 + size);
  const by1 = Math.min(H, y0 + size);
  if (bx0 >= bx1 || by0 >= by1) return null;
  return [bx0, by0, bx1, by1];
}
