// A map's colour scale, as nbexplain.engine.maps.MapValues defines it: the kernel sends the raw
// values (in the method's unit) and the raw values at the scale's two ends, [low, high]; a value
// sits on the scale at (v - low) / (high - low), clipped to [0, 1]. The readout and the colour
// bar's labels print raw values the way Python's format(v, ".Ng") does, so both sides agree.

/** [low, high] from a scale trait; [0, 1] when it is missing or not two finite numbers. */
export function asScale(value) {
  const low = value && Number(value[0]);
  const high = value && Number(value[1]);
  return Number.isFinite(low) && Number.isFinite(high) ? [low, high] : [0, 1];
}

/** Where `v` sits on the scale [low, high], in [0, 1] (MapValues.normalized); an empty scale
 * puts everything at its middle (signed) or its start. */
export function position(v, low, high, signed) {
  const span = high - low;
  if (!(span > 0)) return signed ? 0.5 : 0;
  const t = (v - low) / span;
  if (!(t > 0)) return 0; // also NaN, as render.colorize reads it
  return t < 1 ? t : 1;
}

/** The scale positions of every value of `values` (a new Float32Array). */
export function positions(values, low, high, signed) {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = position(values[i], low, high, signed);
  return out;
}

/**
 * How opaque a signed map is where it sits at `t` on its scale (nbexplain.render.signed_weight):
 * 0 at zero (the photo shows, no white wash), min(1, 2·opacity·sqrt(|2t − 1|)) elsewhere, so at
 * the default opacity 0.5 the scale's ends show their colour-bar colour and weak values fade.
 */
export function signedWeight(t, opacity) {
  const w = 2 * opacity * Math.sqrt(Math.abs(2 * t - 1));
  return w < 1 ? w : 1;
}

/** Python's format(v, `.${digits}g`): `digits` significant digits, trailing zeros dropped,
 * an exponent (e-05, e+06) below 1e-4 or from 10**digits up. */
export function formatG(v, digits = 3) {
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  const [mantissa, exp] = exponential(v, digits).split("e");
  const e = Number(exp);
  const trim = (s) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
  if (e < -4 || e >= digits) {
    const sign = e < 0 ? "-" : "+";
    return `${trim(mantissa)}e${sign}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  const [m] = mantissa.split(".");
  const places = Math.max(0, digits - 1 - e);
  const scaled = mantissa.replace(".", "").replace("-", "");
  const int = e >= 0 ? scaled.slice(0, e + 1).padEnd(e + 1, "0") : "0";
  const frac = e >= 0 ? scaled.slice(e + 1) : "0".repeat(-e - 1) + scaled;
  const text = places ? `${int}.${frac.padEnd(places, "0").slice(0, places)}` : int;
  return trim(m.startsWith("-") ? `-${text}` : text);
}

/** v.toExponential(digits - 1), but an exact tie rounds half to even, as Python does (JS rounds
 * it up: 0.015625 is 1.563e-2 there, 1.562e-2 in Python). */
function exponential(v, digits) {
  const rounded = v.toExponential(digits - 1);
  const [long, exp] = Math.abs(v).toExponential(Math.min(100, digits + 30)).split("e");
  const all = long.replace(".", "");
  const tie = all[digits] === "5" && /^0*$/.test(all.slice(digits + 1));
  if (!tie || Number(all[digits - 1]) % 2 === 1) return rounded;
  const kept = all.slice(0, digits);
  const body = kept.length > 1 ? `${kept[0]}.${kept.slice(1)}` : kept;
  return `${v < 0 ? "-" : ""}${body}e${exp}`;
}

/** The hover readout's value: 4 significant digits, "+" on positive values of a signed map,
 * then the unit. */
export function formatReading(v, signed, unit) {
  const text = formatG(v, 4);
  const sign = signed && v > 0 ? "+" : "";
  return unit ? `${sign}${text} ${unit}` : `${sign}${text}`;
}
