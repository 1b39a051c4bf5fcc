// FP16 <-> double, and the float overflow bounds the decoders check against. Converting directly from double (not
// via Math.fround) avoids double rounding: a value just above a half-way point must not first round down to the tie
// in float32 and then tie-to-even the wrong way.

/** POW2[k + 40] === 2^k for k in -40..40, built by exact doubling/halving. */
const POW2: number[] = (() => {
  const t = new Array<number>(81);
  t[40] = 1;
  for (let k = 1; k <= 40; k++) {
    t[40 + k] = (t[39 + k] as number) * 2;
    t[40 - k] = (t[41 - k] as number) / 2;
  }
  return t;
})();
function pow2(k: number): number {
  return POW2[k + 40] as number;
}

/** Round a non-negative number below 2^52 to the nearest integer, ties to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact: x < 2^52
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Smallest magnitude that rounds to +Infinity in FP16: half-way between 65504 and 2^16 (ties go to the even 2^16). */
export const FP16_OVERFLOW = 65520;
/** Smallest magnitude that rounds to +Infinity in FP32: 2^128 - 2^103 (half-way between FLT_MAX and 2^128). */
export const FP32_OVERFLOW = 2 ** 128 - 2 ** 103;

/** IEEE 754 half bits → number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * pow2(-24); // ±0 and subnormals
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1024 + frac) * pow2(exp - 25);
}

/**
 * number → IEEE 754 half bits, round-to-nearest-even. Magnitudes ≥ 65520 give ±Infinity (0x7c00/0xfc00), NaN gives
 * the quiet NaN 0x7e00, and -0 keeps its sign. Callers that must reject overflow check FP16_OVERFLOW first.
 */
export function floatToHalf(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const a = Math.abs(value);
  if (a >= FP16_OVERFLOW) return sign | 0x7c00;
  if (a < pow2(-14)) {
    // Subnormal range: units of 2^-24. Rounding up to 1024 lands exactly on the smallest normal (0x0400).
    return sign | roundHalfEven(a * pow2(24));
  }
  // Normal: a = m * 2^e with m in [1,2). log2 can be off by one next to powers of two, so correct it exactly.
  let e = Math.floor(Math.log2(a));
  if (pow2(e) > a) e--;
  else if (pow2(e + 1) <= a) e++;
  const m = roundHalfEven(a * pow2(10 - e)); // in [1024, 2048]; scaling by 2^k is exact
  // m === 2048 carries into the exponent, which the addition does by itself.
  return sign | (((e + 15) << 10) + (m - 1024));
}
