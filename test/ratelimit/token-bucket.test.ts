// Token-bucket arithmetic, the memory store, the draft headers and rule compilation, all on an injected clock.

import test from 'ava';
import { createContext } from '../../src/pipeline/context.js';
import { configSchema } from '../../src/config/schema.js';
import type { Context } from '../../src/pipeline/stage.js';
import { limitItem, policyItem } from '../../src/ratelimit/headers.js';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';
import { bucketKey, clientAddress, compileRules, requestCost } from '../../src/ratelimit/rules.js';
import { secondsUntilAvailable, secondsUntilFull, takeTokens, type BucketState } from '../../src/ratelimit/token-bucket.js';

const policy = { ratePerSecond: 10, burst: 5 };

const step = test.macro({
  exec(t, state: BucketState | undefined, cost: number, now: number, allowed: boolean, tokens: number) {
    const result = takeTokens(state, policy, cost, now);
    t.is(result.allowed, allowed);
    t.true(Math.abs(result.state.tokens - tokens) < 1e-9, `tokens ${result.state.tokens} ≠ ${tokens}`);
  },
  title: (title = '') => `token bucket: ${title}`,
});
test('a new key starts full', step, undefined, 1, 1000, true, 4);
test('refills at the rate', step, { tokens: 0, updatedAt: 1000 }, 1, 1100, true, 0);
test('never above the burst', step, { tokens: 4, updatedAt: 0 }, 1, 60_000, true, 4);
test('refuses without spending', step, { tokens: 0.5, updatedAt: 1000 }, 1, 1000, false, 0.5);
test('float refills count as whole tokens', step, { tokens: 0, updatedAt: 0 }, 1, 100, true, 0);
test('a clock stepping back does not refill', step, { tokens: 0, updatedAt: 5000 }, 1, 1000, false, 0);
test('costs above one (rows)', step, { tokens: 5, updatedAt: 0 }, 3, 0, true, 2);

test('retry and reset times', (t) => {
  t.is(secondsUntilAvailable(0, 1, policy), 1); // 0.1 s rounds up to 1 s (Retry-After is whole seconds)
  t.is(secondsUntilAvailable(0, 30, { ratePerSecond: 10, burst: 50 }), 3);
  t.is(secondsUntilFull(5, policy), 0);
  t.is(secondsUntilFull(0, { ratePerSecond: 2, burst: 9 }), 5);
});

test('draft headers: q/w is the sustained rate, r whole tokens left, t equals Retry-After on a refusal', (t) => {
  t.is(policyItem('p', { ratePerSecond: 10, burst: 20 }), '"p";q=20;w=2');
  t.is(policyItem('p', { ratePerSecond: 100, burst: 10 }), '"p";q=100;w=1');
  t.is(policyItem('p', { ratePerSecond: 0.5, burst: 5 }), '"p";q=5;w=10');
  t.is(limitItem('p', { ratePerSecond: 2, burst: 10 }, { allowed: true, tokens: 7.5 }, 1), '"p";r=7;t=2');
  t.is(limitItem('p', { ratePerSecond: 2, burst: 10 }, { allowed: false, tokens: 0.5 }, 4), '"p";r=0;t=2');
});

test('memory store: keys are independent, and the least recently used key is evicted at maxKeys', async (t) => {
  let now = 0;
  const store = new MemoryStore(2, () => now);
  const take = (key: string) => store.take({ key, policy: { ratePerSecond: 1, burst: 1 }, cost: 1, failureMode: 'open' });
  t.true((await take('a')).allowed);
  t.true((await take('b')).allowed);
  t.false((await take('a')).allowed); // a is now most recent
  t.true((await take('c')).allowed); // evicts b
  t.is(store.size, 2);
  t.true((await take('b')).allowed); // b starts full again
  now = 1000;
  t.true((await take('c')).allowed);
});

function ctx(over: Partial<Context> & { rawHeaders?: string[] }): Context {
  const { operation = 'infer', headers = {}, rawHeaders, ...rest } = over;
  const c = createContext({ operation, modelName: 'iris', pathVersion: undefined, headers, rawHeaders: rawHeaders ?? [], clientAddress: '10.0.0.9' });
  return Object.assign(c, rest);
}

test('client address: the peer, or the N-th X-Forwarded-For entry from the right', (t) => {
  const c = ctx({ headers: { 'x-forwarded-for': '6.6.6.6, 1.2.3.4, 10.0.0.1' } });
  t.is(clientAddress(c, 0), '10.0.0.9');
  t.is(clientAddress(c, 1), '10.0.0.1');
  t.is(clientAddress(c, 2), '1.2.3.4');
  t.is(clientAddress(c, 5), '10.0.0.9'); // fewer entries than trusted hops: the peer
});

test('rules: phases, matching, keys and costs', (t) => {
  const config = configSchema.parse({
    models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: '/a' } }, '2': { backend: { kind: 'onnx', path: '/b' } } } } },
    auth: { issuers: [{ issuer: 'i', audiences: ['a'], algorithms: ['ES256'], jwks: { url: 'https://i/j' } }] },
    rateLimits: {
      rules: [
        { name: 'by-sub', key: { claim: 'sub' }, ratePerSecond: 1, burst: 1 },
        { name: 'v2', versions: ['2'], key: { header: 'X-Tenant' }, ratePerSecond: 1, burst: 1 },
        { name: 'rows', models: ['iris'], key: { clientAddress: {} }, ratePerSecond: 1, burst: 1, cost: 'rows', operations: ['infer', 'model-metadata'] },
      ],
    },
  });
  const [bySub, v2, rows] = compileRules(config.rateLimits);
  t.deepEqual([bySub!.phase, v2!.phase, rows!.phase], ['admission', 'routed', 'routed']);
  const identity = { issuer: 'i', subject: 'alice', scopes: new Set<string>(), claims: { sub: 'alice' } };
  // A claim is qualified by its issuer: the same sub from another trusted issuer is another bucket (RFC 7519 §4.1.2).
  t.is(bySub!.keyOf(ctx({ identity })), '["i","alice"]');
  t.is(bySub!.keyOf(ctx({ identity: { ...identity, issuer: 'partner' } })), '["partner","alice"]');
  t.is(bySub!.keyOf(ctx({})), ''); // no identity: the shared bucket
  t.is(v2!.keyOf(ctx({ headers: { 'x-tenant': ' acme ' } })), 'acme');
  // A repeated header is keyed by its first value, never by Node's comma-joined merge.
  t.is(v2!.keyOf(ctx({ headers: { 'x-tenant': 'acme, evil' }, rawHeaders: ['X-Tenant', 'acme', 'X-Tenant', 'evil'] })), 'acme');
  t.false(v2!.matches(ctx({})));
  t.true(v2!.matches(ctx({ target: { model: 'iris', version: '2' } as Context['target'] })));
  t.false(bySub!.matches(ctx({ operation: 'model-ready' })));
  const batch = ctx({ inference: { inputs: [{ name: 'input', datatype: 'FP32', shape: [7, 4], data: new Float32Array(28) }] } });
  t.is(requestCost(rows!, batch), 7);
  t.is(requestCost(bySub!, batch), 1);
  t.is(requestCost(rows!, ctx({ operation: 'model-metadata' })), 1);
  t.is(bucketKey(bySub!, '["i","alice"]'), 'by-sub:["i","alice"]');
  t.regex(bucketKey(bySub!, 'x'.repeat(500)), /^by-sub:sha256:[A-Za-z0-9_-]{43}$/);
  t.regex(bucketKey(bySub!, 'has space'), /^by-sub:sha256:/);
});

test('composite keys: a claim with the model, the model alone, a header with the serving version (decided after routing)', (t) => {
  const config = configSchema.parse({
    models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: '/a' } } } }, mlp: { versions: { '1': { backend: { kind: 'onnx', path: '/b' } } } } },
    auth: { issuers: [{ issuer: 'i', audiences: ['a'], algorithms: ['ES256'], jwks: { url: 'https://i/j' } }] },
    rateLimits: {
      rules: [
        { name: 'tenant-model', key: { claim: 'tenant', model: true }, ratePerSecond: 1, burst: 1 },
        { name: 'per-model', key: { model: true }, ratePerSecond: 1, burst: 1 },
        { name: 'header-version', key: { header: 'x-team', version: true }, ratePerSecond: 1, burst: 1 },
      ],
    },
  });
  const [tenantModel, perModel, headerVersion] = compileRules(config.rateLimits);
  t.deepEqual([tenantModel!.phase, perModel!.phase, headerVersion!.phase], ['admission', 'admission', 'routed']);
  const identity = { issuer: 'i', subject: 'alice', scopes: new Set<string>(), claims: { sub: 'alice', tenant: 'acme' } };
  t.is(tenantModel!.keyOf(ctx({ identity })), '["i","acme","iris"]');
  t.is(tenantModel!.keyOf(ctx({ identity, modelName: 'mlp' })), '["i","acme","mlp"]');
  t.is(perModel!.keyOf(ctx({})), 'iris');
  const target = { model: 'iris', version: '1' } as Context['target'];
  t.is(headerVersion!.keyOf(ctx({ headers: { 'x-team': 'ml' }, target })), '["ml","1"]');
  t.is(tenantModel!.keyOf(ctx({ modelName: '' })), '', 'no value at all: the shared bucket');
});
