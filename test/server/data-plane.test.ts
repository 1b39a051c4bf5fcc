// The data plane over real HTTP: every OIP endpoint, every error status, both data layouts, and a gateway that keeps running.

import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import type { RunningGateway } from '../../src/app/gateway.js';
import { matchRoute } from '../../src/protocol/routes.js';
import { failingModelFile, identityModelFile } from '../helpers/models.js';
import { IRIS_ROW, gatewayConfig, getJson, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { createLogger } from '../../src/telemetry/log.js';

let gw: RunningGateway;
test.before(async () => {
  gw = await startTestGateway(
    gatewayConfig({
      server: { maxBodyBytes: 4096 },
      models: irisModels({
        identity: { versions: { '1': { backend: { kind: 'onnx', path: await identityModelFile() } } } },
        fragile: { versions: { '1': { backend: { kind: 'onnx', path: await failingModelFile() } } } },
      }),
    }),
  );
});
test.after.always(() => gw?.stop());

/** Sends raw bytes and returns everything the server wrote before closing. */
async function raw(request: string): Promise<string> {
  const socket = net.connect(gw.port, '127.0.0.1');
  await once(socket, 'connect');
  let response = '';
  socket.on('data', (d: Buffer) => (response += d.toString()));
  socket.end(request);
  await once(socket, 'close');
  return response;
}

test('route matching covers the OIP surface and nothing else', (t) => {
  t.like(matchRoute('/v2'), { kind: 'server-metadata' });
  t.like(matchRoute('/v2/health/live'), { kind: 'live' });
  t.like(matchRoute('/v2/health/ready'), { kind: 'ready' });
  t.like(matchRoute('/v2/models/iris'), { kind: 'model', operation: 'model-metadata', model: 'iris', version: undefined });
  t.like(matchRoute('/v2/models/iris/versions/2'), { operation: 'model-metadata', version: '2' });
  t.like(matchRoute('/v2/models/iris/ready'), { operation: 'model-ready', version: undefined });
  t.like(matchRoute('/v2/models/iris/versions/2/ready'), { operation: 'model-ready', version: '2' });
  t.like(matchRoute('/v2/models/iris/infer'), { operation: 'infer', version: undefined, methods: ['POST'] });
  t.like(matchRoute('/v2/models/iris/versions/2/infer'), { operation: 'infer', version: '2' });
  // `GET /v2/` is how the official OpenAPI file writes server metadata.
  t.like(matchRoute('/v2/'), { kind: 'server-metadata' });
  // Names are canonicalised once, here: what auth, limits and routing see is the decoded name.
  t.like(matchRoute('/v2/models/ir%69s/versions/%32/infer'), { kind: 'model', model: 'iris', version: '2' });
  for (const bad of ['/v2/models/a%2Fb/infer', '/v2/models/%E0%A4%A/infer', '/v2/models/iris/versions/%00/infer', '/v2/models/%0a/ready']) {
    t.like(matchRoute(bad), { kind: 'bad-name' }, bad);
  }
  for (const p of [
    '/',
    '/v1/models/iris',
    '/v2/health',
    '/v2/health/x',
    '/v2/models',
    '/v2/models/',
    '/v2/models/iris/versions',
    '/v2/models/iris/versions//infer',
    '/v2/models/iris/infer/x',
    '/v2/models/iris/predict',
  ]) {
    t.is(matchRoute(p), undefined, p);
  }
});

test('GET /v2/health/live and /v2/health/ready answer 200 with a JSON body', async (t) => {
  t.like(await getJson(`${gw.url}/v2/health/live`), { status: 200, body: { live: true } });
  t.like(await getJson(`${gw.url}/v2/health/ready`), { status: 200, body: { ready: true } });
});

test('GET /v2 is the server metadata', async (t) => {
  const { status, body } = await getJson(`${gw.url}/v2`);
  t.is(status, 200);
  t.deepEqual(body, { name: 'model-gateway', version: '0.1.0', extensions: ['binary_tensor_data'] });
});

test('model metadata, with and without a version, comes from the model', async (t) => {
  const expected = {
    name: 'iris',
    versions: ['1', '2'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
      { name: 'label', datatype: 'INT64', shape: [-1] },
    ],
  };
  const plain = await getJson(`${gw.url}/v2/models/iris`);
  t.is(plain.status, 200);
  t.deepEqual(plain.body, expected);
  t.is(plain.headers.get('x-model-version'), '1');
  const v2 = await getJson(`${gw.url}/v2/models/iris/versions/2`);
  t.deepEqual(v2.body, expected);
  t.is(v2.headers.get('x-model-version'), '2');
});

test('model ready, with and without a version', async (t) => {
  t.like(await getJson(`${gw.url}/v2/models/iris/ready`), { status: 200, body: { name: 'iris', version: '1', ready: true } });
  t.like(await getJson(`${gw.url}/v2/models/iris/versions/2/ready`), { status: 200, body: { name: 'iris', version: '2', ready: true } });
});

test('a version that is not ready: server ready, its ready and its metadata answer 503 until it becomes ready', async (t) => {
  const faults = faultInjectingFactory({ 'iris/2': { notReady: true } }, createLogger('silent'));
  const own = await startTestGateway(gatewayConfig(), { backendFactory: faults.factory });
  t.teardown(() => own.stop());
  const v2 = faults.made.get('iris/2')!.at(-1)!;

  t.like(await getJson(`${own.url}/v2/health/ready`), { status: 503, body: { ready: false } });
  t.like(await getJson(`${own.url}/v2/models/iris/versions/2/ready`), { status: 503, body: { name: 'iris', version: '2', ready: false } });
  const meta = await getJson(`${own.url}/v2/models/iris/versions/2`);
  t.is(meta.status, 503);
  t.regex(meta.headers.get('content-type') ?? '', /^application\/json/);
  t.regex(String(meta.body.error), /model 'iris' version '2' is not ready/);
  // The other version is not held back by it.
  t.like(await getJson(`${own.url}/v2/models/iris/versions/1/ready`), { status: 200, body: { ready: true } });

  v2.faults.notReady = false;
  t.like(await getJson(`${own.url}/v2/health/ready`), { status: 200, body: { ready: true } });
  t.like(await getJson(`${own.url}/v2/models/iris/versions/2/ready`), { status: 200, body: { name: 'iris', version: '2', ready: true } });
  t.like(await getJson(`${own.url}/v2/models/iris/versions/2`), { status: 200, body: { name: 'iris', versions: ['1', '2'] } });
});

test('HEAD works wherever GET does', async (t) => {
  const res = await fetch(`${gw.url}/v2/models/iris/ready`, { method: 'HEAD' });
  t.is(res.status, 200);
  t.is(await res.text(), '');
});

test('infer without a version is answered by the default version, named in the body and a header', async (t) => {
  const { status, headers, body } = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([IRIS_ROW, [6.7, 3.0, 5.2, 2.3]], { id: 'req-42' }));
  t.is(status, 200);
  t.is(headers.get('x-model-version'), '1');
  t.is(body.model_name, 'iris');
  t.is(body.model_version, '1');
  t.is(body.id, 'req-42');
  const outputs = body.outputs as { name: string; datatype: string; shape: number[]; data: number[] }[];
  t.deepEqual(
    outputs.map((o) => [o.name, o.datatype, o.shape]),
    [
      ['probabilities', 'FP32', [2, 3]],
      ['label', 'INT64', [2]],
    ],
  );
  t.deepEqual(outputs[1]!.data, [0, 2]); // setosa, virginica
  const p = outputs[0]!.data;
  t.true(Math.abs(p[0]! + p[1]! + p[2]! - 1) < 1e-5);
});

test('a version in the path answers, and nested and flat data give identical results', async (t) => {
  const rows = [IRIS_ROW, [5.9, 3.0, 5.1, 1.8]];
  const nested = await postJson(`${gw.url}/v2/models/iris/versions/2/infer`, irisRequest(rows));
  const flat = await postJson(`${gw.url}/v2/models/iris/versions/2/infer`, {
    inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', data: rows.flat() }],
  });
  t.is(nested.status, 200);
  t.is(nested.headers.get('x-model-version'), '2');
  t.is(nested.body.model_version, '2');
  t.deepEqual(flat.body, nested.body);
});

test('the outputs filter returns only the named outputs', async (t) => {
  const { status, body } = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([IRIS_ROW], { outputs: [{ name: 'label' }] }));
  t.is(status, 200);
  t.deepEqual(body.outputs, [{ name: 'label', datatype: 'INT64', shape: [1], data: [0] }]);
});

test('every datatype round-trips through a real ONNX model', async (t) => {
  const values: Record<string, unknown[]> = {
    BOOL: [true, false],
    UINT8: [0, 255],
    UINT16: [0, 65535],
    UINT32: [0, 4294967295],
    UINT64: [0, 9007199254740991],
    INT8: [-128, 127],
    INT16: [-32768, 32767],
    INT32: [-2147483648, 2147483647],
    INT64: [-9007199254740991, 9007199254740991],
    FP16: [0.5, -65504],
    FP32: [1.5, -3.25],
    FP64: [0.1, -1e300],
    BYTES: ['héllo', ''],
  };
  const inputs = Object.entries(values).map(([dt, data]) => ({ name: `input_${dt}`, datatype: dt, shape: [1, 2], data }));
  const { status, body } = await postJson(`${gw.url}/v2/models/identity/infer`, { inputs });
  t.is(status, 200, JSON.stringify(body));
  const outputs = body.outputs as { name: string; datatype: string; shape: number[]; data: unknown[] }[];
  for (const [dt, data] of Object.entries(values)) {
    const out = outputs.find((o) => o.name === `output_${dt}`);
    t.deepEqual(out, { name: `output_${dt}`, datatype: dt, shape: [1, 2], data }, dt);
  }
});

const rejected = test.macro(async (t, path: string, body: unknown, status: number, message: RegExp) => {
  const res = await postJson(`${gw.url}${path}`, body);
  t.is(res.status, status);
  t.is(res.headers.get('content-type'), 'application/json');
  t.regex(String(res.body.error), message);
  t.truthy(res.headers.get('x-request-id'));
});

test('unknown model → 404', rejected, '/v2/models/nope/infer', irisRequest(), 404, /unknown model 'nope'/);
test('unknown version → 404', rejected, '/v2/models/iris/versions/9/infer', irisRequest(), 404, /model 'iris' has no version '9' \(versions: 1, 2\)/);
test('invalid JSON → 400', rejected, '/v2/models/iris/infer', '{"inputs": [', 400, /not valid JSON/);
test('empty body → 400', rejected, '/v2/models/iris/infer', '', 400, /request body is empty/);
test(
  'unknown input name → 400 naming the inputs',
  rejected,
  '/v2/models/iris/infer',
  { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: IRIS_ROW }] },
  400,
  /'x'.*input/,
);
test(
  'wrong datatype → 400 naming the expected one',
  rejected,
  '/v2/models/iris/infer',
  { inputs: [{ name: 'input', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }] },
  400,
  /input 'input'.*INT32.*FP32/,
);
test(
  'wrong shape → 400 naming the expected one',
  rejected,
  '/v2/models/iris/infer',
  { inputs: [{ name: 'input', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }] },
  400,
  /input 'input'.*\[1,5\].*\[-1,4\]/,
);
test(
  'element count not matching the shape → 400',
  rejected,
  '/v2/models/iris/infer',
  { inputs: [{ name: 'input', shape: [2, 4], datatype: 'FP32', data: IRIS_ROW }] },
  400,
  /input 'input'/,
);
test(
  'a string among FP32 values → 400',
  rejected,
  '/v2/models/iris/infer',
  { inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [1, 'two', 3, 4] }] },
  400,
  /input 'input'.*element 1/,
);
test('no inputs → 400', rejected, '/v2/models/iris/infer', { inputs: [] }, 400, /inputs/);
test('unknown output requested → 400', rejected, '/v2/models/iris/infer', irisRequest([IRIS_ROW], { outputs: [{ name: 'logits' }] }), 400, /logits/);
test(
  'a backend failure → 500 with a clear message',
  rejected,
  '/v2/models/fragile/infer',
  { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] }] },
  500,
  /model fragile version 1: inference failed: /,
);

test('the fragile model works when ONNX Runtime accepts the input (the 500 above is the backend, not validation)', async (t) => {
  const res = await postJson(`${gw.url}/v2/models/fragile/infer`, { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
  t.is(res.status, 200);
});

test('wrong method → 405 with Allow', async (t) => {
  const get = await fetch(`${gw.url}/v2/models/iris/infer`);
  t.is(get.status, 405);
  t.is(get.headers.get('allow'), 'POST');
  t.regex(((await get.json()) as { error: string }).error, /method GET is not allowed/);
  const post = await fetch(`${gw.url}/v2/health/ready`, { method: 'POST', body: '{}' });
  t.is(post.status, 405);
  t.is(post.headers.get('allow'), 'GET, HEAD');
  const del = await fetch(`${gw.url}/v2/models/iris`, { method: 'DELETE' });
  t.is(del.status, 405);
});

test('unknown paths → 404 JSON', async (t) => {
  const res = await getJson(`${gw.url}/v1/models/iris:predict`);
  t.is(res.status, 404);
  t.regex(String(res.body.error), /no such endpoint/);
});

test('a request id from the caller is echoed; otherwise one is generated', async (t) => {
  const mine = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest(), { 'x-request-id': 'abc-123' });
  t.is(mine.headers.get('x-request-id'), 'abc-123');
  const generated = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
  t.regex(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
});

test('a body over the limit with Content-Length → 413 before it is read, and the connection closes', async (t) => {
  const big = JSON.stringify(irisRequest(Array.from({ length: 400 }, () => IRIS_ROW)));
  t.true(big.length > 4096);
  const response = await raw(
    `POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n${big.slice(0, 100)}`,
  );
  t.regex(response, /^HTTP\/1\.1 413 /);
  t.regex(response, /connection: close/i);
  t.regex(response, /"error":"request body exceeds the limit of 4096 bytes"/);
});

test('a chunked body growing over the limit → 413 while streaming', async (t) => {
  const chunk = 'x'.repeat(1000);
  const chunks = Array.from({ length: 6 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('');
  const response = await raw(`POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`);
  t.regex(response, /^HTTP\/1\.1 413 /);
});

test('malformed HTTP → 400 JSON; Content-Length with Transfer-Encoding → 400; oversized headers → 431', async (t) => {
  t.regex(await raw('NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request[\s\S]*"error":"malformed HTTP request/);
  const smuggle = await raw('POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  t.regex(smuggle, /^HTTP\/1\.1 400 /);
  const huge = await raw(`GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.regex(huge, /^HTTP\/1\.1 431 [\s\S]*"error":"request headers are too large"/);
});

test('after every bad input the gateway still serves', async (t) => {
  t.like(await getJson(`${gw.url}/v2/health/ready`), { status: 200 });
  t.like(await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest()), { status: 200 });
});
