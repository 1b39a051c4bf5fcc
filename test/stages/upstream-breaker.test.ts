// The upstream stage's guards: each version's breaker and concurrency cap; an open breaker diverts to the model's
// fallback (x-model-fallback) before the failing version is called.

import test from 'ava';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { replyJson, answer, remoteOk, upstreamUnit } from '../helpers/upstream-unit.js';

const fail = () => Promise.reject(new GatewayError('GW_ERR_BACKEND_UNAVAILABLE'));

async function openedV2(t: import('ava').ExecutionContext, options: Parameters<typeof upstreamUnit>[1] = {}) {
  const u = await upstreamUnit(t, options);
  u.scriptV2(fail);
  for (let i = 0; i < 2; i++) await t.throwsAsync(u.run(u.ctx({ pinned: true })));
  t.is(u.registry.get('iris', '2')!.snapshot().breaker.state, 'open');
  u.served.length = 0;
  return u;
}

test('an open breaker with a fallback: the fallback version serves, once, with its own decoded request', async (t) => {
  const u = await openedV2(t, { fallback: '1' });
  const c = u.ctx({ pinned: true });
  const reply = await u.run(c);
  t.is(reply.status, 200);
  t.like(replyJson(reply.body), { model_name: 'iris', model_version: '1' });
  t.deepEqual(u.served, ['1'], 'version 2 was not called');
  t.like(c.responseHeaders, { 'x-model-version': '1', 'x-model-fallback': '2' });
  t.deepEqual(c.inference?.inputs[0]?.shape, [1, 4], 'decoded against the fallback version');
});

test('an open breaker without a fallback: 503 GW_ERR_CIRCUIT_OPEN with Retry-After, backend not called', async (t) => {
  const u = await openedV2(t);
  const err = await t.throwsAsync(u.run(u.ctx({ pinned: true })), { instanceOf: GatewayError });
  t.deepEqual(u.served, []);
  t.is(err!.code, 'GW_ERR_CIRCUIT_OPEN');
  t.is(err!.headers['retry-after'], '60');
});

test('5xx replies passed through from a remote are returned as they are and count against the version', async (t) => {
  const u = await upstreamUnit(t);
  u.scriptV2(async () => answer(502, { error: 'remote broke' }));
  for (let i = 0; i < 2; i++) t.deepEqual(await u.run(u.ctx({ pinned: true })), { status: 502, body: { error: 'remote broke' }, headers: {} });
  t.is(u.registry.get('iris', '2')!.snapshot().breaker.state, 'open');
});

test('4xx replies never open it', async (t) => {
  const u = await upstreamUnit(t);
  u.scriptV2(async () => answer(400, { error: 'bad input' }));
  for (let i = 0; i < 20; i++) t.is((await u.run(u.ctx({ pinned: true }))).status, 400);
  t.like(u.registry.get('iris', '2')!.snapshot().breaker, { state: 'closed', window: { requests: 20, failures: 0 } });
});

test('beyond the concurrency cap: 503 GW_ERR_OVERLOADED at once, no fallback, the backend never called', async (t) => {
  const u = await upstreamUnit(t, { fallback: '1', limits: { maxConcurrent: 1 } });
  let release!: () => void;
  u.scriptV2(
    () => new Promise((resolve) => (release = () => resolve(remoteOk()))),
    async () => remoteOk(),
  );
  const held = u.run(u.ctx({ pinned: true }));
  await new Promise((resolve) => setImmediate(resolve));
  const err = await t.throwsAsync(u.run(u.ctx({ pinned: true })), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_OVERLOADED');
  t.is(err!.headers['retry-after'], '1');
  t.deepEqual(u.served, ['2'], 'only the held call reached a backend');
  release();
  await held;
  t.is((await u.run(u.ctx({ pinned: true }))).status, 200, 'the slot is free again');
});
