// Tests for the OIP datatype codecs: decoding/encoding every datatype, FP16 conversion, flattening nested data.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { Datatype, TensorData } from '../../src/protocol/oip.js';
import { decodeJsonData, elementCount, encodeJsonData, flattenData, floatToHalf, halfToFloat } from '../../src/protocol/tensor.js';

const W = "input 'x'";
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const FLT_MAX = 3.4028234663852886e38;

function expect400(t: import('ava').ExecutionContext, fn: () => unknown, message: string): void {
  const err = t.throws(fn, { instanceOf: GatewayError });
  t.is(err?.code, 'GW_ERR_INVALID_REQUEST');
  t.is(err?.status, 400);
  t.is(err?.message, message);
}

test('elementCount multiplies dimensions; a scalar has one element', (t) => {
  t.is(elementCount([]), 1);
  t.is(elementCount([7]), 7);
  t.is(elementCount([2, 3, 4]), 24);
  t.is(elementCount([5, 0, 3]), 0);
});

// --- decoding valid values -----------------------------------------------------------------------------------

const decodes = test.macro({
  exec(t, datatype: Datatype, flat: unknown[], expected: TensorData) {
    t.deepEqual(decodeJsonData(datatype, flat, W), expected);
  },
  title: (provided, datatype: Datatype) => provided ?? `decodes valid ${datatype}`,
});

test(decodes, 'BOOL', [true, false, true], new Uint8Array([1, 0, 1]));
test(decodes, 'UINT8', [0, 1, 255], new Uint8Array([0, 1, 255]));
test(decodes, 'UINT16', [0, 65535], new Uint16Array([0, 65535]));
test(decodes, 'UINT32', [0, 4294967295], new Uint32Array([0, 4294967295]));
test(decodes, 'INT8', [-128, 0, 127], new Int8Array([-128, 0, 127]));
test(decodes, 'INT16', [-32768, 32767], new Int16Array([-32768, 32767]));
test(decodes, 'INT32', [-2147483648, 2147483647], new Int32Array([-2147483648, 2147483647]));
test(
  decodes,
  'INT64',
  [0, -1, 4294967295, 4294967296, -4294967296, -4294967297, 123456789012345, MAX_SAFE, -MAX_SAFE],
  new BigInt64Array([0n, -1n, 4294967295n, 4294967296n, -4294967296n, -4294967297n, 123456789012345n, 2n ** 53n - 1n, -(2n ** 53n - 1n)]),
);
test(decodes, 'UINT64', [0, 4294967296, MAX_SAFE], new BigUint64Array([0n, 4294967296n, 2n ** 53n - 1n]));
test(decodes, 'FP16', [0, 1, -2, 65504, 65519, 0.1], new Uint16Array([0x0000, 0x3c00, 0xc000, 0x7bff, 0x7bff, 0x2e66]));
test(decodes, 'FP32', [0.5, -1.25, FLT_MAX, 3.4028235e38, 1e-50], new Float32Array([0.5, -1.25, FLT_MAX, FLT_MAX, 0]));
test(decodes, 'FP64', [0.1, -1e308, 5e-324], new Float64Array([0.1, -1e308, 5e-324]));
test(decodes, 'BYTES', ['a', '', 'héllo'], ['a', '', 'héllo']);
test('FP32 values are rounded to float32', decodes, 'FP32', [0.1], new Float32Array([Math.fround(0.1)]));
test('an empty tensor decodes to an empty array', decodes, 'FP32', [], new Float32Array(0));

// --- decoding invalid values ---------------------------------------------------------------------------------

const rejects = test.macro({
  exec(t, datatype: Datatype, flat: unknown[], message: string) {
    expect400(t, () => decodeJsonData(datatype, flat, W), message);
  },
  title: (provided, datatype: Datatype, flat: unknown[]) =>
    provided ?? `rejects ${datatype} [${flat.map((v) => (typeof v === 'number' ? String(v) : JSON.stringify(v))).join(',')}]`,
});

const I64_RANGE = '(INT64; larger 64-bit values cannot be represented exactly in JSON numbers)';
const U64_RANGE = '(UINT64; larger 64-bit values cannot be represented exactly in JSON numbers)';
test(rejects, 'BOOL', [true, 1], `${W}: element 1 is 1, expected a boolean (BOOL)`);
test(rejects, 'BOOL', ['true'], `${W}: element 0 is "true", expected a boolean (BOOL)`);
test(rejects, 'BOOL', [null], `${W}: element 0 is null, expected a boolean (BOOL)`);
test(rejects, 'UINT8', [255, 256], `${W}: element 1 is 256, expected an integer from 0 to 255 (UINT8)`);
test(rejects, 'UINT8', [-1], `${W}: element 0 is -1, expected an integer from 0 to 255 (UINT8)`);
test(rejects, 'UINT8', [1.5], `${W}: element 0 is 1.5, expected an integer (UINT8)`);
test(rejects, 'UINT8', ['1'], `${W}: element 0 is "1", expected an integer (UINT8)`);
test(rejects, 'UINT16', [65536], `${W}: element 0 is 65536, expected an integer from 0 to 65535 (UINT16)`);
test(rejects, 'UINT32', [4294967296], `${W}: element 0 is 4294967296, expected an integer from 0 to 4294967295 (UINT32)`);
test(rejects, 'UINT32', [-1], `${W}: element 0 is -1, expected an integer from 0 to 4294967295 (UINT32)`);
test(rejects, 'INT8', [127, 128], `${W}: element 1 is 128, expected an integer from -128 to 127 (INT8)`);
test(rejects, 'INT8', [-129], `${W}: element 0 is -129, expected an integer from -128 to 127 (INT8)`);
test(rejects, 'INT16', [-32769], `${W}: element 0 is -32769, expected an integer from -32768 to 32767 (INT16)`);
test(rejects, 'INT32', [2147483648], `${W}: element 0 is 2147483648, expected an integer from -2147483648 to 2147483647 (INT32)`);
test(rejects, 'INT32', [0.5], `${W}: element 0 is 0.5, expected an integer (INT32)`);
test(rejects, 'INT32', [true], `${W}: element 0 is true, expected an integer (INT32)`);
test(rejects, 'INT64', [2 ** 53], `${W}: element 0 is 9007199254740992, expected an integer from -(2^53-1) to 2^53-1 ${I64_RANGE}`);
test(rejects, 'INT64', [-(2 ** 53)], `${W}: element 0 is -9007199254740992, expected an integer from -(2^53-1) to 2^53-1 ${I64_RANGE}`);
test(rejects, 'INT64', [1e20], `${W}: element 0 is 100000000000000000000, expected an integer from -(2^53-1) to 2^53-1 ${I64_RANGE}`);
test(rejects, 'INT64', [2.5], `${W}: element 0 is 2.5, expected an integer (INT64)`);
test(rejects, 'INT64', ['9007199254740993'], `${W}: element 0 is "9007199254740993", expected an integer (INT64)`);
test(rejects, 'UINT64', [-1], `${W}: element 0 is -1, expected an integer from 0 to 2^53-1 ${U64_RANGE}`);
test(rejects, 'UINT64', [2 ** 53], `${W}: element 0 is 9007199254740992, expected an integer from 0 to 2^53-1 ${U64_RANGE}`);
test(rejects, 'FP16', [65520], `${W}: element 0 is 65520, out of range for FP16 (max magnitude 65504)`);
test(rejects, 'FP16', [-1e5], `${W}: element 0 is -100000, out of range for FP16 (max magnitude 65504)`);
test(rejects, 'FP16', ['1'], `${W}: element 0 is "1", expected a number (FP16)`);
test(rejects, 'FP16', [Infinity], `${W}: element 0 is Infinity, expected a finite number (FP16)`);
test(rejects, 'FP32', [1, 2, 3, 'a'], `${W}: element 3 is "a", expected a number (FP32)`);
test(rejects, 'FP32', [3.5e38], `${W}: element 0 is 3.5e+38, out of range for FP32 (max magnitude 3.4028234663852886e+38)`);
test(rejects, 'FP32', [-1e39], `${W}: element 0 is -1e+39, out of range for FP32 (max magnitude 3.4028234663852886e+38)`);
test(rejects, 'FP32', [NaN], `${W}: element 0 is NaN, expected a finite number (FP32)`);
test(rejects, 'FP32', [null], `${W}: element 0 is null, expected a number (FP32)`);
test(rejects, 'FP32', [[1]], `${W}: element 0 is an array, expected a number (FP32)`);
test(rejects, 'FP32', [{}], `${W}: element 0 is an object, expected a number (FP32)`);
test(rejects, 'FP64', [false], `${W}: element 0 is false, expected a number (FP64)`);
test(rejects, 'FP64', [-Infinity], `${W}: element 0 is -Infinity, expected a finite number (FP64)`);
test(rejects, 'BYTES', ['ok', 5], `${W}: element 1 is 5, expected a string (BYTES)`);
test('long strings are truncated in messages', rejects, 'FP32', ['x'.repeat(1000)], `${W}: element 0 is "${'x'.repeat(32)}…", expected a number (FP32)`);

test('FP32 accepts values that round to FLT_MAX and rejects the first that rounds to Infinity', (t) => {
  const limit = 2 ** 128 - 2 ** 103; // half-way between FLT_MAX and 2^128
  const below = limit - 2 ** 75; // next double below the limit
  t.deepEqual(decodeJsonData('FP32', [below], W), new Float32Array([FLT_MAX]));
  t.throws(() => decodeJsonData('FP32', [limit], W), { instanceOf: GatewayError });
});

// --- FP16 ----------------------------------------------------------------------------------------------------

const toHalf = test.macro({
  exec(t, value: number, bits: number) {
    t.is(floatToHalf(value), bits);
  },
  title: (provided, value: number, bits: number) => provided ?? `floatToHalf(${Object.is(value, -0) ? '-0' : value}) = 0x${bits.toString(16)}`,
});

test(toHalf, 0, 0x0000);
test(toHalf, -0, 0x8000);
test(toHalf, 1, 0x3c00);
test(toHalf, -2, 0xc000);
test(toHalf, 0.1, 0x2e66);
test(toHalf, 1 / 3, 0x3555);
test(toHalf, 65504, 0x7bff);
test(toHalf, 65519.99, 0x7bff);
test(toHalf, 65520, 0x7c00);
test(toHalf, Infinity, 0x7c00);
test(toHalf, -Infinity, 0xfc00);
test(toHalf, -1e6, 0xfc00);
test(toHalf, NaN, 0x7e00);
test('smallest normal', toHalf, 2 ** -14, 0x0400);
test('smallest subnormal', toHalf, 2 ** -24, 0x0001);
test('largest subnormal', toHalf, 1023 * 2 ** -24, 0x03ff);
test('subnormal tie rounds to the even smallest normal', toHalf, 1023.5 * 2 ** -24, 0x0400);
test('half the smallest subnormal ties to even zero', toHalf, 2 ** -25, 0x0000);
test('just above half the smallest subnormal rounds up', toHalf, 2 ** -25 * (1 + 2 ** -20), 0x0001);
test('subnormal tie 1.5 ulp rounds to even 2', toHalf, 3 * 2 ** -25, 0x0002);
test('underflow keeps the sign', toHalf, -1e-10, 0x8000);
test('normal tie rounds down to even', toHalf, 1 + 2 ** -11, 0x3c00);
test('normal tie rounds up to even', toHalf, 1 + 3 * 2 ** -11, 0x3c02);
test('just above a tie rounds up (no double rounding through float32)', toHalf, 1 + 2 ** -11 + 2 ** -40, 0x3c01);
test('rounding carries into the exponent', toHalf, 2 - 2 ** -12, 0x4000);

const fromHalf = test.macro({
  exec(t, bits: number, value: number) {
    t.true(Object.is(halfToFloat(bits), value), `halfToFloat(0x${bits.toString(16)}) = ${halfToFloat(bits)}`);
  },
  title: (provided, bits: number, value: number) => provided ?? `halfToFloat(0x${bits.toString(16)}) = ${Object.is(value, -0) ? '-0' : value}`,
});

test(fromHalf, 0x0000, 0);
test(fromHalf, 0x8000, -0);
test(fromHalf, 0x0001, 2 ** -24);
test(fromHalf, 0x03ff, 1023 * 2 ** -24);
test(fromHalf, 0x0400, 2 ** -14);
test(fromHalf, 0x3c00, 1);
test(fromHalf, 0x3555, 0.333251953125);
test(fromHalf, 0xc000, -2);
test(fromHalf, 0x7bff, 65504);
test(fromHalf, 0x7c00, Infinity);
test(fromHalf, 0xfc00, -Infinity);
test(fromHalf, 0x7e00, NaN);
test(fromHalf, 0xfd01, NaN);

test('values next to powers of two (where Math.log2 is inexact) convert correctly', (t) => {
  for (let k = -13; k <= 15; k++) {
    const bits = (k + 15) << 10;
    t.is(floatToHalf(2 ** k * (1 - 2 ** -53)), bits, `just below 2^${k}`);
    t.is(floatToHalf(2 ** k), bits, `2^${k}`);
    t.is(floatToHalf(2 ** k * (1 + 2 ** -52)), bits, `just above 2^${k}`);
    t.is(floatToHalf(2 ** k * (1 + 2 ** -10)), bits + 1, `2^${k} + 1 ulp`);
  }
});

test('every FP16 bit pattern round-trips through a number', (t) => {
  let failures = 0;
  for (let bits = 0; bits < 0x10000; bits++) {
    const value = halfToFloat(bits);
    const back = floatToHalf(value);
    if (Number.isNaN(value) ? back !== 0x7e00 : back !== bits) failures++;
  }
  t.is(failures, 0);
});

test('floatToHalf matches a brute-force nearest-even search on random values and ties', (t) => {
  // All finite non-negative halves in increasing order (bits 0..0x7bff are monotonic).
  const values = Array.from({ length: 0x7c00 }, (_, b) => halfToFloat(b));
  const reference = (x: number): number => {
    let lo = 0;
    let hi = values.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((values[mid] as number) <= x) lo = mid;
      else hi = mid - 1;
    }
    if (lo === values.length - 1) return lo; // x in [65504, 65520)
    const dLo = x - (values[lo] as number);
    const dHi = (values[lo + 1] as number) - x;
    if (dLo < dHi) return lo;
    if (dHi < dLo) return lo + 1;
    return lo % 2 === 0 ? lo : lo + 1;
  };
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  let mismatches = 0;
  for (let i = 0; i < 20000; i++) {
    const b = Math.floor(rand() * 0x7bff);
    const a = values[b] as number;
    const c = values[b + 1] as number;
    const tie = (a + c) / 2;
    for (const x of [a + (c - a) * rand(), tie, tie * (1 + 2 ** -45), tie * (1 - 2 ** -45), 65504 * rand() ** 8]) {
      if (floatToHalf(x) !== reference(x) || floatToHalf(-x) !== (reference(x) | 0x8000)) mismatches++;
    }
  }
  t.is(mismatches, 0);
});

// --- flattening ----------------------------------------------------------------------------------------------

test('nested and flat data are equivalent', (t) => {
  t.deepEqual(
    flattenData(
      [
        [1, 2],
        [4, 5],
      ],
      [2, 2],
      W,
    ),
    [1, 2, 4, 5],
  );
  t.deepEqual(flattenData([1, 2, 4, 5], [2, 2], W), [1, 2, 4, 5]);
  t.deepEqual(
    decodeJsonData(
      'FP32',
      flattenData(
        [
          [1, 2],
          [4, 5],
        ],
        [2, 2],
        W,
      ),
      W,
    ),
    decodeJsonData('FP32', flattenData([1, 2, 4, 5], [2, 2], W), W),
  );
});

test('flattens three-dimensional data row-major', (t) => {
  const data = [
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    [
      [7, 8, 9],
      [10, 11, 12],
    ],
  ];
  t.deepEqual(flattenData(data, [2, 2, 3], W), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

test('flat data is returned without copying', (t) => {
  const flat = [1, 2, 3, 4, 5, 6];
  t.is(flattenData(flat, [2, 3], W), flat);
});

test('scalars, empty tensors and zero-sized dimensions', (t) => {
  t.deepEqual(flattenData([7], [], W), [7]);
  t.deepEqual(flattenData([], [0, 3], W), []);
  t.deepEqual(flattenData([[], []], [2, 0], W), []);
});

const badData = test.macro({
  exec(t, data: unknown, shape: number[], message: string) {
    expect400(t, () => flattenData(data, shape, W), message);
  },
  title: (provided, data: unknown, shape: number[]) => provided ?? `rejects data ${JSON.stringify(data)} for shape ${JSON.stringify(shape)}`,
});

test(badData, 5, [1], `${W}: data must be an array, got 5`);
test(badData, { a: 1 }, [1], `${W}: data must be an array, got an object`);
test(badData, [1, 2, 3], [2, 2], `${W}: data has 3 elements, expected 4 (the element count of shape [2,2])`);
test(badData, [], [], `${W}: data has 0 elements, expected 1 (the element count of shape [])`);
test(badData, [[1, 2]], [2, 2], `${W}: data has 1 element, expected 2 (dimension 0 of shape [2,2])`);
test(badData, [[1, 2], [3]], [2, 2], `${W}: data[1] has 1 element, expected 2 (dimension 1 of shape [2,2])`);
test(badData, [[1, 2], 3], [2, 2], `${W}: data[1] is 3, expected an array of 2 (dimension 1 of shape [2,2])`);
test(
  badData,
  [
    [
      [1, 2],
      [3, 4],
    ],
    [[5, 6], [7]],
  ],
  [2, 2, 2],
  `${W}: data[1][1] has 1 element, expected 2 (dimension 2 of shape [2,2,2])`,
);
test(
  badData,
  [
    [[1], [2]],
    [[3], [4]],
  ],
  [2, 2],
  `${W}: data[0][0] is an array, but shape [2,2] has only 2 dimensions`,
);
test(badData, [[1], [2]], [2], `${W}: data[0] is an array, but shape [2] has only 1 dimension`);
test(badData, [[1, 2, 3, 4]], [4], `${W}: data has 1 element, expected 4 (dimension 0 of shape [4])`);

test('a 100k-deep nested body gives a 400, not a stack overflow', (t) => {
  const body = JSON.parse(`${'['.repeat(100_000)}1${']'.repeat(100_000)}`) as unknown;
  expect400(t, () => flattenData(body, [1, 1], W), `${W}: data[0][0] is an array, but shape [1,1] has only 2 dimensions`);
  const err = t.throws(() => decodeJsonData('FP32', flattenData(body, [1], W), W), { instanceOf: GatewayError });
  t.is(err?.status, 400);
});

test('deep nesting that matches a deep shape is walked without recursion', (t) => {
  let data: unknown = [42];
  for (let i = 1; i < 100_000; i++) data = [data];
  const shape = new Array<number>(100_000).fill(1);
  t.deepEqual(flattenData(data, shape, W), [42]);
});

// --- encoding ------------------------------------------------------------------------------------------------

const encodes = test.macro({
  exec(t, datatype: Datatype, data: TensorData, expected: (number | boolean | string)[]) {
    t.deepEqual(encodeJsonData({ name: 'y', datatype, shape: [data.length], data }), expected);
  },
  title: (provided, datatype: Datatype) => provided ?? `encodes ${datatype}`,
});

test(encodes, 'BOOL', new Uint8Array([1, 0, 1]), [true, false, true]);
test(encodes, 'UINT8', new Uint8Array([0, 255]), [0, 255]);
test(encodes, 'UINT16', new Uint16Array([65535]), [65535]);
test(encodes, 'UINT32', new Uint32Array([4294967295]), [4294967295]);
test(encodes, 'INT8', new Int8Array([-128, 127]), [-128, 127]);
test(encodes, 'INT16', new Int16Array([-32768]), [-32768]);
test(encodes, 'INT32', new Int32Array([-2147483648, 7]), [-2147483648, 7]);
test(encodes, 'INT64', new BigInt64Array([0n, -1n, 4294967296n, -4294967297n, 2n ** 53n - 1n, -(2n ** 63n)]), [
  0,
  -1,
  4294967296,
  -4294967297,
  MAX_SAFE,
  -(2 ** 63),
]);
test(encodes, 'UINT64', new BigUint64Array([4294967295n, 2n ** 53n - 1n, 2n ** 64n - 1n]), [4294967295, MAX_SAFE, 2 ** 64]);
test(encodes, 'FP16', new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7bff]), [1, -2, 0.333251953125, 65504]);
test(encodes, 'FP32', new Float32Array([0.5, 0.1]), [0.5, Math.fround(0.1)]);
test(encodes, 'FP64', new Float64Array([0.1, -1e308]), [0.1, -1e308]);
test(encodes, 'BYTES', ['a', 'b'], ['a', 'b']);

test('decode then encode round-trips every datatype', (t) => {
  const cases: [Datatype, unknown[]][] = [
    ['BOOL', [true, false]],
    ['UINT8', [0, 255]],
    ['UINT16', [0, 65535]],
    ['UINT32', [0, 4294967295]],
    ['UINT64', [0, MAX_SAFE]],
    ['INT8', [-128, 127]],
    ['INT16', [-32768, 32767]],
    ['INT32', [-2147483648, 2147483647]],
    ['INT64', [-MAX_SAFE, -4294967297, 0, MAX_SAFE]],
    ['FP16', [0.5, -65504, 2 ** -24]],
    ['FP32', [0.5, -1.25, Math.fround(1e30)]],
    ['FP64', [0.1, 1e-300]],
    ['BYTES', ['x', '']],
  ];
  for (const [datatype, values] of cases) {
    const data = decodeJsonData(datatype, values, W);
    t.deepEqual(encodeJsonData({ name: 'y', datatype, shape: [values.length], data }), values, datatype);
  }
});

test('encoding data of the wrong representation is an internal error', (t) => {
  const err = t.throws(() => encodeJsonData({ name: 'y', datatype: 'FP32', shape: [1], data: new Float64Array([1]) }), {
    instanceOf: GatewayError,
  });
  t.is(err?.code, 'GW_ERR_INTERNAL');
  t.is(err?.message, "output 'y': FP32 data held in a Float64Array, expected Float32Array");
});

test('a Buffer is accepted as UINT8 data', (t) => {
  t.deepEqual(encodeJsonData({ name: 'y', datatype: 'UINT8', shape: [2], data: Buffer.from([3, 4]) }), [3, 4]);
});

// --- hot path (speed is measured by bench scripts, not asserted here) ----------------------------------------

test('a 150k-element flat FP32 tensor decodes to the exact float32 values', (t) => {
  const flat = Array.from({ length: 150_000 }, (_, i) => i / 7);
  const out = decodeJsonData('FP32', flattenData(flat, [1, 150_000], W), W);
  t.true(out instanceof Float32Array);
  t.is(out.length, 150_000);
  t.is((out as Float32Array)[149_999], Math.fround(149_999 / 7));
});
