// Access logs: one JSON line per request with the fields operators join on (subject, shadows, fallback included);
// sampled, 5xx always kept, never a token.

import test from 'ava';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/app/gateway.js';
import { createAccessLog, type AccessEntry } from '../../src/telemetry/access-log.js';
import { createLogger } from '../../src/telemetry/log.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { MODELS, ROOT, gatewayConfig, irisRequest, postJson } from '../helpers/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const entry = (status: number): AccessEntry => ({
  requestId: 'r',
  traceId: undefined,
  method: 'POST',
  path: '/v2/models/iris/infer',
  model: 'iris',
  version: '1',
  status,
  latencyMs: 1.23456,
  subject: 'alice',
  shadows: 0,
  fallbackFrom: undefined,
  errorCode: undefined,
});

test('sampling keeps the configured share of non-5xx lines and every 5xx line', (t) => {
  const { stream, lines } = sink();
  let i = 0;
  const rng = () => (i++ % 4) / 4; // 0, .25, .5, .75, ...
  const log = createAccessLog(createLogger('info', stream), { enabled: true, sampleRate: 0.5, rng });
  for (let n = 0; n < 8; n++) log(entry(200));
  for (let n = 0; n < 3; n++) log(entry(503));
  const out = lines();
  t.is(out.filter((l) => l.status === 200).length, 4);
  t.is(out.filter((l) => l.status === 503).length, 3);
  t.is(out[0]!.latencyMs, 1.235);
  t.is(out[0]!.protocol, 'http', 'an entry without a protocol came over HTTP');
});

test('disabled: nothing is written, and the data plane is told not to build entries', (t) => {
  const { stream, lines } = sink();
  const off = createAccessLog(createLogger('info', stream), { enabled: false, sampleRate: 1 });
  off(entry(500));
  t.is(lines().length, 0);
  t.false(off.wants());
});

test('the log level decides too: below info no entry is wanted; at info it is', (t) => {
  t.false(createAccessLog(createLogger('warn'), { enabled: true, sampleRate: 1 }).wants());
  t.true(createAccessLog(createLogger('info'), { enabled: true, sampleRate: 1 }).wants());
});

const ISSUER = 'https://idp.example';
const AUDIENCE = 'model-gateway';
const signingKey = ecKey('access-log-1');

test('a real gateway (auth on) writes one line per model request: ids, model, version, status, latency, subject, shadows, fallback', async (t) => {
  const { stream, lines } = sink();
  const v1 = { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } };
  const v2 = { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } };
  const raw = {
    ...gatewayConfig({
      models: {
        // Requests served by version 1 are mirrored to version 2.
        iris: { defaultVersion: '1', versions: { '1': v1, '2': v2 }, shadow: { targets: [{ version: '2', percent: 100 }] } },
        // Version 2 fails every call (fault injection below); one failure opens its breaker, then version 1 answers.
        flaky: { defaultVersion: '1', fallback: '1', versions: { '1': v1, '2': { ...v2, breaker: { volumeThreshold: 1, resetTimeoutMs: 60_000 } } } },
      },
    }),
    auth: { issuers: [{ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['ES256'], jwks: { keys: [signingKey.jwk] } }] },
    logging: { level: 'info', accessLog: { enabled: true, sampleRate: 1 } },
  };
  const config = await parseConfig(raw, { baseDir: ROOT, source: 'test' });
  const log = createLogger('info', stream);
  const { factory } = faultInjectingFactory({ 'flaky/2': { fail: true } }, log);
  const gw = await startGateway(config, log, { backendFactory: factory });
  t.teardown(() => gw.stop());

  const now = Math.floor(Date.now() / 1000);
  const token = tokenFor(signingKey, { iss: ISSUER, aud: AUDIENCE, sub: 'alice@example', iat: now, exp: now + 600 });
  const authorization = `Bearer ${token}`;
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const send = async (url: string, body: unknown, requestId: string, extra: Record<string, string> = {}) =>
    (await postJson(`${gw.url}${url}`, body, { 'x-request-id': requestId, authorization, ...extra })).status;

  t.is(await send('/v2/models/iris/versions/2/infer', irisRequest(), 'req-ok', { traceparent }), 200);
  t.is(await send('/v2/models/iris/infer', { inputs: 3 }, 'req-bad'), 400);
  t.is(await send('/v2/models/iris/infer', irisRequest(), 'req-shadowed'), 200);
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest(), { 'x-request-id': 'req-anonymous' })).status, 401);
  t.is(await send('/v2/models/flaky/versions/2/infer', irisRequest(), 'req-failed'), 500);
  t.is(gw.guards.get('flaky', '2')!.snapshot().breaker.state, 'open');
  t.is(await send('/v2/models/flaky/versions/2/infer', irisRequest(), 'req-fallback'), 200);
  await new Promise((r) => setTimeout(r, 50)); // pino writes asynchronously
  const access = lines().filter((l) => l.log === 'access');
  t.is(access.length, 6);
  const line = (requestId: string) => access.find((l) => l.requestId === requestId);
  t.like(line('req-ok'), {
    msg: 'request',
    method: 'POST',
    path: '/v2/models/iris/versions/2/infer',
    model: 'iris',
    version: '2',
    status: 200,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    subject: 'alice@example',
    shadows: 0, // pinned to the shadow target itself: nothing to mirror
  });
  t.is(line('req-ok')!.fallbackFrom, undefined);
  t.like(line('req-bad'), { status: 400, errorCode: 'GW_ERR_INVALID_REQUEST', version: '1', subject: 'alice@example', shadows: 0 });
  t.like(line('req-shadowed'), { status: 200, version: '1', subject: 'alice@example', shadows: 1 });
  t.is(line('req-shadowed')!.fallbackFrom, undefined);
  t.like(line('req-anonymous'), { status: 401, errorCode: 'GW_ERR_UNAUTHENTICATED' });
  t.is(line('req-anonymous')!.subject, undefined);
  t.like(line('req-failed'), { model: 'flaky', version: '2', status: 500, errorCode: 'GW_ERR_BACKEND_FAILED', subject: 'alice@example' });
  t.is(line('req-failed')!.fallbackFrom, undefined);
  t.like(line('req-fallback'), { status: 200, model: 'flaky', version: '1', fallbackFrom: '2', subject: 'alice@example', shadows: 0 });
  t.true(typeof access[0]!.latencyMs === 'number');
  // The token (or any part of it: header, claims, signature) is in no line, access or otherwise.
  const written = JSON.stringify(lines());
  for (const part of token.split('.')) t.false(written.includes(part));
});
