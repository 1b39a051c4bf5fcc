// Datatype codecs for OIP JSON tensor data: flattening nested data, strict per-datatype decoding, response encoding.

import { GatewayError } from '../errors/gateway-error.js';
import { floatToHalf, FP16_OVERFLOW, FP32_OVERFLOW, halfToFloat } from './fp16.js';
import type { Datatype, Tensor, TensorData } from './oip.js';

export { floatToHalf, halfToFloat } from './fp16.js';

function invalid(message: string): GatewayError {
  return new GatewayError('GW_ERR_INVALID_REQUEST', message);
}

/** Number of elements of a tensor with this shape (1 for a scalar `[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `[2,-1,4]`; long shapes are cut so a hostile body cannot blow up an error message. */
export function formatShape(shape: readonly unknown[]): string {
  const head = shape.length > 16 ? [...shape.slice(0, 16), `…(${shape.length} dims)`] : shape;
  return `[${head.map(String).join(',')}]`;
}

/** Short, safe rendering of a JSON value for error messages (strings quoted and truncated). */
export function describeJson(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 32 ? `${value.slice(0, 32)}…` : value);
  if (value === null) return 'null';
  if (value === undefined) return 'missing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Flattening. Nested data is walked level by level (breadth-first), so the work and the depth are bounded by the
// shape's rank, never by how deeply a hostile body nests its brackets, and nothing recurses.

/** Index path of the j-th array at `level` (row-major), e.g. `data[1][0]`, for error messages. */
function pathOf(j: number, level: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = level - 1; d >= 0; d--) {
    const dim = shape[d] as number;
    idx.push(j % dim);
    j = Math.floor(j / dim);
  }
  return `data${idx
    .reverse()
    .map((i) => `[${i}]`)
    .join('')}`;
}

const CONCAT_CHUNK = 4096; // arguments per concat call, far below V8's limit on spread arguments

/**
 * Concatenates the rows of one level (each of length `dim`). One row is returned as is (the common `[[...row]]`
 * batch of one); long rows go through Array#concat, which copies in bulk (several times faster than an element
 * loop), merged in bounded chunks and rounds so the argument count stays small and no element is copied more than a
 * few times.
 */
function concatAll(arrays: unknown[][], dim: number): unknown[] {
  if (dim < 32 && arrays.length > 1) {
    // Many short rows: per-call overhead of concat dominates, a plain loop is faster.
    const out: unknown[] = [];
    for (const arr of arrays) for (let i = 0; i < dim; i++) out.push(arr[i]);
    return out;
  }
  let parts = arrays;
  while (parts.length > 1) {
    const merged: unknown[][] = [];
    for (let j = 0; j < parts.length; j += CONCAT_CHUNK) merged.push(([] as unknown[]).concat(...parts.slice(j, j + CONCAT_CHUNK)));
    parts = merged;
  }
  return parts[0] ?? [];
}

/**
 * Flat (`[1,2,3,4]`) or nested row-major (`[[1,2],[3,4]]`) data → its leaf values as runs: the innermost arrays in
 * row-major order (flat data is one run, as is). Data whose first element is an array is treated as nested and must
 * match `shape` exactly; otherwise it is flat and its length must be the element count. Nothing is copied: leaf values
 * are checked later, by the decoder that reads the runs straight into the tensor's typed array.
 */
export function leafRuns(data: unknown, shape: readonly number[], where: string): unknown[][] {
  if (!Array.isArray(data)) throw invalid(`${where}: data must be an array, got ${describeJson(data)}`);
  const rank = shape.length;
  if (rank === 0 || !Array.isArray(data[0])) {
    const n = elementCount(shape);
    if (data.length !== n) {
      throw invalid(`${where}: data has ${plural(data.length, 'element')}, expected ${n} (the element count of shape ${formatShape(shape)})`);
    }
    return [data];
  }
  let level: unknown[] = [data];
  for (let d = 0; d < rank; d++) {
    const dim = shape[d] as number;
    // Check every array of this level before allocating the next one, so a huge declared shape with small data
    // fails without allocating.
    for (let j = 0; j < level.length; j++) {
      const arr = level[j];
      if (!Array.isArray(arr)) {
        throw invalid(`${where}: ${pathOf(j, d, shape)} is ${describeJson(arr)}, expected an array of ${dim} (dimension ${d} of shape ${formatShape(shape)})`);
      }
      if (arr.length !== dim) {
        throw invalid(`${where}: ${pathOf(j, d, shape)} has ${plural(arr.length, 'element')}, expected ${dim} (dimension ${d} of shape ${formatShape(shape)})`);
      }
    }
    // The innermost arrays are the runs: their elements are leaves, which must not be arrays.
    if (d === rank - 1) {
      for (let j = 0; j < level.length; j++) {
        const run = level[j] as unknown[];
        for (let i = 0; i < dim; i++) {
          if (Array.isArray(run[i])) {
            throw invalid(`${where}: ${pathOf(j * dim + i, rank, shape)} is an array, but shape ${formatShape(shape)} has only ${plural(rank, 'dimension')}`);
          }
        }
      }
      return level as unknown[][];
    }
    level = concatAll(level as unknown[][], dim);
  }
  return [];
}

/** The leaf values of `data` as one flat array (see leafRuns). */
export function flattenData(data: unknown, shape: readonly number[], where: string): unknown[] {
  const runs = leafRuns(data, shape, where);
  return runs.length === 1 ? runs[0]! : concatAll(runs, shape[shape.length - 1] as number);
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding. One tight loop per datatype family; the error message is only built on the (cold) failure path.

type SmallIntArray = Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array;

function elementError(where: string, i: number, v: unknown, expected: string): GatewayError {
  return invalid(`${where}: element ${i} is ${describeJson(v)}, expected ${expected}`);
}

function intError(where: string, i: number, v: unknown, datatype: Datatype, min: number, max: number): GatewayError {
  if (typeof v !== 'number' || !Number.isInteger(v)) return elementError(where, i, v, `an integer (${datatype})`);
  return elementError(where, i, v, `an integer from ${min} to ${max} (${datatype})`);
}

/** Runs of leaf values (see leafRuns): each decoder below walks them in order, `i` counting across runs. */
type Runs = readonly (readonly unknown[])[];

function decodeSmallInt<T extends SmallIntArray>(out: T, runs: Runs, datatype: Datatype, min: number, max: number, where: string): T {
  let i = 0;
  for (const run of runs) {
    for (let r = 0; r < run.length; r++, i++) {
      const v = run[r];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw intError(where, i, v, datatype, min, max);
      out[i] = v;
    }
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = LITTLE_ENDIAN ? 1 : 0;
const TWO_32 = 2 ** 32;

/**
 * INT64/UINT64 from JSON numbers. Only safe integers are exact in a JSON number (a parser has already rounded
 * 2^53+1 to 2^53), so anything beyond ±(2^53-1) is rejected rather than silently changed. The two 32-bit words are
 * written through a Uint32Array view: no BigInt is allocated per element.
 */
function decodeInt64(runs: Runs, n: number, unsigned: boolean, where: string): BigInt64Array | BigUint64Array {
  const out = unsigned ? new BigUint64Array(n) : new BigInt64Array(n);
  const words = new Uint32Array(out.buffer);
  const datatype = unsigned ? 'UINT64' : 'INT64';
  let i = 0;
  for (const run of runs) {
    for (let r = 0; r < run.length; r++, i++) {
      const v = run[r];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || (unsigned && v < 0)) {
        if (typeof v !== 'number' || !Number.isInteger(v)) throw elementError(where, i, v, `an integer (${datatype})`);
        const range = unsigned ? 'from 0 to 2^53-1' : 'from -(2^53-1) to 2^53-1';
        throw elementError(where, i, v, `an integer ${range} (${datatype}; larger 64-bit values cannot be represented exactly in JSON numbers)`);
      }
      const hi = Math.floor(v / TWO_32); // two's complement: v = hi * 2^32 + lo with lo in [0, 2^32)
      words[2 * i + LO] = v - hi * TWO_32;
      words[2 * i + HI] = hi >>> 0;
    }
  }
  return out;
}

function decodeFloat(runs: Runs, n: number, double: boolean, where: string): Float32Array | Float64Array {
  const out = double ? new Float64Array(n) : new Float32Array(n);
  const limit = double ? Infinity : FP32_OVERFLOW;
  let i = 0;
  for (const run of runs) {
    for (let r = 0; r < run.length; r++, i++) {
      const v = run[r];
      // `!(|v| < limit)` also rejects NaN and ±Infinity in one comparison.
      if (typeof v !== 'number' || !(Math.abs(v) < limit)) throw floatError(where, i, v, double ? 'FP64' : 'FP32');
      out[i] = v;
    }
  }
  return out;
}

function floatError(where: string, i: number, v: unknown, datatype: Datatype): GatewayError {
  if (typeof v !== 'number') return elementError(where, i, v, `a number (${datatype})`);
  if (!Number.isFinite(v)) return elementError(where, i, v, `a finite number (${datatype})`);
  const max = datatype === 'FP16' ? '65504' : '3.4028234663852886e+38';
  return invalid(`${where}: element ${i} is ${describeJson(v)}, out of range for ${datatype} (max magnitude ${max})`);
}

function decodeHalf(runs: Runs, n: number, where: string): Uint16Array {
  const out = new Uint16Array(n);
  let i = 0;
  for (const run of runs) {
    for (let r = 0; r < run.length; r++, i++) {
      const v = run[r];
      if (typeof v !== 'number' || !(Math.abs(v) < FP16_OVERFLOW)) throw floatError(where, i, v, 'FP16');
      out[i] = floatToHalf(v);
    }
  }
  return out;
}

function decodeBool(runs: Runs, n: number, where: string): Uint8Array {
  const out = new Uint8Array(n);
  let i = 0;
  for (const run of runs) {
    for (let r = 0; r < run.length; r++, i++) {
      const v = run[r];
      if (typeof v !== 'boolean') throw elementError(where, i, v, 'a boolean (BOOL)');
      out[i] = v ? 1 : 0;
    }
  }
  return out;
}

function decodeBytes(runs: Runs, n: number, where: string): string[] {
  const out = new Array<string>(n);
  let i = 0;
  for (const run of runs) {
    for (let r = 0; r < run.length; r++, i++) {
      const v = run[r];
      if (typeof v !== 'string') throw elementError(where, i, v, 'a string (BYTES)');
      out[i] = v;
    }
  }
  return out;
}

/**
 * Flat JSON values → the in-memory representation of `datatype` (see TensorData in oip.ts). Every element is
 * checked strictly; the first bad one gives a 400 naming `where`, its index and what was expected.
 */
export function decodeJsonData(datatype: Datatype, flat: unknown[], where: string): TensorData {
  return decodeRuns(datatype, [flat], flat.length, where);
}

/**
 * Flat or nested JSON `data` of `shape` → the tensor's typed representation, read in one pass from the nested arrays
 * (no flat copy of a large tensor: the only allocation is the result). Shape errors and element errors as above.
 */
export function decodeJsonTensor(datatype: Datatype, data: unknown, shape: readonly number[], where: string): TensorData {
  return decodeRuns(datatype, leafRuns(data, shape, where), elementCount(shape), where);
}

function decodeRuns(datatype: Datatype, runs: Runs, n: number, where: string): TensorData {
  switch (datatype) {
    case 'BOOL':
      return decodeBool(runs, n, where);
    case 'UINT8':
      return decodeSmallInt(new Uint8Array(n), runs, datatype, 0, 0xff, where);
    case 'UINT16':
      return decodeSmallInt(new Uint16Array(n), runs, datatype, 0, 0xffff, where);
    case 'UINT32':
      return decodeSmallInt(new Uint32Array(n), runs, datatype, 0, 0xffffffff, where);
    case 'INT8':
      return decodeSmallInt(new Int8Array(n), runs, datatype, -0x80, 0x7f, where);
    case 'INT16':
      return decodeSmallInt(new Int16Array(n), runs, datatype, -0x8000, 0x7fff, where);
    case 'INT32':
      return decodeSmallInt(new Int32Array(n), runs, datatype, -0x80000000, 0x7fffffff, where);
    case 'UINT64':
      return decodeInt64(runs, n, true, where);
    case 'INT64':
      return decodeInt64(runs, n, false, where);
    case 'FP16':
      return decodeHalf(runs, n, where);
    case 'FP32':
      return decodeFloat(runs, n, false, where);
    case 'FP64':
      return decodeFloat(runs, n, true, where);
    case 'BYTES':
      return decodeBytes(runs, n, where);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding (responses). A tensor whose data does not have its datatype's representation is a backend bug: 500.

// Typed-array classes by datatype; instanceof (not constructor.name) so that e.g. a Buffer passes as a Uint8Array.
const REPRESENTATION: Record<Datatype, { name: string; is: (d: TensorData) => boolean }> = {
  BOOL: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array },
  UINT8: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array },
  UINT16: { name: 'Uint16Array', is: (d) => d instanceof Uint16Array },
  UINT32: { name: 'Uint32Array', is: (d) => d instanceof Uint32Array },
  UINT64: { name: 'BigUint64Array', is: (d) => d instanceof BigUint64Array },
  INT8: { name: 'Int8Array', is: (d) => d instanceof Int8Array },
  INT16: { name: 'Int16Array', is: (d) => d instanceof Int16Array },
  INT32: { name: 'Int32Array', is: (d) => d instanceof Int32Array },
  INT64: { name: 'BigInt64Array', is: (d) => d instanceof BigInt64Array },
  FP16: { name: 'Uint16Array', is: (d) => d instanceof Uint16Array },
  FP32: { name: 'Float32Array', is: (d) => d instanceof Float32Array },
  FP64: { name: 'Float64Array', is: (d) => d instanceof Float64Array },
  BYTES: { name: 'string[]', is: (d) => Array.isArray(d) },
};

/** True when `data` has the in-memory representation oip.ts specifies for `datatype`. */
export function isTensorDataFor(datatype: Datatype, data: TensorData): boolean {
  return REPRESENTATION[datatype].is(data);
}

/**
 * A decoded tensor → flat JSON values: BOOL → true/false, FP16 → number, 64-bit integers → number (exact up to
 * ±2^53, correctly rounded beyond). Note that JSON.stringify turns NaN/±Infinity floats into null.
 */
export function encodeJsonData(t: Tensor): (number | boolean | string)[] {
  const data = t.data;
  if (!isTensorDataFor(t.datatype, data)) {
    const held = Array.isArray(data) ? 'an array' : `a ${data.constructor.name}`;
    throw new GatewayError('GW_ERR_INTERNAL', `output '${t.name}': ${t.datatype} data held in ${held}, expected ${REPRESENTATION[t.datatype].name}`);
  }
  if (Array.isArray(data)) return data.slice();
  const n = data.length;
  const out = new Array<number | boolean>(n);
  if (t.datatype === 'BOOL') {
    for (let i = 0; i < n; i++) out[i] = data[i] !== 0;
  } else if (t.datatype === 'FP16') {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(data[i] as number);
  } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    // Read the two words instead of materialising a BigInt per element; hi * 2^32 is exact, the sum rounds once.
    const words = new Uint32Array(data.buffer, data.byteOffset, n * 2);
    const signed = data instanceof BigInt64Array;
    for (let i = 0; i < n; i++) {
      const hiWord = words[2 * i + HI] as number;
      const hi = signed ? hiWord | 0 : hiWord;
      out[i] = hi * TWO_32 + (words[2 * i + LO] as number);
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = data[i] as number;
  }
  return out;
}
