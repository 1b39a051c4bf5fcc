// Binary tensor data extension codecs: header parsing, body splitting, raw tensor decoding (views vs copies), outputs,
// and a remote's binary answer as the gateway passes it on.

import test from 'ava';
import type { ForwardedResponse } from '../../src/backends/backend.js';
import { decodeOutputs, parseInferenceResponse, replyFromRemote } from '../../src/backends/http-oip.js';
import type { ErrorCode } from '../../src/errors/codes.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import {
  binaryHeaderLength,
  binaryInputSlices,
  binaryOutputsOf,
  decodeBinaryData,
  encodeBinaryResponse,
  splitBinaryBody,
  tensorBytes,
} from '../../src/protocol/binary.js';
import type { Datatype, Tensor, TensorData } from '../../src/protocol/oip.js';
import { RawBody } from '../../src/protocol/binary.js';
import { validateInferRequest } from '../../src/protocol/validate.js';

/** A body: JSON part then raw parts; returns it and the header value. */
function binaryBody(json: unknown, ...raw: Uint8Array[]): { body: Buffer; header: number } {
  const head = Buffer.from(JSON.stringify(json));
  return { body: Buffer.concat([head, ...raw]), header: head.length };
}

const headerCase = test.macro((t, value: string | undefined, expected: number | undefined | RegExp) => {
  if (expected instanceof RegExp) {
    const err = t.throws(() => binaryHeaderLength(value), { instanceOf: GatewayError });
    t.is(err!.code, 'GW_ERR_INVALID_REQUEST');
    t.regex(err!.message, expected);
  } else {
    t.is(binaryHeaderLength(value), expected);
  }
});
test('header absent → plain JSON', headerCase, undefined, undefined);
test('header decimal', headerCase, '123', 123);
test('header zero parses (the split refuses it)', headerCase, '0', 0);
for (const bad of ['abc', '-1', '1.5', '0x10', '1e3', ' 12', '', '9999999999999999']) {
  test(`header ${JSON.stringify(bad)} is a 400`, headerCase, bad, /inference-header-content-length must be a non-negative integer/);
}

test('split: the JSON part is parsed and the rest is a view of the body (no copy)', (t) => {
  const { body, header } = binaryBody({ inputs: [] }, new Uint8Array([1, 2, 3]));
  const split = splitBinaryBody(body, header);
  t.deepEqual(split.json, { inputs: [] });
  t.deepEqual([...split.binary], [1, 2, 3]);
  t.is(split.binary.buffer, body.buffer);
});

const splitFails = test.macro((t, body: Buffer, header: number, code: ErrorCode, message: RegExp) => {
  const err = t.throws(() => splitBinaryBody(body, header), { instanceOf: GatewayError });
  t.is(err!.code, code);
  t.regex(err!.message, message);
});
test('split: header beyond the body', splitFails, Buffer.from('{}'), 10, 'GW_ERR_INVALID_REQUEST', /is 10, but the body has only 2 bytes/);
test('split: zero-length JSON part', splitFails, Buffer.from('{}'), 0, 'GW_ERR_BAD_JSON', /JSON part of the body is empty/);
test('split: JSON cut in the middle', splitFails, Buffer.from('{"inputs":[]}'), 5, 'GW_ERR_BAD_JSON', /first 5 bytes\) is not valid JSON/);

const slicesFail = test.macro((t, json: unknown, binaryLength: number, message: RegExp) => {
  const err = t.throws(() => binaryInputSlices(json, Buffer.alloc(binaryLength)), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_INVALID_REQUEST');
  t.regex(err!.message, message);
});
const sized = (name: string, size: unknown, extra: Record<string, unknown> = {}) => ({
  name,
  shape: [1],
  datatype: 'FP32',
  parameters: { binary_data_size: size },
  ...extra,
});
test('slices: trailing bytes', slicesFail, { inputs: [sized('a', 4)] }, 6, /2 bytes after the JSON part that no input/);
test('slices: binary data missing', slicesFail, { inputs: [sized('a', 4), sized('b', 4)] }, 4, /input 'b': parameters.binary_data_size is 4, but only 0 bytes/);
test('slices: non-numeric size', slicesFail, { inputs: [sized('a', '4')] }, 4, /binary_data_size must be a non-negative integer, got "4"/);
test('slices: negative size', slicesFail, { inputs: [sized('a', -4)] }, 0, /must be a non-negative integer/);
test('slices: data and binary size together', slicesFail, { inputs: [sized('a', 4, { data: [1] })] }, 4, /has both data and parameters.binary_data_size/);
test(
  'slices: bytes without any binary input',
  slicesFail,
  { inputs: [{ name: 'a', shape: [1], datatype: 'FP32', data: [1] }] },
  1,
  /1 bytes after the JSON part/,
);

test('slices follow the order of the inputs that carry binary_data_size, skipping JSON ones', (t) => {
  const json = { inputs: [sized('a', 2), { name: 'j', data: [1] }, sized('b', 3)] };
  const binary = Buffer.from([1, 2, 3, 4, 5]);
  const slices = binaryInputSlices(json, binary);
  t.deepEqual([...slices.keys()], [0, 2]);
  t.deepEqual([...slices.get(0)!], [1, 2]);
  t.deepEqual([...slices.get(2)!], [3, 4, 5]);
});

/** Typed data of each datatype and its little-endian bytes. */
const SAMPLES: { datatype: Datatype; data: TensorData }[] = [
  { datatype: 'FP32', data: new Float32Array([1.5, -2, NaN, Infinity]) },
  { datatype: 'FP64', data: new Float64Array([Math.PI, -0, 1e300, -1e-300]) },
  { datatype: 'FP16', data: new Uint16Array([0x3c00, 0xc000, 0x7c00, 0x0001]) },
  { datatype: 'INT8', data: new Int8Array([-128, 127, 0, -1]) },
  { datatype: 'UINT8', data: new Uint8Array([0, 255, 1, 2]) },
  { datatype: 'INT16', data: new Int16Array([-32768, 32767, 0, -1]) },
  { datatype: 'UINT16', data: new Uint16Array([0, 65535, 1, 2]) },
  { datatype: 'INT32', data: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1]) },
  { datatype: 'UINT32', data: new Uint32Array([0, 2 ** 32 - 1, 1, 2]) },
  // Beyond 2^53: binary carries 64-bit integers exactly, which JSON numbers cannot.
  { datatype: 'INT64', data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n, -1n]) },
  { datatype: 'UINT64', data: new BigUint64Array([0n, 2n ** 64n - 1n, 2n ** 53n + 1n, 2n]) },
  { datatype: 'BOOL', data: new Uint8Array([1, 0, 0, 1]) },
  { datatype: 'BYTES', data: ['', 'héllo', 'a\u0000b', 'x'.repeat(300)] },
];

const roundTrip = test.macro((t, sample: (typeof SAMPLES)[number], offset: number) => {
  const tensor: Tensor = { name: 'x', datatype: sample.datatype, shape: [2, 2], data: sample.data };
  const bytes = tensorBytes(tensor);
  // Place the bytes at `offset` inside a larger buffer, as they sit inside a request body after the JSON part.
  const host = Buffer.alloc(offset + bytes.byteLength + 3);
  host.set(bytes, offset);
  const slice = host.subarray(offset, offset + bytes.byteLength);
  const decoded = decodeBinaryData(sample.datatype, [2, 2], slice, "input 'x'");
  if (Array.isArray(sample.data)) t.deepEqual(decoded, sample.data);
  else {
    t.deepEqual(Array.from(decoded as Float32Array), Array.from(sample.data as Float32Array));
    t.is(decoded.constructor, sample.data.constructor);
    const width = (sample.data as Float32Array).BYTES_PER_ELEMENT;
    // Aligned data is a view of the body; unaligned data must be a copy (typed arrays cannot be unaligned).
    const aligned = (host.byteOffset + offset) % width === 0;
    t.is((decoded as Float32Array).buffer === host.buffer, aligned);
  }
});
for (const s of SAMPLES) {
  test(`${s.datatype}: bytes round-trip, aligned`, roundTrip, s, 8);
  test(`${s.datatype}: bytes round-trip, unaligned`, roundTrip, s, 3);
}

const decodeFails = test.macro((t, datatype: Datatype, shape: number[], bytes: number[], message: RegExp) => {
  const err = t.throws(() => decodeBinaryData(datatype, shape, Buffer.from(bytes), "input 'x'"), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_INVALID_REQUEST');
  t.regex(err!.message, message);
});
test(
  'size not matching shape × width',
  decodeFails,
  'FP32',
  [2, 2],
  [0, 0, 0, 0],
  /binary_data_size is 4, expected 16 \(4 elements of shape \[2,2\] × 4 bytes for FP32\)/,
);
test('BOOL byte other than 0/1', decodeFails, 'BOOL', [2], [1, 2], /BOOL element 1 is byte 2, expected 0 or 1/);
test('BYTES length beyond the data', decodeFails, 'BYTES', [1], [9, 0, 0, 0, 65], /BYTES element 0 declares 9 bytes, but only 1 remain/);
test('BYTES data ends inside a length', decodeFails, 'BYTES', [2], [1, 0, 0, 0, 65, 1, 0], /ends inside the length of element 1/);
test('BYTES trailing bytes', decodeFails, 'BYTES', [1], [1, 0, 0, 0, 65, 0], /1 bytes of binary data remain after the 1 BYTES elements/);

const outputsCase = test.macro((t, json: unknown, expected: 'all' | string[] | undefined) => {
  const got = binaryOutputsOf(json);
  t.deepEqual(got instanceof Set ? [...got] : got, expected);
});
test('no binary output requested', outputsCase, { inputs: [] }, undefined);
test('request-level binary_data_output', outputsCase, { parameters: { binary_data_output: true } }, 'all');
test('per-output binary_data', outputsCase, { outputs: [{ name: 'a', parameters: { binary_data: true } }, { name: 'b' }] }, ['a']);
test(
  'request-level with listed outputs, one opting out',
  outputsCase,
  { parameters: { binary_data_output: true }, outputs: [{ name: 'a' }, { name: 'b', parameters: { binary_data: false } }] },
  ['a'],
);

test('binary response: JSON part names the sizes, tensors follow uncopied in output order, JSON outputs stay JSON', (t) => {
  const a: Tensor = { name: 'a', datatype: 'FP32', shape: [2], data: new Float32Array([1, 2]) };
  const b: Tensor = { name: 'b', datatype: 'INT64', shape: [1], data: new BigInt64Array([7n]) };
  const c: Tensor = { name: 'c', datatype: 'BYTES', shape: [1], data: ['hi'] };
  const encoded = encodeBinaryResponse({ model_name: 'm', model_version: '1' }, [a, b, c], new Set(['a', 'c']));
  const json = JSON.parse(Buffer.from(encoded.chunks[0]!).toString()) as { outputs: Record<string, unknown>[] };
  t.is(encoded.jsonLength, encoded.chunks[0]!.byteLength);
  t.deepEqual(json.outputs, [
    { name: 'a', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } },
    { name: 'b', datatype: 'INT64', shape: [1], data: [7] },
    { name: 'c', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 6 } },
  ]);
  t.is(encoded.chunks[1]!.buffer, (a.data as Float32Array).buffer);
  t.deepEqual([...encoded.chunks[2]!], [2, 0, 0, 0, 104, 105]);
});

test('validation takes binary inputs through externalData and still checks names, datatypes and shapes first', (t) => {
  const meta = { name: 'm', inputs: [{ name: 'x', datatype: 'FP32' as const, shape: [-1, 2] }], outputs: [] };
  const { body, header } = binaryBody({ inputs: [sized('x', 8, { shape: [1, 2] })] }, new Uint8Array(new Float32Array([3, 4]).buffer));
  const split = splitBinaryBody(body, header);
  const slices = binaryInputSlices(split.json, split.binary);
  const externalData = (i: number, input: { datatype: Datatype; shape: number[]; where: string }) => {
    const bytes = slices.get(i);
    return bytes && decodeBinaryData(input.datatype, input.shape, bytes, input.where);
  };
  const request = validateInferRequest(split.json, meta, { externalData });
  t.deepEqual(Array.from(request.inputs[0]!.data as Float32Array), [3, 4]);
  const wrongShape = { inputs: [sized('x', 8, { shape: [1, 3] })] };
  t.throws(() => validateInferRequest(wrongShape, meta, { externalData }), { message: /dimension 1 must be 2/ });
});

// ---------------------------------------------------------------------------------------------------------------
// A remote's binary answer, as the gateway passes it on.

function remoteBinary(json: Record<string, unknown>, raw: Uint8Array, header?: string): ForwardedResponse {
  const head = Buffer.from(JSON.stringify(json));
  return {
    status: 200,
    headers: { 'inference-header-content-length': header ?? String(head.length), 'content-type': 'application/octet-stream' },
    body: Buffer.concat([head, raw]),
  };
}

test('a remote binary answer: names rewritten in the JSON part, header recomputed, tensor bytes passed as a view', (t) => {
  const raw = new Uint8Array(new Float32Array([1, 2]).buffer);
  const res = remoteBinary(
    { model_name: 'remote-name', model_version: '7', outputs: [{ name: 'y', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }] },
    raw,
  );
  const reply = replyFromRemote(res, { model: 'flowers', version: '2' }, 'model flowers version 2');
  t.true(reply.body instanceof RawBody);
  // The names are spliced into the remote's JSON part (never re-encoded from a parse); the tensors follow, uncopied.
  const chunks = (reply.body as RawBody).chunks;
  const head = Buffer.concat(chunks.slice(0, -1));
  const tensors = chunks[chunks.length - 1]!;
  t.like(JSON.parse(head.toString()), { model_name: 'flowers', model_version: '2' });
  t.is(reply.headers['inference-header-content-length'], String(head.byteLength));
  t.is(tensors.buffer, res.body.buffer);
  const outputs = decodeOutputs(reply.json!, 'model flowers version 2', reply.binary);
  t.deepEqual(Array.from(outputs[0]!.data as Float32Array), [1, 2]);
});

const remoteFails = test.macro((t, res: ForwardedResponse, decode: boolean, message: RegExp) => {
  const label = 'model flowers version 2';
  const err = t.throws(
    () => {
      const reply = replyFromRemote(res, { model: 'flowers', version: '2' }, label, { parse: decode });
      if (decode) decodeOutputs(reply.json!, label, reply.binary);
    },
    { instanceOf: GatewayError },
  );
  t.is(err!.code, 'GW_ERR_BAD_GATEWAY');
  t.regex(err!.message, message);
});
const out8 = { outputs: [{ name: 'y', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }] };
test('remote: header beyond its body', remoteFails, remoteBinary(out8, new Uint8Array(8), '9999'), false, /invalid inference-header-content-length/);
test('remote: non-numeric header', remoteFails, remoteBinary(out8, new Uint8Array(8), 'x'), false, /invalid inference-header-content-length/);
test(
  'remote: sizes beyond the bytes (decoded for a shadow)',
  remoteFails,
  remoteBinary(out8, new Uint8Array(4)),
  true,
  /binary_data_size 8 does not fit the 4 bytes left/,
);
test(
  'remote: trailing bytes (decoded for a shadow)',
  remoteFails,
  remoteBinary(out8, new Uint8Array(12)),
  true,
  /4 bytes of binary data no output accounts for/,
);
test('a binary answer to a JSON tensor call is refused', (t) => {
  const err = t.throws(() => parseInferenceResponse(remoteBinary(out8, new Uint8Array(8)), 'l'), { instanceOf: GatewayError });
  t.regex(err!.message, /binary tensor response to a request that asked for JSON/);
});
