// End to end: the binary tensor data extension through an in-process ONNX version, through `http` versions to a real
// serve-model process (passed through undecoded, and validated by the gateway first), and on serve-model directly.

import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { IDENTITY_DATATYPES } from '../../scripts/onnx-graph.js';
import { tensorBytes } from '../../src/protocol/binary.js';
import type { Datatype, Tensor, TensorData } from '../../src/protocol/oip.js';
import { gatewayConfig, getJson, startTestGateway } from '../helpers/gateway.js';
import { identityModelFile, singleInputModelFile } from '../helpers/models.js';
import { spawnServeModel } from '../helpers/serve-model.js';
import type { RunningGateway } from '../../src/app/gateway.js';

interface Setup {
  gateway: RunningGateway;
  runtimeUrl: string;
}

let setup: Promise<Setup> | undefined;
let stopAll: (() => Promise<void>) | undefined;

/** One gateway and one serve-model for the whole file: identity over every datatype, three ways. */
function shared(): Promise<Setup> {
  setup ??= (async () => {
    const file = await identityModelFile();
    const runtime = await spawnServeModel(['--model-dir', path.dirname(file), '--port', '0', '--log-level', 'warn']);
    const gateway = await startTestGateway(
      gatewayConfig({
        models: {
          identity: {
            versions: {
              local: { backend: { kind: 'onnx', path: file } },
              remote: { backend: { kind: 'http', url: runtime.url, model: 'identity', version: '1' } },
              checked: { backend: { kind: 'http', url: runtime.url, model: 'identity', version: '1', validate: 'gateway' } },
            },
          },
        },
      }),
    );
    stopAll = async () => {
      await gateway.stop();
      await runtime.stop('SIGKILL');
    };
    return { gateway, runtimeUrl: runtime.url };
  })();
  return setup;
}
test.after.always(async () => stopAll?.());

/** Two rows of two elements per datatype; 64-bit values beyond 2^53 (only binary carries them exactly). */
const VALUES: Record<Datatype, TensorData> = {
  FP32: new Float32Array([1.5, -2.25, 3e-8, 65504]),
  FP64: new Float64Array([Math.PI, -0, 1e300, -1e-300]),
  FP16: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]),
  INT8: new Int8Array([-128, 127, 0, -1]),
  INT16: new Int16Array([-32768, 32767, 0, -1]),
  INT32: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1]),
  INT64: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n, -1n]),
  UINT8: new Uint8Array([0, 255, 1, 2]),
  UINT16: new Uint16Array([0, 65535, 1, 2]),
  UINT32: new Uint32Array([0, 2 ** 32 - 1, 1, 2]),
  UINT64: new BigUint64Array([0n, 2n ** 64n - 1n, 2n ** 53n + 1n, 2n]),
  BOOL: new Uint8Array([1, 0, 0, 1]),
  // No NUL inside a string: ONNX Runtime keeps string tensors as C strings and cuts them there.
  BYTES: ['', 'héllo', 'a b', 'x'.repeat(40)],
};
const tensor = (dt: Datatype): Tensor => ({ name: `input_${dt}`, datatype: dt, shape: [2, 2], data: VALUES[dt] });

interface BinaryReply {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
  binary: Buffer;
}

async function post(url: string, body: Buffer, headers: Record<string, string>): Promise<BinaryReply> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream', ...headers } });
  const bytes = Buffer.from(await res.arrayBuffer());
  const header = res.headers.get('inference-header-content-length');
  const jsonLength = header === null ? bytes.length : Number(header);
  return {
    status: res.status,
    headers: res.headers,
    json: JSON.parse(bytes.subarray(0, jsonLength).toString()) as Record<string, unknown>,
    binary: bytes.subarray(jsonLength),
  };
}

/** A binary request: every datatype as raw bytes, JSON padded with spaces to `jsonPad` extra bytes (moves alignment). */
function binaryRequest(jsonPad: number, extra: Record<string, unknown> = {}): { body: Buffer; header: string } {
  const raw = IDENTITY_DATATYPES.map((dt) => tensorBytes(tensor(dt)));
  const inputs = IDENTITY_DATATYPES.map((dt, i) => ({
    name: `input_${dt}`,
    datatype: dt,
    shape: [2, 2],
    parameters: { binary_data_size: raw[i]!.byteLength },
  }));
  const head = Buffer.from(JSON.stringify({ id: 'bin-1', inputs, ...extra }) + ' '.repeat(jsonPad));
  return { body: Buffer.concat([head, ...raw]), header: String(head.length) };
}

type Target = 'local' | 'remote' | 'checked' | 'runtime';
async function urlOf(target: Target): Promise<string> {
  const s = await shared();
  return target === 'runtime' ? `${s.runtimeUrl}/v2/models/identity/versions/1/infer` : `${s.gateway.url}/v2/models/identity/versions/${target}/infer`;
}

const roundTrip = test.macro(async (t: ExecutionContext, target: Target, jsonPad: number) => {
  const req = binaryRequest(jsonPad, { parameters: { binary_data_output: true } });
  const res = await post(await urlOf(target), req.body, { 'inference-header-content-length': req.header });
  t.is(res.status, 200, JSON.stringify(res.json));
  t.is(res.headers.get('content-type'), 'application/octet-stream');
  t.like(res.json, { model_name: 'identity', model_version: target === 'runtime' ? '1' : target, id: 'bin-1' });
  const outputs = res.json.outputs as { name: string; datatype: string; shape: number[]; parameters: { binary_data_size: number } }[];
  t.is(outputs.length, IDENTITY_DATATYPES.length);
  let offset = 0;
  for (const o of outputs) {
    const dt = o.datatype as Datatype;
    t.is(o.name, `output_${dt}`);
    t.deepEqual(o.shape, [2, 2]);
    const expected = Buffer.from(tensorBytes(tensor(dt)));
    // Identity model: the bytes out are exactly the bytes in, for every datatype, 64-bit integers above 2^53 included.
    t.deepEqual(res.binary.subarray(offset, offset + o.parameters.binary_data_size), expected, dt);
    offset += o.parameters.binary_data_size;
  }
  t.is(offset, res.binary.length);
});
for (const target of ['local', 'remote', 'checked', 'runtime'] as const) {
  for (const pad of [0, 1, 3]) test(`binary in and out, all datatypes, ${target}, JSON part +${pad} bytes`, roundTrip, target, pad);
}

test('binary inputs with JSON outputs, and a JSON request asking for one binary output', async (t) => {
  const url = await urlOf('local');
  const req = binaryRequest(0, { outputs: [{ name: 'output_INT32' }] });
  const jsonOut = await post(url, req.body, { 'inference-header-content-length': req.header });
  t.is(jsonOut.status, 200);
  t.is(jsonOut.headers.get('inference-header-content-length'), null);
  t.deepEqual((jsonOut.json.outputs as { data: number[] }[])[0]!.data, [-(2 ** 31), 2 ** 31 - 1, 0, -1]);

  const inputs = IDENTITY_DATATYPES.map((dt) => ({
    name: `input_${dt}`,
    datatype: dt,
    shape: [2, 2],
    data: dt === 'BYTES' ? ['a', 'b', 'c', 'd'] : dt === 'BOOL' ? [true, false, true, false] : [1, 2, 3, 4],
  }));
  const body = Buffer.from(JSON.stringify({ inputs, outputs: [{ name: 'output_FP32', parameters: { binary_data: true } }, { name: 'output_INT8' }] }));
  for (const target of ['local', 'remote'] as const) {
    const res = await post(await urlOf(target), body, { 'content-type': 'application/json' });
    t.is(res.status, 200);
    const outs = res.json.outputs as Record<string, unknown>[];
    t.deepEqual(outs[0], { name: 'output_FP32', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 16 } });
    t.deepEqual(outs[1]!.data, [1, 2, 3, 4]);
    t.deepEqual(Array.from(new Float32Array(new Uint8Array(res.binary).buffer)), [1, 2, 3, 4]);
  }
});

/** A malformed binary body, as a function of a well-formed one. */
const malformed = test.macro(
  async (t: ExecutionContext, target: Target, mutate: (body: Buffer, header: string) => { body: Buffer; header: string }, message: RegExp) => {
    const req = binaryRequest(0);
    const bad = mutate(req.body, req.header);
    const res = await post(await urlOf(target), bad.body, { 'inference-header-content-length': bad.header });
    t.is(res.status, 400, JSON.stringify(res.json));
    t.regex(String(res.json.error), message);
  },
);
const CASES: [string, (body: Buffer, header: string) => { body: Buffer; header: string }, RegExp][] = [
  ['header beyond the body', (body) => ({ body, header: String(body.length + 1) }), /inference-header-content-length is \d+, but the body has only \d+ bytes/],
  ['non-numeric header', (body) => ({ body, header: 'twelve' }), /must be a non-negative integer byte count/],
  ['trailing bytes', (body, header) => ({ body: Buffer.concat([body, Buffer.alloc(3)]), header }), /3 bytes after the JSON part/],
  ['missing data', (body, header) => ({ body: body.subarray(0, body.length - 10), header }), /input 'input_BYTES'.*only \d+ bytes of binary data are left/],
  ['header cutting the JSON', (body, header) => ({ body, header: String(Number(header) - 5) }), /not valid JSON/],
];
for (const target of ['local', 'checked', 'runtime'] as const) {
  for (const [name, mutate, message] of CASES) test(`400 for ${name} (${target})`, malformed, target, mutate, message);
}

test('400 when binary_data_size does not match shape × datatype (the size is consistent with the body)', async (t) => {
  const raw = Buffer.from(new Float32Array([1, 2, 3]).buffer);
  const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'input_FP32', datatype: 'FP32', shape: [2, 2], parameters: { binary_data_size: 12 } }] }));
  const res = await post(await urlOf('local'), Buffer.concat([head, raw]), { 'inference-header-content-length': String(head.length) });
  t.is(res.status, 400);
  t.regex(String(res.json.error), /input 'input_FP32': parameters.binary_data_size is 12, expected 16/);
});

test('a pass-through version forwards a malformed binary body undecoded: the remote answers 400 itself', async (t) => {
  const req = binaryRequest(0);
  const res = await post(await urlOf('remote'), Buffer.concat([req.body, Buffer.alloc(2)]), { 'inference-header-content-length': req.header });
  t.is(res.status, 400);
  t.regex(String(res.json.error), /2 bytes after the JSON part/);
});

test('server metadata advertises binary_tensor_data on the gateway and on serve-model', async (t) => {
  const s = await shared();
  for (const base of [s.gateway.url, s.runtimeUrl]) {
    const meta = await getJson(`${base}/v2`);
    t.true((meta.body.extensions as string[]).includes('binary_tensor_data'), base);
  }
});

// --- Exact JSON: 64-bit integers keep their digits, NaN/±Infinity are refused (issue: never round or null silently) ---

/** Binary inputs for two 64-bit tensors and one FP32 one, with every output asked for as JSON. */
function exactRequest(fp32: Float32Array): { body: Buffer; header: string } {
  const int64 = new BigInt64Array([2n ** 60n + 1n, -(2n ** 63n), 2n ** 53n + 1n, -1n]);
  const uint64 = new BigUint64Array([2n ** 64n - 1n, 2n ** 60n + 1n, 0n, 9007199254740993n]);
  const others = IDENTITY_DATATYPES.filter((dt) => dt !== 'INT64' && dt !== 'UINT64' && dt !== 'FP32');
  const tensors = [
    { name: 'input_INT64', datatype: 'INT64', data: int64 },
    { name: 'input_UINT64', datatype: 'UINT64', data: uint64 },
    { name: 'input_FP32', datatype: 'FP32', data: fp32 },
  ];
  const raw = tensors.map((x) => tensorBytes({ ...x, shape: [2, 2] } as Tensor));
  const inputs = [
    ...tensors.map((x, i) => ({ name: x.name, datatype: x.datatype, shape: [2, 2], parameters: { binary_data_size: raw[i]!.byteLength } })),
    ...others.map((dt) => ({ name: `input_${dt}`, datatype: dt, shape: [2, 2], parameters: { binary_data_size: tensorBytes(tensor(dt)).byteLength } })),
  ];
  const head = Buffer.from(JSON.stringify({ inputs, outputs: [{ name: 'output_INT64' }, { name: 'output_UINT64' }, { name: 'output_FP32' }] }));
  return { body: Buffer.concat([head, ...raw, ...others.map((dt) => tensorBytes(tensor(dt)))]), header: String(head.length) };
}

const exactJson = test.macro(async (t: ExecutionContext, target: Target) => {
  const req = exactRequest(new Float32Array([1, 2, 3, 4]));
  const res = await fetch(await urlOf(target), {
    method: 'POST',
    body: req.body,
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': req.header },
  });
  const text = await res.text();
  t.is(res.status, 200, text);
  // The wire carries the digits (a standard JSON.parse would round them; the text must not have been rounded already).
  t.true(text.includes('"data":[1152921504606846977,-9223372036854775808,9007199254740993,-1]'), text);
  t.true(text.includes('"data":[18446744073709551615,1152921504606846977,0,9007199254740993]'), text);
});
for (const target of ['local', 'remote', 'checked', 'runtime'] as const)
  test(`64-bit outputs beyond 2^53 keep their exact digits in JSON (${target})`, exactJson, target);

const notRepresentable = test.macro(async (t: ExecutionContext, target: Target) => {
  const req = exactRequest(new Float32Array([1, NaN, Infinity, 4]));
  const url = await urlOf(target);
  const res = await post(url, req.body, { 'inference-header-content-length': req.header });
  t.is(res.status, 422, JSON.stringify(res.json));
  t.regex(String(res.json.error), /output 'output_FP32' element 1 is NaN, which JSON cannot carry; ask for binary tensor data/);
  // The same request asking for binary outputs gets the values exactly.
  const binaryHead = Buffer.from(
    JSON.stringify({
      ...(JSON.parse(req.body.subarray(0, Number(req.header)).toString()) as Record<string, unknown>),
      outputs: [{ name: 'output_FP32', parameters: { binary_data: true } }],
    }),
  );
  const binary = await post(url, Buffer.concat([binaryHead, req.body.subarray(Number(req.header))]), {
    'inference-header-content-length': String(binaryHead.length),
  });
  t.is(binary.status, 200, JSON.stringify(binary.json));
  const values = new Float32Array(new Uint8Array(binary.binary).buffer);
  t.true(Number.isNaN(values[1]!));
  t.is(values[2], Infinity);
});
for (const target of ['local', 'remote', 'runtime'] as const)
  test(`NaN/Infinity outputs: 422 asking for binary data, never null in a 200 (${target})`, notRepresentable, target);

test("Triton's raw binary request (inference-header-content-length: 0): the body is the single input, shape from the byte count", async (t) => {
  const file = await singleInputModelFile();
  const runtime = await spawnServeModel(['--model-dir', path.dirname(file), '--port', '0', '--log-level', 'warn']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const gateway = await startTestGateway(
    gatewayConfig({
      models: {
        single: {
          versions: {
            local: { backend: { kind: 'onnx', path: file } },
            remote: { backend: { kind: 'http', url: runtime.url, model: 'single', version: '1' } },
          },
        },
      },
    }),
  );
  t.teardown(() => gateway.stop());
  const rows = new Float32Array([1, 2, 3, 4, 5, 6]); // two rows of the model's [batch, 3]
  for (const url of [
    `${gateway.url}/v2/models/single/versions/local/infer`,
    `${gateway.url}/v2/models/single/versions/remote/infer`,
    `${runtime.url}/v2/models/single/infer`,
  ]) {
    const res = await post(url, Buffer.from(rows.buffer), { 'inference-header-content-length': '0' });
    t.is(res.status, 200, JSON.stringify(res.json));
    t.like((res.json.outputs as Record<string, unknown>[])[0], { name: 'x_out', datatype: 'FP32', shape: [2, 3], parameters: { binary_data_size: 24 } });
    t.deepEqual([...new Float32Array(new Uint8Array(res.binary).buffer)], [...rows], url);
    const ragged = await post(url, Buffer.alloc(10), { 'inference-header-content-length': '0' });
    t.is(ragged.status, 400);
    t.regex(String(ragged.json.error), /10 bytes is not a whole number of \[-1,3\] FP32 elements/);
  }
  // A model with several inputs cannot be described by the body alone.
  const many = await post(await urlOf('local'), Buffer.alloc(16), { 'inference-header-content-length': '0' });
  t.is(many.status, 400);
  t.regex(String(many.json.error), /needs a model with exactly one input; this one has 13/);
});
