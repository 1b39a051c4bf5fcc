// Access logs: one JSON line per request with the fields operators join on; sampled, 5xx always kept, never a token.

import test from 'ava';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/main.js';
import { createAccessLog, type AccessEntry } from '../../src/telemetry/access-log.js';
import { createLogger } from '../../src/telemetry/log.js';
import { ROOT, gatewayConfig, irisRequest, postJson } from '../helpers/gateway.js';

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
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
});

test('disabled: nothing is written', (t) => {
  const { stream, lines } = sink();
  createAccessLog(createLogger('info', stream), { enabled: false, sampleRate: 1 })(entry(500));
  t.is(lines().length, 0);
});

test('a real gateway writes one line per model request with request id, trace id, model, version, status and latency', async (t) => {
  const { stream, lines } = sink();
  const raw = { ...gatewayConfig(), logging: { level: 'info', accessLog: { enabled: true, sampleRate: 1 } } };
  const config = await parseConfig(raw, { baseDir: ROOT, source: 'test' });
  const gw = await startGateway(config, createLogger('info', stream));
  t.teardown(() => gw.stop());
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const ok = await postJson(`${gw.url}/v2/models/iris/versions/2/infer`, irisRequest(), { 'x-request-id': 'req-ok', traceparent, authorization: 'Bearer secret-token-value' });
  t.is(ok.status, 200);
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, { inputs: 3 }, { 'x-request-id': 'req-bad' })).status, 400);
  await new Promise((r) => setTimeout(r, 50)); // pino writes asynchronously
  const access = lines().filter((l) => l.log === 'access');
  t.is(access.length, 2);
  t.like(access.find((l) => l.requestId === 'req-ok'), {
    msg: 'request',
    method: 'POST',
    path: '/v2/models/iris/versions/2/infer',
    model: 'iris',
    version: '2',
    status: 200,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    shadows: 0,
  });
  t.like(access.find((l) => l.requestId === 'req-bad'), { status: 400, errorCode: 'GW_ERR_INVALID_REQUEST', version: '1' });
  t.true(typeof access[0]!.latencyMs === 'number');
  t.false(JSON.stringify(lines()).includes('secret-token-value'));
});
