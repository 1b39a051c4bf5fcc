// Breaker stage: guards the backend call per version; an open breaker diverts to the model's fallback (x-model-fallback).

import test from 'ava';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { createBackend } from '../../src/backends/create.js';
import { parseConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { RequestBody } from '../../src/http/request-body.js';
import { ModelCatalog } from '../../src/models/catalog.js';
import type { Context, Reply } from '../../src/pipeline/stage.js';
import { GuardRegistry } from '../../src/resilience/registry.js';
import { breakerStage } from '../../src/stages/breaker.js';
import { createLogger } from '../../src/telemetry/log.js';
import { IRIS_ROW, ROOT, gatewayConfig, irisModels, irisRequest } from '../helpers/gateway.js';

const log = createLogger('silent');

async function setup(t: import('ava').ExecutionContext, options: { fallback?: string; limits?: Record<string, unknown> } = {}) {
  const models = irisModels() as { iris: Record<string, unknown> & { versions: Record<string, Record<string, unknown>> } };
  if (options.fallback) models.iris.fallback = options.fallback;
  models.iris.versions['2']!.breaker = { volumeThreshold: 2, resetTimeoutMs: 60_000 };
  if (options.limits) models.iris.versions['2']!.limits = options.limits;
  const config = await parseConfig(gatewayConfig({ models }), { baseDir: ROOT, source: 'test' });
  const catalog = ModelCatalog.fromConfig(config, (m, v, b) => createBackend(m, v, b, log));
  await catalog.start();
  const registry = new GuardRegistry({ log });
  t.teardown(async () => {
    registry.close();
    await catalog.close();
  });
  const stage = breakerStage(config, catalog, registry.bind(config, catalog));
  const ctx = (): Context => {
    const req = new IncomingMessage(new Socket());
    req.push(JSON.stringify(irisRequest([IRIS_ROW])));
    req.push(null);
    return {
      requestId: 'r1',
      operation: 'infer',
      modelName: 'iris',
      pathVersion: '2',
      headers: {},
      rawHeaders: [],
      clientAddress: '127.0.0.1',
      signal: new AbortController().signal,
      body: new RequestBody(req, 1 << 20),
      target: catalog.get('iris')!.versions.get('2')!,
      responseHeaders: { 'x-model-version': '2' },
      upstreamHeaders: {},
    };
  };
  const fail = () => Promise.reject(new GatewayError('GW_ERR_BACKEND_UNAVAILABLE'));
  const openV2 = async () => {
    for (let i = 0; i < 2; i++) await t.throwsAsync(stage.handle(ctx(), fail));
    t.is(registry.get('iris', '2')!.snapshot().breaker.state, 'open');
  };
  return { stage, ctx, registry, openV2 };
}

test('an open breaker with a fallback: the fallback version serves, once, with its own decoded request', async (t) => {
  const { stage, ctx, openV2 } = await setup(t, { fallback: '1' });
  await openV2();
  const c = ctx();
  let calls = 0;
  const reply = await stage.handle(c, async () => {
    calls++;
    return { status: 200, body: { served: c.target!.version } };
  });
  t.deepEqual(reply, { status: 200, body: { served: '1' } });
  t.is(calls, 1);
  t.like(c.responseHeaders, { 'x-model-version': '1', 'x-model-fallback': '2' });
  t.deepEqual(c.inference?.inputs[0]?.shape, [1, 4], 'decoded against the fallback version');
});

test('an open breaker without a fallback: 503 GW_ERR_CIRCUIT_OPEN with Retry-After, backend not called', async (t) => {
  const { stage, ctx, openV2 } = await setup(t);
  await openV2();
  let called = false;
  const err = await t.throwsAsync(
    stage.handle(ctx(), async () => {
      called = true;
      return { status: 200, body: {} };
    }),
    { instanceOf: GatewayError },
  );
  t.false(called);
  t.is(err!.code, 'GW_ERR_CIRCUIT_OPEN');
  t.is(err!.headers['retry-after'], '60');
});

test("5xx replies passed through from a remote are returned as they are and count against the version", async (t) => {
  const { stage, ctx, registry } = await setup(t);
  const remote5xx: Reply = { status: 502, body: { error: 'remote broke' } };
  t.is(await stage.handle(ctx(), () => Promise.resolve(remote5xx)), remote5xx);
  t.is(await stage.handle(ctx(), () => Promise.resolve(remote5xx)), remote5xx);
  t.is(registry.get('iris', '2')!.snapshot().breaker.state, 'open');
});

test('4xx replies never open it', async (t) => {
  const { stage, ctx, registry } = await setup(t);
  for (let i = 0; i < 20; i++) await stage.handle(ctx(), () => Promise.resolve({ status: 400, body: { error: 'bad input' } }));
  t.like(registry.get('iris', '2')!.snapshot().breaker, { state: 'closed', window: { requests: 20, failures: 0 } });
});

test('beyond the concurrency cap: 503 GW_ERR_OVERLOADED at once, no fallback, the backend never called', async (t) => {
  const { stage, ctx } = await setup(t, { fallback: '1', limits: { maxConcurrent: 1 } });
  let release!: () => void;
  const held = stage.handle(ctx(), () => new Promise<Reply>((resolve) => (release = () => resolve({ status: 200, body: {} }))));
  let calls = 0;
  const err = await t.throwsAsync(
    stage.handle(ctx(), async () => {
      calls++;
      return { status: 200, body: {} };
    }),
    { instanceOf: GatewayError },
  );
  t.is(err!.code, 'GW_ERR_OVERLOADED');
  t.is(err!.headers['retry-after'], '1');
  t.is(calls, 0);
  release();
  await held;
  t.is((await stage.handle(ctx(), () => Promise.resolve({ status: 200, body: {} }))).status, 200, 'the slot is free again');
});
