// The remote backend over real sockets: header handling, byte-exact pass-through, remote replies, retries, timeouts, probes.

import test from 'ava';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { HttpBackend } from '../../src/backends/http.js';
import { replyFromRemote, clientHeaders, gatewayHeaders } from '../../src/backends/http-oip.js';
import { OnnxBackend } from '../../src/backends/onnx.js';
import { configSchema, type HttpBackendConfig } from '../../src/config/schema.js';
import type { ErrorCode } from '../../src/errors/codes.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { RawBody } from '../../src/protocol/binary.js';
import type { InferenceRequest } from '../../src/protocol/oip.js';
import { markShadow } from '../../src/protocol/shadow-mark.js';
import { createLogger } from '../../src/telemetry/log.js';
import { MODELS } from '../helpers/gateway.js';
import { spawnServeModel } from '../helpers/serve-model.js';
import { startHungServer } from '../helpers/upstreams.js';

const log = createLogger('silent');
const never = new AbortController().signal;

function httpConfig(url: string, extra: Record<string, unknown> = {}): HttpBackendConfig {
  const parsed = configSchema.parse({ models: { m: { versions: { '1': { backend: { kind: 'http', url, ...extra } } } } } });
  const backend = parsed.models.m!.versions['1']!.backend;
  if (backend.kind !== 'http') throw new Error('expected an http backend');
  return backend;
}

function backend(t: import('ava').ExecutionContext, url: string, extra: Record<string, unknown> = {}): HttpBackend {
  const b = new HttpBackend({ config: httpConfig(url, extra), model: 'flowers', label: 'model flowers version 1', log });
  t.teardown(() => b.close());
  return b;
}

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A real HTTP server that records every request and answers with `answer(req)`. */
async function recordingServer(t: import('ava').ExecutionContext, answer: (seen: Seen) => { status: number; body: string; headers?: Record<string, string> }) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(s);
      const a = answer(s);
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers }).end(a.body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const OIP_OK = JSON.stringify({ model_name: 'remote-name', model_version: '7', outputs: [{ name: 'y', datatype: 'FP32', shape: [1], data: [1.5] }] });

test('hop-by-hop and gateway-only headers are stripped; trace context, request id, identity and configured headers go upstream', async (t) => {
  const remote = await recordingServer(t, () => ({ status: 200, body: OIP_OK }));
  const b = backend(t, `${remote.url}/prefix/`, { model: 'iris', version: '2', headers: { 'X-Api-Key': 'k1' } });
  const incoming: http.IncomingHttpHeaders = {
    host: 'gateway.local',
    connection: 'keep-alive, x-drop-me',
    'keep-alive': 'timeout=5',
    'x-drop-me': 'listed in Connection',
    te: 'trailers',
    upgrade: 'h2c',
    'proxy-authorization': 'Basic eA==',
    authorization: 'Bearer client-token',
    cookie: 'session=1',
    'transfer-encoding': 'chunked',
    'content-length': '999',
    'content-type': 'application/json',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    tracestate: 'congo=t61rcWkgMzE',
    'x-request-id': 'client-chosen',
    'x-model-version': '1',
    'x-auth-subject': 'forged-by-client',
    'x-api-key': 'client-key',
    'x-custom': 'kept',
  };
  // Odd spacing on purpose: the remote must get these exact bytes, not a re-encoding.
  const body = Buffer.from('{ "inputs" : [ {"name":"x","shape":[1],"datatype":"FP32","data":[1.0]} ] }');
  const res = await b.forward({
    body,
    headers: clientHeaders(incoming),
    gatewayHeaders: gatewayHeaders('gw-req-1', { 'x-auth-subject': 'alice' }),
    signal: never,
  });
  t.is(res.status, 200);
  const got = remote.seen[0]!;
  t.is(got.url, '/prefix/v2/models/iris/versions/2/infer');
  t.true(got.body.equals(body), 'body forwarded byte for byte');
  // undici writes its own `connection: keep-alive`; the client's values must not appear.
  t.not(got.headers.connection, incoming.connection);
  t.is(got.headers['keep-alive'], undefined);
  t.is(got.headers['transfer-encoding'], undefined);
  t.is(got.headers.authorization, undefined);
  t.is(got.headers.cookie, undefined);
  t.is(got.headers['x-drop-me'], undefined);
  t.is(got.headers.upgrade, undefined);
  t.is(got.headers.te, undefined);
  t.is(got.headers['proxy-authorization'], undefined);
  t.is(got.headers['x-model-version'], undefined);
  t.is(got.headers.host, new URL(remote.url).host);
  t.is(got.headers['content-length'], String(body.length));
  t.like(got.headers, {
    traceparent: incoming.traceparent,
    tracestate: incoming.tracestate,
    'x-request-id': 'gw-req-1',
    'x-auth-subject': 'alice',
    'x-api-key': 'k1',
    'x-custom': 'kept',
    'content-type': 'application/json',
  });
});

test("gateway-owned headers win over the backend's configured headers and the client's", async (t) => {
  const remote = await recordingServer(t, () => ({ status: 200, body: OIP_OK }));
  const b = backend(t, remote.url, { model: 'iris', version: '2', headers: { 'X-Auth-Subject': 'from-config', 'X-Api-Key': 'k1' } });
  const res = await b.forward({
    body: Buffer.from('{}'),
    headers: clientHeaders({ 'x-auth-subject': 'forged-by-client', 'x-api-key': 'client-key', authorization: 'Bearer client' }),
    gatewayHeaders: gatewayHeaders('gw-2', { 'X-Auth-Subject': 'alice', authorization: 'Bearer verified' }),
    signal: never,
  });
  t.is(res.status, 200);
  t.like(remote.seen[0]!.headers, { 'x-auth-subject': 'alice', 'x-api-key': 'k1', authorization: 'Bearer verified', 'x-request-id': 'gw-2' });
});

test('a mirrored copy sent as tensors (infer) carries x-shadow: true; an ordinary call does not', async (t) => {
  const remote = await recordingServer(t, () => ({ status: 200, body: OIP_OK }));
  const b = backend(t, remote.url);
  const request: InferenceRequest = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: new Float32Array([1]) }] };
  const shadow = await b.infer(markShadow(request), never);
  const primary = await b.infer(request, never);
  t.is(shadow.outputs[0]!.name, 'y');
  t.is(primary.outputs[0]!.name, 'y');
  t.is(remote.seen.length, 2);
  t.is(remote.seen[0]!.headers['x-shadow'], 'true');
  t.false('x-shadow' in remote.seen[1]!.headers, JSON.stringify(remote.seen[1]!.headers));
});

const remoteReply = test.macro((t, status: number, body: string, expected: { status?: number; error?: RegExp; code?: ErrorCode; retryAfter?: string }) => {
  const headers: Record<string, string> = status === 503 ? { 'retry-after': '7' } : {};
  const res = { status, headers, body: Buffer.from(body) };
  if (expected.code) {
    const err = t.throws(() => replyFromRemote(res, { model: 'flowers', version: '1' }, 'model flowers version 1'), { instanceOf: GatewayError });
    t.is(err!.code, expected.code);
    t.regex(err!.message, expected.error!);
    return;
  }
  const reply = replyFromRemote(res, { model: 'flowers', version: '1' }, 'model flowers version 1');
  t.is(reply.status, expected.status!);
  // A 2xx answer comes back as the remote's bytes with the names spliced in; an error as its JSON body.
  const text = reply.body instanceof RawBody ? Buffer.concat(reply.body.chunks).toString() : JSON.stringify(reply.body);
  if (reply.body instanceof RawBody) t.deepEqual(JSON.parse(text), { ...(JSON.parse(body) as object), model_name: 'flowers', model_version: '1' });
  t.regex(String(reply.json?.error ?? text), expected.error!);
  if (expected.retryAfter) t.is(reply.headers['retry-after'], expected.retryAfter);
});
test('2xx: model_name and model_version become the gateway’s', remoteReply, 200, OIP_OK, { status: 200, error: /"model_name":"flowers","model_version":"1"/ });
test('400: the remote’s status and message pass through', remoteReply, 400, '{"error":"input \'x\': bad shape"}', {
  status: 400,
  error: /^input 'x': bad shape$/,
});
test('503: status, message and Retry-After pass through', remoteReply, 503, '{"error":"busy"}', { status: 503, error: /^busy$/, retryAfter: '7' });
test('500 without a JSON error body gets a clear message', remoteReply, 500, '<html>oops</html>', {
  status: 500,
  error: /model flowers version 1: the backend answered 500/,
});
test('404 means the backend is misconfigured: 502', remoteReply, 404, '{"error":"unknown model \'iris\'"}', {
  code: 'GW_ERR_BAD_GATEWAY',
  error: /404 for its configured model: unknown model 'iris'/,
});
test('a 3xx is not an OIP answer: 502', remoteReply, 302, '', { code: 'GW_ERR_BAD_GATEWAY', error: /unexpected status 302/ });
test('a 2xx that is not an inference response: 502', remoteReply, 200, '{"hello":1}', { code: 'GW_ERR_BAD_GATEWAY', error: /not an OIP inference response/ });

const iris = (rows: number): InferenceRequest => ({
  inputs: [{ name: 'input', datatype: 'FP32', shape: [rows, 4], data: new Float32Array(Array.from({ length: rows * 4 }, (_, i) => 1 + (i % 7) * 0.5)) }],
});

test('tensors in, tensors out against a real serve-model: equal to the in-process backend; remote 400 → GW_ERR_INVALID_REQUEST', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const remote = backend(t, runtime.url, { model: 'iris', version: '2' });
  await remote.start();
  t.true(remote.ready());
  t.deepEqual(remote.metadata().inputs, [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }]);
  t.true(await remote.checkReady(never));
  const local = new OnnxBackend({ path: path.join(MODELS, 'iris-v2.onnx'), workers: 1, intraOpThreads: 1, maxQueue: 8, label: 'local', log });
  t.teardown(() => local.close());
  await local.start();
  const [a, b] = await Promise.all([remote.infer(iris(3), never), local.infer(iris(3), never)]);
  t.deepEqual(
    a.outputs.map((o) => [o.name, o.datatype, o.shape, Array.from(o.data as ArrayLike<number | bigint>)]),
    b.outputs.map((o) => [o.name, o.datatype, o.shape, Array.from(o.data as ArrayLike<number | bigint>)]),
  );
  const bad = await t.throwsAsync(remote.infer({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3], data: new Float32Array(3) }] }, never), {
    instanceOf: GatewayError,
  });
  t.is(bad!.code, 'GW_ERR_INVALID_REQUEST');
  t.regex(bad!.message, /the backend refused the request: input 'input': shape \[1,3\] does not match/);
});

const refused = test.macro(async (t, retry: Record<string, unknown>, expectedRetries: number) => {
  const closed = await startHungServer();
  const url = closed.url;
  await closed.close(); // nothing listens there now: connection refused
  const b = backend(t, url, { retry, probeTimeoutMs: 200 });
  await b.start(); // an unreachable remote does not fail start
  t.false(b.ready());
  t.throws(() => b.metadata(), { instanceOf: GatewayError, message: /metadata has not been fetched yet/ });
  t.false(await b.checkReady(never));
  const err = await t.throwsAsync(b.forward({ body: Buffer.from('{}'), headers: {}, signal: never }), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_BACKEND_UNREACHABLE');
  t.is(err!.status, 503);
  t.is(err!.headers['retry-after'], '1');
  t.regex(err!.message, /model flowers version 1: the backend is unreachable \(ECONNREFUSED\)/);
  t.is(b.retries, expectedRetries);
});
test('connection refused: retried once, within the budget', refused, {}, 1);
test('connection refused with an empty budget: not retried', refused, { budgetPercent: 0, minRetriesPerSecond: 0 }, 0);
test('connection refused with retries disabled: not retried', refused, { enabled: false }, 0);

test('a connection reset after the request was sent is never retried (the remote may have run it)', async (t) => {
  let requests = 0;
  const server = http.createServer((req) => {
    req.resume();
    req.on('end', () => {
      requests++;
      req.socket.destroy();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const b = backend(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, { probeTimeoutMs: 200 });
  const err = await t.throwsAsync(b.forward({ body: Buffer.from('{"inputs":[]}'), headers: { 'content-type': 'application/json' }, signal: never }), {
    instanceOf: GatewayError,
  });
  t.is(err!.status, 503);
  t.is(requests, 1);
  t.is(b.retries, 0);
});

test('a hung remote: the transport timeout is a 504 and never retried; an aborted call frees its socket', async (t) => {
  const hung = await startHungServer();
  t.teardown(() => hung.close());
  const b = backend(t, hung.url, { headersTimeoutMs: 300, probeTimeoutMs: 100, probeIntervalMs: 60_000, keepAliveTimeoutMs: 300 });
  await b.start();
  t.false(b.ready(), 'the metadata probe timed out');
  const err = await t.throwsAsync(b.forward({ body: Buffer.from('{}'), headers: {}, signal: never }), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_BACKEND_TIMEOUT');
  t.is(err!.status, 504);
  t.is(hung.requests('POST'), 1, 'sent once: timeouts are never retried');
  t.is(b.retries, 0);

  const aborter = new AbortController();
  const call = b.forward({ body: Buffer.from('{}'), headers: {}, signal: aborter.signal });
  await hung.whenRequests('POST', 2);
  const reason = new GatewayError('GW_ERR_DEADLINE_EXCEEDED');
  aborter.abort(reason);
  t.is(await t.throwsAsync(call), reason);
  // undici replaces an aborted connection with an idle one, which closes after keepAliveTimeoutMs: nothing lingers.
  await hung.whenOpenAtMost(0);
});
