// OIP JSON bodies written exactly: 64-bit integers as their own digits (beyond 2^53 too, as Triton writes them), and
// NaN/±Infinity, which JSON cannot carry, refused with a clear 422 instead of becoming `null` in a 200 answer.

import { GatewayError } from '../errors/gateway-error.js';
import { halfToFloat } from './fp16.js';
import { isTensorDataFor } from './tensor.js';
import type { Tensor } from './oip.js';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = LITTLE_ENDIAN ? 1 : 0;
const TWO_32 = 2 ** 32;
/** |hi word| below this: the 64-bit value is a safe integer (|v| < 2^53). */
const SAFE_HI = 2 ** 21;

/** Where a tensor sits, for messages: `output 'probabilities'`. */
export type TensorRole = 'input' | 'output';

function notRepresentable(t: Tensor, role: TensorRole, index: number, value: number): GatewayError {
  return new GatewayError(
    'GW_ERR_NOT_REPRESENTABLE_IN_JSON',
    `${role} '${t.name}' element ${index} is ${String(value)}, which JSON cannot carry; ask for binary tensor data ` +
      `(parameters.binary_data_output: true, or the output's parameters.binary_data: true) to receive it exactly`,
  );
}

/** True when a 64-bit tensor holds a value beyond ±(2^53 − 1), which a JS number cannot hold exactly. */
function hasUnsafeInt64(data: BigInt64Array | BigUint64Array): boolean {
  const words = new Uint32Array(data.buffer, data.byteOffset, data.length * 2);
  const signed = data instanceof BigInt64Array;
  for (let i = 0; i < data.length; i++) {
    const hiWord = words[2 * i + HI] as number;
    const hi = signed ? hiWord | 0 : hiWord;
    if (hi >= SAFE_HI || hi < -SAFE_HI) return true;
  }
  return false;
}

/**
 * The JSON text of a tensor's flat `data` array: BOOL as true/false, FP16 widened, 64-bit integers exact (their
 * decimal digits when beyond 2^53), BYTES as strings. A float that is NaN or ±Infinity throws
 * GW_ERR_NOT_REPRESENTABLE_IN_JSON (422): the OIP JSON schema allows only numbers there, and `null` would be a silent
 * change of the answer.
 */
export function tensorDataJson(t: Tensor, role: TensorRole): string {
  const data = t.data;
  if (!isTensorDataFor(t.datatype, data)) {
    const held = Array.isArray(data) ? 'an array' : `a ${data.constructor.name}`;
    throw new GatewayError('GW_ERR_INTERNAL', `${role} '${t.name}': ${t.datatype} data held in ${held}`);
  }
  if (Array.isArray(data)) return JSON.stringify(data);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    // Exact either way; digits per element (a BigInt each) only when some value needs them.
    if (hasUnsafeInt64(data)) return `[${data.join(',')}]`;
    // All safe: read the two words instead of materialising a BigInt per element (hi * 2^32 + lo is exact here).
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length * 2);
    const signed = data instanceof BigInt64Array;
    const out = new Array<number>(data.length);
    for (let i = 0; i < data.length; i++) {
      const hiWord = words[2 * i + HI] as number;
      out[i] = (signed ? hiWord | 0 : hiWord) * TWO_32 + (words[2 * i + LO] as number);
    }
    return JSON.stringify(out);
  }
  const n = data.length;
  if (t.datatype === 'BOOL') {
    const out = new Array<boolean>(n);
    for (let i = 0; i < n; i++) out[i] = data[i] !== 0;
    return JSON.stringify(out);
  }
  if (t.datatype === 'FP16') {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = halfToFloat(data[i] as number);
    return finiteJson(out, t, role);
  }
  if (data instanceof Float32Array || data instanceof Float64Array) return finiteJson(data, t, role);
  // Integers: a typed array's join writes each as JSON would, without a boxed copy of the tensor.
  return `[${data.join(',')}]`;
}

/**
 * Finite floats as a JSON array. The typed array's own join writes each element exactly as JSON.stringify would write
 * it as a number (shortest round-trip digits, `1e-7` style exponents) without a boxed copy of a large tensor.
 */
function finiteJson(data: Float32Array | Float64Array, t: Tensor, role: TensorRole): string {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v - v !== 0) throw notRepresentable(t, role, i, v); // NaN and ±Infinity: v - v is NaN
  }
  return `[${data.join(',')}]`;
}

/** A tensor entry of an OIP message: its JSON fields (name, datatype, shape, parameters) and, if it has data, the tensor. */
export interface TensorEntry {
  readonly fields: Readonly<Record<string, unknown>>;
  readonly data?: Tensor;
}

/**
 * The JSON text of an OIP message: the members of `head`, then `key` (`inputs` or `outputs`) as the list of entries
 * with each tensor's `data` written by tensorDataJson, then the members of `tail`. JSON.stringify writes everything
 * else, so strings are escaped exactly as everywhere in the gateway.
 */
export function oipMessageJson(
  head: Readonly<Record<string, unknown>>,
  key: 'inputs' | 'outputs',
  entries: readonly TensorEntry[],
  tail: Readonly<Record<string, unknown>> = {},
): string {
  const role: TensorRole = key === 'inputs' ? 'input' : 'output';
  const list = entries.map((e) => {
    const fields = JSON.stringify(e.fields);
    if (e.data === undefined) return fields;
    const data = `"data":${tensorDataJson(e.data, role)}`;
    return fields === '{}' ? `{${data}}` : `${fields.slice(0, -1)},${data}}`;
  });
  const members = [JSON.stringify(head).slice(1, -1), `${JSON.stringify(key)}:[${list.join(',')}]`, JSON.stringify(tail).slice(1, -1)];
  return `{${members.filter((m) => m !== '').join(',')}}`;
}
