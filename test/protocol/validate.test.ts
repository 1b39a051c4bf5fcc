// Tests for OIP inference-request validation against model metadata, and for JSON response encoding.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { RawBody } from '../../src/protocol/binary.js';
import { encodeInferResponse, validateInferRequest, type ModelSignature } from '../../src/protocol/validate.js';

/** The JSON text of an encoded response, and its parse. */
const textOf = (body: RawBody): string => Buffer.concat(body.chunks).toString('utf8');
const parsed = (body: RawBody) => JSON.parse(textOf(body)) as Record<string, unknown> & { id?: string; outputs: { shape: number[] }[] };

const MODEL: ModelSignature = {
  name: 'iris',
  inputs: [
    { name: 'input', datatype: 'FP32', shape: [-1, 4] },
    { name: 'ids', datatype: 'INT64', shape: [1, -1] },
  ],
  outputs: [
    { name: 'label', datatype: 'INT64', shape: [-1] },
    { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
  ],
};

const INPUT = { name: 'input', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] };
const IDS = { name: 'ids', datatype: 'INT64', shape: [1, 3], data: [[101, 2023, 102]] };

/** A valid body with `patch` applied to the `input` input (`undefined` values delete keys). */
function withInput(patch: Record<string, unknown>): unknown {
  const input: Record<string, unknown> = { ...INPUT, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete input[k];
  return { inputs: [input, IDS] };
}

test('decodes a valid request, inputs in model order', (t) => {
  const req = validateInferRequest({ inputs: [IDS, INPUT] }, MODEL);
  t.deepEqual(req, {
    inputs: [
      { name: 'input', datatype: 'FP32', shape: [2, 4], data: new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]) },
      { name: 'ids', datatype: 'INT64', shape: [1, 3], data: new BigInt64Array([101n, 2023n, 102n]) },
    ],
  });
  t.false('id' in req);
  t.is(req.outputs, undefined);
});

test('id and parameters pass through; unknown top-level and input keys are ignored', (t) => {
  const req = validateInferRequest({ id: 'req-42', parameters: { priority: 1 }, future_field: true, inputs: [{ ...INPUT, extra: 1 }, IDS] }, MODEL);
  t.is(req.id, 'req-42');
  t.deepEqual(req.parameters, { priority: 1 });
  t.is(req.inputs.length, 2);
});

test('nested and flat data give the same tensor', (t) => {
  const flat = validateInferRequest(withInput({ data: [1, 2, 3, 4, 5, 6, 7, 8] }), MODEL);
  const nested = validateInferRequest(
    withInput({
      data: [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
      ],
    }),
    MODEL,
  );
  t.deepEqual(nested, flat);
  t.deepEqual(nested.inputs[0]?.data, new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]));
});

test('-1 dimensions accept any size, including 0', (t) => {
  const one = validateInferRequest(withInput({ shape: [1, 4], data: [1, 2, 3, 4] }), MODEL);
  t.deepEqual(one.inputs[0]?.shape, [1, 4]);
  const empty = validateInferRequest(withInput({ shape: [0, 4], data: [] }), MODEL);
  t.deepEqual(empty.inputs[0]?.data, new Float32Array(0));
});

test('outputs filter keeps the order asked for', (t) => {
  const req = validateInferRequest({ inputs: [INPUT, IDS], outputs: [{ name: 'probabilities' }, { name: 'label', parameters: {} }] }, MODEL);
  t.deepEqual(req.outputs, ['probabilities', 'label']);
});

test('an empty outputs array means all outputs', (t) => {
  t.is(validateInferRequest({ inputs: [INPUT, IDS], outputs: [] }, MODEL).outputs, undefined);
});

test('a 100k-deep nested data body is a 400, not a stack overflow', (t) => {
  const data = JSON.parse(`${'['.repeat(100_000)}1${']'.repeat(100_000)}`) as unknown;
  const err = t.throws(() => validateInferRequest(withInput({ data }), MODEL), { instanceOf: GatewayError });
  t.is(err?.status, 400);
  t.is(err?.message, "input 'input': data has 1 element, expected 2 (dimension 0 of shape [2,4])");
});

// --- every validation error ------------------------------------------------------------------------------------

const rejects = test.macro({
  exec(t, body: unknown, message: string, maxElements?: number) {
    const err = t.throws(() => validateInferRequest(body, MODEL, maxElements === undefined ? {} : { maxElements }), {
      instanceOf: GatewayError,
    });
    t.is(err?.code, 'GW_ERR_INVALID_REQUEST');
    t.is(err?.status, 400);
    t.is(err?.message, message);
  },
  title: (provided) => `rejects ${provided ?? 'request'}`,
});

const DATATYPE_LIST = 'BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES';

test('a null body', rejects, null, 'request body must be a JSON object, got null');
test('an array body', rejects, [INPUT], 'request body must be a JSON object, got an array');
test('a string body', rejects, 'hi', 'request body must be a JSON object, got "hi"');
test('a numeric id', rejects, { id: 5, inputs: [INPUT, IDS] }, "'id' must be a string, got 5");
test('a null id', rejects, { id: null, inputs: [INPUT, IDS] }, "'id' must be a string, got null");
test('array parameters', rejects, { parameters: [], inputs: [INPUT, IDS] }, "'parameters' must be an object, got an array");
test(
  'a nested parameter value (it could never be sent on over gRPC, and deep nesting once crashed shadow copies)',
  rejects,
  { parameters: { deep: { a: { b: 1 } } }, inputs: [INPUT, IDS] },
  "'parameters'.deep must be a string, a number or a boolean, got an object",
);
test(
  'an array parameter value',
  rejects,
  withInput({ parameters: { sizes: [1, 2] } }),
  "input 'input': parameters.sizes must be a string, a number or a boolean, got an array",
);
test('missing inputs', rejects, {}, "'inputs' must be a non-empty array, got nothing");
test('empty inputs', rejects, { inputs: [] }, "'inputs' must be a non-empty array, got an array");
test('object inputs', rejects, { inputs: { input: INPUT } }, "'inputs' must be a non-empty array, got an object");
test('a non-object input', rejects, { inputs: [INPUT, 7] }, 'inputs[1] must be an object, got 7');
test('an input without a name', rejects, { inputs: [{ ...INPUT, name: undefined }] }, 'inputs[0].name must be a string, got missing');
test('a numeric input name', rejects, { inputs: [{ ...INPUT, name: 3 }] }, 'inputs[0].name must be a string, got 3');
test(
  'an unknown input name',
  rejects,
  { inputs: [INPUT, { ...IDS, name: 'mask' }] },
  "input 'mask': model 'iris' has no such input (its inputs: 'input', 'ids')",
);
test(
  'an input named like a prototype key',
  rejects,
  { inputs: [{ ...INPUT, name: 'constructor' }] },
  "input 'constructor': model 'iris' has no such input (its inputs: 'input', 'ids')",
);
test('a duplicate input', rejects, { inputs: [INPUT, IDS, INPUT] }, "input 'input' appears more than once");
test('a missing model input', rejects, { inputs: [INPUT] }, "missing input 'ids' (model 'iris' requires: 'input', 'ids')");
test('an unknown datatype', rejects, withInput({ datatype: 'FLOAT32' }), `input 'input': unknown datatype "FLOAT32" (expected one of ${DATATYPE_LIST})`);
test('a lowercase datatype', rejects, withInput({ datatype: 'fp32' }), `input 'input': unknown datatype "fp32" (expected one of ${DATATYPE_LIST})`);
test('a missing datatype', rejects, withInput({ datatype: undefined }), `input 'input': unknown datatype missing (expected one of ${DATATYPE_LIST})`);
test('a datatype mismatch', rejects, withInput({ datatype: 'FP64' }), "input 'input': datatype FP64 does not match the model's FP32");
test('a missing shape', rejects, withInput({ shape: undefined }), "input 'input': shape must be an array of non-negative integers, got missing");
test('a string shape', rejects, withInput({ shape: '2,4' }), 'input \'input\': shape must be an array of non-negative integers, got "2,4"');
test('a negative dimension', rejects, withInput({ shape: [-1, 4] }), "input 'input': shape dimension 0 is -1, expected a non-negative integer");
test('a fractional dimension', rejects, withInput({ shape: [2, 4.5] }), "input 'input': shape dimension 1 is 4.5, expected a non-negative integer");
test('a string dimension', rejects, withInput({ shape: ['2', 4] }), 'input \'input\': shape dimension 0 is "2", expected a non-negative integer');
test('a wrong rank', rejects, withInput({ shape: [8] }), "input 'input': shape [8] does not match the model's [-1,4] (rank 1, expected rank 2)");
test('a wrong fixed dimension', rejects, withInput({ shape: [2, 5] }), "input 'input': shape [2,5] does not match the model's [-1,4] (dimension 1 must be 4)");
test(
  'a wrong leading fixed dimension',
  rejects,
  { inputs: [INPUT, { ...IDS, shape: [3, 1], data: [1, 2, 3] }] },
  "input 'ids': shape [3,1] does not match the model's [1,-1] (dimension 0 must be 1)",
);
test(
  'an input above the element cap',
  rejects,
  withInput({ shape: [3, 4], data: [] }),
  "input 'input': shape [3,4] has 12 elements, above the limit of 10",
  10,
);
test(
  'a request whose inputs together exceed the element cap',
  rejects,
  withInput({ shape: [2, 4] }),
  "input 'ids': the request's inputs total 11 elements, above the limit of 10",
  10,
);
test(
  'an absurd shape under the default cap',
  rejects,
  withInput({ shape: [2 ** 40, 4], data: [] }),
  "input 'input': shape [1099511627776,4] has 4398046511104 elements, above the limit of 67108864",
);
test('array input parameters', rejects, withInput({ parameters: [1] }), "input 'input': parameters must be an object, got an array");
test('missing data', rejects, withInput({ data: undefined }), "input 'input': data is missing");
test('non-array data', rejects, withInput({ data: 'abc' }), 'input \'input\': data must be an array, got "abc"');
test('too few flat values', rejects, withInput({ data: [1, 2, 3] }), "input 'input': data has 3 elements, expected 8 (the element count of shape [2,4])");
test(
  'ragged nested data',
  rejects,
  withInput({
    data: [
      [1, 2, 3, 4],
      [5, 6, 7],
    ],
  }),
  "input 'input': data[1] has 3 elements, expected 4 (dimension 1 of shape [2,4])",
);
test(
  'too deep nested data',
  rejects,
  withInput({
    data: [
      [[1], 2, 3, 4],
      [5, 6, 7, 8],
    ],
  }),
  "input 'input': data[0][0] is an array, but shape [2,4] has only 2 dimensions",
);
test('a string in FP32 data', rejects, withInput({ data: [1, 2, 3, 'a', 5, 6, 7, 8] }), 'input \'input\': element 3 is "a", expected a number (FP32)');
test(
  'an unsafe INT64',
  rejects,
  { inputs: [INPUT, { ...IDS, data: [1, 2 ** 53, 3] }] },
  "input 'ids': element 1 is 9007199254740992, expected an integer from -(2^53-1) to 2^53-1 (INT64; larger 64-bit values cannot be represented exactly in JSON numbers)",
);
test('non-array outputs', rejects, { inputs: [INPUT, IDS], outputs: 'label' }, '\'outputs\' must be an array of {"name": ...} objects, got "label"');
test('a non-object output', rejects, { inputs: [INPUT, IDS], outputs: ['label'] }, 'outputs[0] must be an object, got "label"');
test('an output without a name', rejects, { inputs: [INPUT, IDS], outputs: [{}] }, 'outputs[0].name must be a string, got missing');
test(
  'an unknown output',
  rejects,
  { inputs: [INPUT, IDS], outputs: [{ name: 'label' }, { name: 'logits' }] },
  "output 'logits': model 'iris' has no such output (its outputs: 'label', 'probabilities')",
);
test('a duplicate output', rejects, { inputs: [INPUT, IDS], outputs: [{ name: 'label' }, { name: 'label' }] }, "output 'label' is requested more than once");
test(
  'non-object output parameters',
  rejects,
  { inputs: [INPUT, IDS], outputs: [{ name: 'label', parameters: 'x' }] },
  'output \'label\': parameters must be an object, got "x"',
);
test(
  'a very long unknown name (truncated in the message)',
  rejects,
  { inputs: [{ ...INPUT, name: 'n'.repeat(500) }] },
  `input '${'n'.repeat(64)}…': model 'iris' has no such input (its inputs: 'input', 'ids')`,
);

// --- responses -------------------------------------------------------------------------------------------------

test('encodeInferResponse builds the OIP body and echoes the id', (t) => {
  const body = encodeInferResponse({
    modelName: 'iris',
    modelVersion: '2',
    id: 'req-42',
    outputs: [
      { name: 'label', datatype: 'INT64', shape: [2], data: new BigInt64Array([1n, -2n]) },
      { name: 'probabilities', datatype: 'FP32', shape: [2, 3], data: new Float32Array([0.5, 0.25, 0.25, 1, 0, 0]) },
      { name: 'flags', datatype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
    ],
  });
  t.deepEqual(parsed(body), {
    model_name: 'iris',
    model_version: '2',
    id: 'req-42',
    outputs: [
      { name: 'label', datatype: 'INT64', shape: [2], data: [1, -2] },
      { name: 'probabilities', datatype: 'FP32', shape: [2, 3], data: [0.5, 0.25, 0.25, 1, 0, 0] },
      { name: 'flags', datatype: 'BOOL', shape: [2], data: [true, false] },
    ],
  });
  t.is(textOf(body).indexOf('"id"') < textOf(body).indexOf('"outputs"'), true);
});

test('encodeInferResponse omits id when the request had none, and copies shapes', (t) => {
  const shape = [1];
  const body = encodeInferResponse({ modelName: 'm', modelVersion: '1', outputs: [{ name: 'y', datatype: 'FP64', shape, data: new Float64Array([3]) }] });
  t.false('id' in parsed(body));
  t.deepEqual(parsed(body), { model_name: 'm', model_version: '1', outputs: [{ name: 'y', datatype: 'FP64', shape: [1], data: [3] }] });
});

test('request id round-trips from validation to the response', (t) => {
  const req = validateInferRequest({ id: 'abc', inputs: [INPUT, IDS] }, MODEL);
  const body = encodeInferResponse({ modelName: 'iris', modelVersion: '1', id: req.id, outputs: [] });
  t.is(parsed(body).id, 'abc');
});
