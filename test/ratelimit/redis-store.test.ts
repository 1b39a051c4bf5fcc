// The Redis store against a real redis-server: the Lua script matches the JS arithmetic, and each failure mode holds through an outage.

import test from 'ava';
import type { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';
import { connectRedisStore, RedisStore } from '../../src/ratelimit/redis-store.js';
import { StoreUnavailableError, type BucketRequest } from '../../src/ratelimit/store.js';
import { takeTokens, type BucketState } from '../../src/ratelimit/token-bucket.js';
import { createLogger } from '../../src/telemetry/log.js';
import { redisTestsEnabled, startRedis, type RedisServer } from '../helpers/redis.js';

/** The next `name` event; unlike events.once it ignores 'error' (ioredis emits one per failed reconnect attempt). */
const nextEvent = (emitter: EventEmitter, name: string) => new Promise<void>((resolve) => emitter.once(name, () => resolve()));

const redisTest = redisTestsEnabled ? test.serial : test.skip;
const log = createLogger('silent');

let redis: RedisServer;
test.before(async () => {
  if (redisTestsEnabled) redis = await startRedis();
});
test.after.always(() => redis?.stop());

const storeConfig = (over: Record<string, unknown> = {}) => ({
  kind: 'redis' as const,
  url: redis.url,
  keyPrefix: `t${Math.random().toString(36).slice(2)}:`,
  commandTimeoutMs: 200,
  connectTimeoutMs: 2000,
  fallbackMaxKeys: 100,
  ...over,
});

redisTest('the Lua script decides exactly like the JS token bucket (passed clock, 300 random steps)', async (t) => {
  let now = 1_700_000_000_000;
  const store = await connectRedisStore(storeConfig(), { log, now: () => now });
  t.teardown(() => store.close());
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  const policy = { ratePerSecond: 7.5, burst: 12 };
  let local: BucketState | undefined;
  for (let i = 0; i < 300; i++) {
    now += Math.floor(random() * 400);
    const cost = 1 + Math.floor(random() * 4);
    const expected = takeTokens(local, policy, cost, now);
    local = expected.state;
    const got = await store.take({ key: 'k', policy, cost, failureMode: 'closed' });
    t.is(got.allowed, expected.allowed, `step ${i}`);
    t.true(Math.abs(got.tokens - expected.state.tokens) < 1e-6, `step ${i}: ${got.tokens} vs ${expected.state.tokens}`);
    t.false(got.degraded);
  }
});

redisTest('with Redis TIME: a burst is spent once, across two clients (two replicas)', async (t) => {
  const config = storeConfig();
  const [a, b] = await Promise.all([connectRedisStore(config, { log }), connectRedisStore(config, { log })]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const request: BucketRequest = { key: 'shared', policy: { ratePerSecond: 0.001, burst: 10 }, cost: 1, failureMode: 'closed' };
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).take(request)));
  t.is(results.filter((r) => r.allowed).length, 10);
  const client = new Redis(redis.url);
  t.teardown(() => client.quit());
  const ttl = await client.pttl(`${config.keyPrefix}shared`);
  t.true(ttl > 0, 'bucket keys expire');
});

redisTest('Redis down: open rules decide with the local fallback bucket, closed rules throw; both recover when it returns', async (t) => {
  const store = await connectRedisStore(storeConfig(), { log });
  t.teardown(() => store.close());
  const open: BucketRequest = { key: 'o', policy: { ratePerSecond: 0.001, burst: 3 }, cost: 1, failureMode: 'open' };
  const closed: BucketRequest = { ...open, key: 'c', failureMode: 'closed' };
  t.false((await store.take(open)).degraded);
  t.false((await store.take(closed)).degraded);

  const lost = nextEvent(store.client, 'close');
  await redis.stop();
  await lost;
  const during = [await store.take(open), await store.take(open), await store.take(open), await store.take(open)];
  t.true(during.every((d) => d.degraded));
  t.deepEqual(
    during.map((d) => d.allowed),
    [true, true, true, false],
  ); // the local bucket still limits
  await t.throwsAsync(store.take(closed), { instanceOf: StoreUnavailableError });
  t.like(store.stats, { storeErrors: 5, fallbackDecisions: 4, failedClosed: 1, disconnects: 1 });

  const back = nextEvent(store.client, 'ready');
  await redis.start();
  await back; // ioredis reconnects on its own
  const after = await store.take(closed); // the script cache is empty after the restart: EVAL reloads it
  t.false(after.degraded);
  t.true(after.allowed);
  t.false((await store.take(open)).degraded);
});

redisTest('a hung Redis (command timeout) counts as unavailable', async (t) => {
  const store = await connectRedisStore(storeConfig({ commandTimeoutMs: 50 }), { log });
  t.teardown(() => store.close());
  const blocker = new Redis(redis.url);
  t.teardown(() => blocker.quit());
  // CLIENT PAUSE holds every other client's commands past the store's command timeout.
  await blocker.call('CLIENT', 'PAUSE', '300', 'ALL');
  await t.throwsAsync(store.take({ key: 'h', policy: { ratePerSecond: 1, burst: 1 }, cost: 1, failureMode: 'closed' }), { instanceOf: StoreUnavailableError });
  t.is(store.stats.storeErrors, 1);
});

test('RedisStore with a client that is not connected never waits: it decides at once by failureMode', async (t) => {
  const client = new Redis({ lazyConnect: true, enableOfflineQueue: false });
  const store = new RedisStore(client, { keyPrefix: 'x:', fallback: new MemoryStore(10, () => 0), log });
  t.true((await store.take({ key: 'k', policy: { ratePerSecond: 1, burst: 1 }, cost: 1, failureMode: 'open' })).degraded);
  await t.throwsAsync(store.take({ key: 'k', policy: { ratePerSecond: 1, burst: 1 }, cost: 1, failureMode: 'closed' }), { instanceOf: StoreUnavailableError });
  client.disconnect();
});
