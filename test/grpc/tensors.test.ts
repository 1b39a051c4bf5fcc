// gRPC tensor conversion: raw and typed contents both ways for every datatype (through real protobuf encoding), exact
// 64-bit values, NaN/±Inf in raw floats, FP16 raw only, and every malformed form with its message.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { grpcServices, type ModelInferRequestMessage, type ModelInferResponseMessage } from '../../src/protocol/grpc-protos.js';
import {
  contentsToData,
  dataToContents,
  inferRequestMessage,
  inferResponseMessage,
  outputsFromResponse,
  parametersFromMessage,
  parametersToMessage,
  parseInferRequest,
  rawToData,
} from '../../src/protocol/grpc-tensors.js';
import type { Datatype, Tensor, TensorData } from '../../src/protocol/oip.js';
import { validateInferRequest, type ModelSignature } from '../../src/protocol/validate.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Two elements of every datatype, chosen at the edges of their ranges. */
const SAMPLES: Record<Datatype, TensorData> = {
  BOOL: new Uint8Array([1, 0]),
  UINT8: new Uint8Array([0, 255]),
  UINT16: new Uint16Array([0, 65535]),
  UINT32: new Uint32Array([0, 4294967295]),
  UINT64: new BigUint64Array([2n ** 53n + 1n, UINT64_MAX]),
  INT8: new Int8Array([-128, 127]),
  INT16: new Int16Array([-32768, 32767]),
  INT32: new Int32Array([-2147483648, 2147483647]),
  INT64: new BigInt64Array([INT64_MIN, INT64_MAX]),
  FP16: new Uint16Array([0x3c00, 0x7e00]),
  FP32: new Float32Array([1.1, -3.4028234663852886e38]),
  FP64: new Float64Array([Math.PI, -Number.MIN_VALUE]),
  BYTES: ['héllo', ''],
};

const tensor = (datatype: Datatype, data: TensorData = SAMPLES[datatype], shape = [1, 2]): Tensor => ({ name: `t_${datatype}`, datatype, shape, data });
const fail = (message: string) => new GatewayError('GW_ERR_BAD_GATEWAY', message);
const plain = (data: TensorData) => (Array.isArray(data) ? data : Array.from(data as ArrayLike<number | bigint>));

/** Encodes and decodes with the real service definition (proto-loader options as the server uses them). */
function overTheWire(message: ModelInferRequestMessage): ModelInferRequestMessage {
  const method = grpcServices().inference.ModelInfer!;
  return method.requestDeserialize(method.requestSerialize(message)) as ModelInferRequestMessage;
}
function responseOverTheWire(message: ModelInferResponseMessage): ModelInferResponseMessage {
  const method = grpcServices().inference.ModelInfer!;
  return method.responseDeserialize(method.responseSerialize(message)) as ModelInferResponseMessage;
}

for (const datatype of Object.keys(SAMPLES) as Datatype[]) {
  test(`${datatype}: raw contents round trip through protobuf, bit for bit`, (t) => {
    const t0 = tensor(datatype);
    const message = overTheWire(inferRequestMessage({ inputs: [t0] }, 'm', undefined));
    const data = rawToData(datatype, message.raw_input_contents![0]!, [1, 2], fail, 'input', 'raw_input_contents[0]');
    t.deepEqual(plain(data), plain(t0.data));
    t.is(data.constructor, t0.data.constructor);
  });
  if (datatype === 'FP16') continue;
  test(`${datatype}: typed contents round trip through protobuf, exactly`, (t) => {
    const t0 = tensor(datatype);
    const contents = dataToContents(t0)!;
    const message = overTheWire({ model_name: 'm', inputs: [{ name: 'x', datatype, shape: [1, 2], contents }] });
    const data = contentsToData(datatype, message.inputs[0]!.contents!, [1, 2], fail, 'input');
    // FP32 elements travel as floats: the decoded value is the same float.
    t.deepEqual(plain(data), plain(t0.data));
  });
}

test('64-bit integers stay exact: decimal strings on the wire side, BigInts in memory, never a rounded JS number', (t) => {
  const contents = dataToContents(tensor('INT64'))!;
  t.deepEqual(contents.int64_contents, ['-9223372036854775808', '9223372036854775807']);
  t.deepEqual(dataToContents(tensor('UINT64'))!.uint64_contents, ['9007199254740993', '18446744073709551615']);
  const data = contentsToData('UINT64', { uint64_contents: ['9007199254740993'] }, [1], fail, 'x') as BigUint64Array;
  t.is(data[0], 9007199254740993n);
  // Shapes decoded as strings become numbers only when exact.
  const err = t.throws(() => parseInferRequest({ model_name: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: ['9007199254740993'] }] }));
  t.regex(err!.message, /shape dimension 0 is 9007199254740993/);
});

test('NaN, ±Infinity and -0 survive raw FP32 bit for bit', (t) => {
  const bits = new Uint32Array([0x7fc00001, 0x7f800000, 0xff800000, 0x80000000]); // a NaN payload, +Inf, -Inf, -0
  const t0 = tensor('FP32', new Float32Array(bits.buffer), [4]);
  const message = overTheWire(inferRequestMessage({ inputs: [t0] }, 'm', undefined));
  const data = rawToData('FP32', message.raw_input_contents![0]!, [4], fail, 'x', 'raw') as Float32Array;
  t.deepEqual([...new Uint32Array(data.buffer, data.byteOffset, 4)], [...bits]);
});

test('raw contents of the wrong byte length: the message names the field, the bytes and what was expected', (t) => {
  const err = t.throws(() =>
    rawToData('FP32', Buffer.alloc(15), [1, 4], (m) => new GatewayError('GW_ERR_INVALID_REQUEST', m), "input 'x'", 'raw_input_contents[0]'),
  );
  t.is((err as GatewayError).code, 'GW_ERR_INVALID_REQUEST');
  t.is(err!.message, "input 'x': raw_input_contents[0] has 15 bytes, expected 16 (4 elements of shape [1,4] × 4 bytes for FP32)");
  // BYTES: framing that runs past the end, or bytes left over.
  t.throws(() => rawToData('BYTES', Buffer.from([5, 0, 0, 0, 1]), [1], fail, 'x', 'raw'), { message: /declares 5 bytes, but only 1 remain/ });
  t.throws(() => rawToData('BYTES', Buffer.from([0, 0, 0, 0, 9]), [1], fail, 'x', 'raw'), { message: /1 bytes of binary data remain/ });
  t.throws(() => rawToData('BOOL', Buffer.from([2]), [1], fail, 'x', 'raw'), { message: /BOOL element 0 is byte 2/ });
});

test('typed contents: FP16 has no field, counts must match the shape, the datatype picks the field, narrow ints are range-checked', (t) => {
  t.throws(() => contentsToData('FP16', { fp32_contents: [1] }, [1], fail, 'x'), { message: /FP16 has no typed contents field; send it in raw contents/ });
  t.throws(() => contentsToData('FP32', { fp32_contents: [1, 2, 3] }, [1, 4], fail, 'x'), {
    message: 'x: contents.fp32_contents has 3 elements, expected 4 (the element count of shape [1,4])',
  });
  t.throws(() => contentsToData('FP32', { int_contents: [1] }, [1], fail, 'x'), {
    message: /FP32 data belongs in contents.fp32_contents, not contents.int_contents/,
  });
  t.throws(() => contentsToData('INT8', { int_contents: [200] }, [1], fail, 'x'), {
    message: /element 0 is 200, expected an integer from -128 to 127 \(INT8\)/,
  });
  t.throws(() => contentsToData('UINT16', { uint_contents: [70000] }, [1], fail, 'x'), { message: /expected an integer from 0 to 65535/ });
  t.throws(() => contentsToData('INT64', { int64_contents: ['12abc'] }, [1], fail, 'x'), { message: /element 0: 12abc is not a 64-bit integer/ });
});

const IRIS: ModelSignature = {
  name: 'iris',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [
    { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
    { name: 'label', datatype: 'INT64', shape: [-1] },
  ],
};
const validate = (message: ModelInferRequestMessage) => {
  const parsed = parseInferRequest(message);
  return validateInferRequest(parsed.body, IRIS, { externalData: parsed.inputData });
};
const row = new Float32Array([5.1, 3.5, 1.4, 0.2]);

test('a parsed request is validated by the same rules as JSON, from raw or typed contents alike', (t) => {
  const fromRaw = validate({
    model_name: 'iris',
    id: 'r1',
    inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '4'] }],
    raw_input_contents: [Buffer.from(row.buffer)],
    outputs: [{ name: 'label' }],
  });
  const fromTyped = validate({ model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [...row] } }] });
  t.deepEqual([...(fromRaw.inputs[0]!.data as Float32Array)], [...row]);
  t.deepEqual([...(fromTyped.inputs[0]!.data as Float32Array)], [...row]);
  t.is(fromRaw.id, 'r1');
  t.deepEqual(fromRaw.outputs, ['label']);
  t.is(fromTyped.id, undefined);
  // The JSON rules and their words: datatype, shape, unknown input, unknown output.
  t.throws(
    () => validate({ model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP64', shape: ['1', '4'], contents: { fp64_contents: [1, 2, 3, 4] } }] }),
    {
      message: "input 'input': datatype FP64 does not match the model's FP32",
    },
  );
  t.throws(
    () => validate({ model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '5'], contents: { fp32_contents: [1, 2, 3, 4, 5] } }] }),
    {
      message: /shape \[1,5\] does not match the model's \[-1,4\]/,
    },
  );
  t.throws(() => validate({ model_name: 'iris', inputs: [{ name: 'nope', datatype: 'FP32', shape: ['1', '4'] }] }), { message: /has no such input/ });
  t.throws(() => validate({ model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '4'] }], outputs: [{ name: 'x' }] }), {
    message: /no data; set its contents or send raw_input_contents/,
  });
});

test('raw and typed contents are never mixed, and raw contents come one per input', (t) => {
  const both = t.throws(() =>
    parseInferRequest({
      model_name: 'iris',
      inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [...row] } }],
      raw_input_contents: [Buffer.from(row.buffer)],
    }),
  );
  t.is((both as GatewayError).code, 'GW_ERR_INVALID_REQUEST');
  t.regex(both!.message, /input 'input' has contents while raw_input_contents is used/);
  t.throws(
    () =>
      parseInferRequest({
        model_name: 'iris',
        inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '4'] }],
        raw_input_contents: [Buffer.alloc(16), Buffer.alloc(4)],
      }),
    {
      message: 'raw_input_contents has 2 entries for 1 inputs; it needs one per input, in the order of inputs',
    },
  );
});

test('the answer mirrors the request: raw for raw, typed for typed; an FP16 output makes every output raw', (t) => {
  const outputs = [tensor('FP32', new Float32Array([0.5, 0.25]), [1, 2]), tensor('INT64', new BigInt64Array([INT64_MAX]), [1])];
  const raw = responseOverTheWire(inferResponseMessage({ model: 'iris', version: '2', id: 'a', outputs, raw: true }));
  t.is(raw.model_version, '2');
  t.is(raw.raw_output_contents!.length, 2);
  t.true(raw.outputs.every((o) => o.contents === null));
  const typed = responseOverTheWire(inferResponseMessage({ model: 'iris', version: '2', id: undefined, outputs, raw: false }));
  t.deepEqual(typed.raw_output_contents, []);
  t.deepEqual(typed.outputs[1]!.contents!.int64_contents, ['9223372036854775807']);
  const withHalf = inferResponseMessage({ model: 'm', version: '1', id: undefined, outputs: [...outputs, tensor('FP16')], raw: false });
  t.is(withHalf.raw_output_contents!.length, 3);
  // Both decode to the same tensors.
  for (const answer of [raw, typed]) {
    const decoded = outputsFromResponse(answer, fail);
    t.deepEqual(plain(decoded[0]!.data), [0.5, 0.25]);
    t.is((decoded[1]!.data as BigInt64Array)[0], INT64_MAX);
    t.deepEqual(decoded[1]!.shape, [1]);
  }
});

test("a backend's malformed answer is the backend's fault (the caller's error factory), whatever is wrong", (t) => {
  const base = { model_name: 'm', model_version: '1', id: '' };
  const cases: [ModelInferResponseMessage, RegExp][] = [
    [
      { ...base, outputs: [{ name: 'y', datatype: 'FP32', shape: ['2'] }], raw_output_contents: [Buffer.alloc(4)] },
      /raw_output_contents\[0\] has 4 bytes, expected 8/,
    ],
    [{ ...base, outputs: [{ name: 'y', datatype: 'FLOAT', shape: ['1'] }] }, /unknown datatype "FLOAT"/],
    [{ ...base, outputs: [{ name: 'y', datatype: 'FP32', shape: ['-1'] }] }, /negative dimension/],
    [
      {
        ...base,
        outputs: [
          { name: 'y', datatype: 'FP32', shape: ['1'] },
          { name: 'z', datatype: 'FP32', shape: ['1'] },
        ],
        raw_output_contents: [Buffer.alloc(4)],
      },
      /1 entries for 2 outputs/,
    ],
  ];
  for (const [message, expected] of cases) {
    const err = t.throws(() => outputsFromResponse(message, fail));
    t.is((err as GatewayError).code, 'GW_ERR_BAD_GATEWAY');
    t.regex(err!.message, expected);
  }
});

test('parameters keep their types; a 64-bit value beyond 2^53 stays exact as its decimal string', (t) => {
  const message = overTheWire({
    model_name: 'm',
    inputs: [],
    parameters: parametersToMessage({ flag: true, name: 'x', count: 3, ratio: 0.5, huge: 2n ** 63n - 1n }),
  });
  t.deepEqual(parametersFromMessage(message.parameters), { flag: true, name: 'x', count: 3, ratio: 0.5, huge: '9223372036854775807' });
  t.is(parametersFromMessage({}), undefined);
});
