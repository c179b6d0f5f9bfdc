// Bytes from the kernel -> typed arrays. ipywidgets hands binary traits to the front-end as a
// DataView; other hosts may give an ArrayBuffer, a typed array or a plain array of numbers.

/** The bytes of `value` as a Uint8Array (a view, no copy, when possible). */
export function asBytes(value) {
  if (value == null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return Uint8Array.from(value);
  throw new TypeError(`cannot read bytes from ${Object.prototype.toString.call(value)}`);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Little-endian float32 values from `value` (bytes); `count` checks the length when given. */
export function asFloat32(value, count) {
  const bytes = asBytes(value);
  if (bytes.byteLength % 4 !== 0) throw new RangeError(`float32 data of ${bytes.byteLength} bytes`);
  const n = bytes.byteLength / 4;
  if (count !== undefined && n !== count) throw new RangeError(`expected ${count} float32 values, got ${n}`);
  if (LITTLE_ENDIAN) {
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    return new Float32Array(bytes.slice().buffer);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** [h, w] from a shape trait (list or tuple of two ints); [0, 0] when missing. */
export function asShape(value) {
  if (!value || value.length < 2) return [0, 0];
  const h = Math.max(0, Math.floor(Number(value[0]) || 0));
  const w = Math.max(0, Math.floor(Number(value[1]) || 0));
  return [h, w];
}
