// The shared rollout store against a real redis-server: one leader at a time, compare-and-set state, every replica's
// samples, and an outage that degrades (no leader, own samples only) instead of failing.

import test from 'ava';
import type { EventEmitter } from 'node:events';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { CoordinationConfig } from '../../src/config/schema.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { initialState, type RolloutState } from '../../src/rollout/machine.js';
import { connectRolloutStore } from '../../src/rollout/redis-store.js';
import { defaultReplicaId } from '../../src/rollout/store.js';
import type { SignalSnapshot } from '../../src/rollout/signals.js';
import { createLogger } from '../../src/telemetry/log.js';
import { closedPort } from '../helpers/jwt.js';
import { redisTestsEnabled, startRedis, type RedisServer } from '../helpers/redis.js';

/** The next `name` event; unlike events.once it ignores 'error' (ioredis emits one per failed reconnect attempt). */
const nextEvent = (emitter: EventEmitter, name: string) => new Promise<void>((resolve) => emitter.once(name, () => resolve()));

const redisTest = redisTestsEnabled ? test : test.skip;
const log = createLogger('silent');

/** The server the tests share; each test has its own key prefix, so they may run concurrently. */
let redis: RedisServer;
test.before(async () => {
  if (redisTestsEnabled) redis = await startRedis();
});
test.after.always(() => redis?.stop());

const storeConfig = (over: Partial<CoordinationConfig['redis']> = {}): CoordinationConfig['redis'] => ({
  url: redis.url,
  keyPrefix: `t${Math.random().toString(36).slice(2)}:`,
  leaseTtlMs: 400,
  syncIntervalMs: 50,
  commandTimeoutMs: 500,
  connectTimeoutMs: 2000,
  ...over,
});

/** Connects a store and closes it when the test ends. */
async function open(t: { teardown(fn: () => unknown): void }, config: CoordinationConfig['redis'], deps: { replicaId?: string; now?: () => number } = {}) {
  const store = await connectRolloutStore(config, { log, ...deps });
  t.teardown(() => store.close());
  return store;
}

/** Calls `probe` every `everyMs` until it returns true; false if it never did within `withinMs`. */
async function eventually(probe: () => Promise<boolean>, withinMs = 5_000, everyMs = 25): Promise<boolean> {
  const until = Date.now() + withinMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= until) return false;
    await sleep(everyMs);
  }
}

/** Resolves to 'timeout' if `p` takes longer than `ms` (a bound against hangs, not a speed assertion). */
const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, sleep(ms).then(() => 'timeout' as const)]);

const snapshot = (phaseId: number, calls: number): SignalSnapshot => ({
  phaseId,
  phaseCompared: calls * 2,
  buckets: [
    {
      start: 1_700_000_000_000,
      phaseId,
      stable: { calls, errors: 0, latency: { 120: calls } },
      candidate: { calls: calls + 1, errors: 1, latency: { 118: calls, 140: 1 } },
      compared: calls,
      agreed: calls - 1,
    },
  ],
});

redisTest('two replicas: exactly one leads while it renews; after it closes the other takes over', async (t) => {
  const config = storeConfig();
  const [a, b] = await Promise.all([open(t, config, { replicaId: 'a' }), open(t, config, { replicaId: 'b' })]);
  const won = await Promise.all([a.lead(), b.lead()]);
  t.is(won.filter(Boolean).length, 1, `exactly one leads: ${JSON.stringify(won)}`);
  const [leader, other] = won[0] ? [a, b] : [b, a];
  t.true(leader.isLeader());
  t.false(other.isLeader());

  for (let i = 0; i < 5; i++) {
    await sleep(config.leaseTtlMs / 4);
    t.true(await leader.lead(), `renewal ${i}`);
    t.false(await other.lead(), `attempt ${i}`);
  }
  t.false(other.isLeader());

  await leader.close(); // releases the lease: no waiting for it to expire
  t.true(await other.lead());
  t.true(other.isLeader());
  t.false(leader.isLeader());
});

redisTest('a leader that stops renewing loses the lease after leaseTtlMs; its own view expires by its clock', async (t) => {
  const config = storeConfig();
  let aNow = 1_000_000;
  const a = await open(t, config, { replicaId: 'a', now: () => aNow });
  const b = await open(t, config, { replicaId: 'b' });
  t.true(await a.lead());
  t.false(await b.lead());

  // a does not call lead() again: by its own clock it stops believing it leads once leaseTtlMs have passed.
  aNow += config.leaseTtlMs - 1;
  t.true(a.isLeader());
  aNow += 1;
  t.false(a.isLeader());

  // In Redis the lease expires by itself, and b takes it.
  t.true(await eventually(() => b.lead()), 'b takes the expired lease');
  t.true(b.isLeader());
  t.false(await a.lead(), 'a cannot take it back while b renews');
  t.false(a.isLeader());
});

redisTest('compareAndSet: create only if absent, then only from the expected revision; read round-trips the state', async (t) => {
  const config = storeConfig();
  const a = await open(t, config);
  const b = await open(t, config);
  const key = 'iris:abc123';
  const first = initialState(Date.now());
  t.is(await a.read(key), undefined);

  t.true(await a.compareAndSet(key, undefined, first));
  t.false(await b.compareAndSet(key, undefined, { ...first, revision: 1 }), 'exists already');
  t.deepEqual(await b.read(key), first);

  const at = first.phaseStartedAt + 60_000;
  const window = {
    stable: { calls: 120, errors: 0, timed: 120, p99Ms: 12.5, p99LowerBoundMs: 11.9 },
    candidate: { calls: 118, errors: 1, timed: 0, p99Ms: null, p99LowerBoundMs: null },
    compared: 110,
    agreed: 109,
    phaseCompared: 340,
  };
  const next: RolloutState = {
    ...first,
    status: 'running',
    phase: 'step',
    step: 0,
    phaseId: 2,
    phaseStartedAt: at,
    revision: 2,
    stableP99Ms: 12.5,
    lastDecision: {
      at,
      decision: 'advance',
      actor: 'controller',
      reason: 'every gate passed: first step',
      from: { status: 'running', phase: 'shadow', step: -1 },
      to: { status: 'running', phase: 'step', step: 0 },
      gates: [{ gate: 'agreement', status: 'pass', value: 109 / 110, limit: 0.99, samples: 110, detail: 'agreement 99.09%' }],
      window,
    },
    lastEvaluation: {
      at,
      gates: [
        { gate: 'agreement', status: 'pass', value: 109 / 110, limit: 0.99, samples: 110, detail: 'agreement 99.09%' },
        { gate: 'errorRate', status: 'waiting', value: 1 / 118, limit: 0.01, samples: 118, detail: '118/200 candidate calls' },
        { gate: 'p99', status: 'skipped', value: null, limit: null, samples: 0, detail: 'n/a' },
      ],
      window,
    },
  };
  t.false(await b.compareAndSet(key, 7, next), 'wrong revision');
  t.deepEqual(await a.read(key), first, 'a refused write changes nothing');
  t.true(await b.compareAndSet(key, 1, next));
  t.deepEqual(await a.read(key), next);
  t.false(await a.compareAndSet(key, 1, { ...next, revision: 3 }), 'the old revision is spent');

  // Two replicas racing from the same revision: one write wins.
  const raced = await Promise.all([
    a.compareAndSet(key, 2, { ...next, revision: 3, status: 'paused' }),
    b.compareAndSet(key, 2, { ...next, revision: 3, status: 'aborted' }),
  ]);
  t.is(raced.filter(Boolean).length, 1);
  t.is((await a.read(key))?.status, raced[0] ? 'paused' : 'aborted');

  const raw = new Redis(redis.url);
  t.teardown(() => raw.quit());
  t.is(await raw.pttl(`${config.keyPrefix}state:${key}`), -1, 'state never expires');
  t.is(await raw.hget(`${config.keyPrefix}state:${key}`, 'revision'), '3');
});

redisTest("forget deletes the state and this replica's samples: the same key starts afresh", async (t) => {
  const config = storeConfig();
  const a = await open(t, config, { replicaId: 'a' });
  const key = 'iris:forget';
  t.true(await a.compareAndSet(key, undefined, initialState(Date.now())));
  await a.publishSignals(key, snapshot(1, 5));
  await a.forget(key);
  t.is(await a.read(key), undefined);
  t.true(await a.compareAndSet(key, undefined, initialState(Date.now())), 'absent again: it can be created');
  const own = snapshot(1, 0);
  t.deepEqual(await a.collectSignals(key, own), [own]);
});

redisTest('collectSignals merges every live replica (own replaced by own); a silent replica drops out after the ttl', async (t) => {
  const config = storeConfig({ leaseTtlMs: 300, syncIntervalMs: 50 }); // samples live max(150, 300) = 300 ms
  const a = await open(t, config, { replicaId: 'a' });
  const b = await open(t, config, { replicaId: 'b' });
  const key = 'iris:def456';
  t.deepEqual(await a.collectSignals(key, snapshot(1, 9)), [snapshot(1, 9)], 'nobody published yet');

  await Promise.all([a.publishSignals(key, snapshot(1, 10)), b.publishSignals(key, snapshot(1, 20))]);
  const fromA = await a.collectSignals(key, snapshot(1, 11));
  t.is(fromA.length, 2);
  t.deepEqual(fromA.map((s) => s.buckets[0]!.stable.calls).sort(), [11, 20], "a's published entry is replaced by own");
  t.deepEqual(
    fromA.find((s) => s.buckets[0]!.stable.calls === 20),
    snapshot(1, 20),
    "b's snapshot round-trips",
  );
  const fromB = await b.collectSignals(key, snapshot(1, 21));
  t.deepEqual(fromB.map((s) => s.buckets[0]!.stable.calls).sort(), [10, 21]);

  // b stops publishing; a keeps going: b's samples expire and b leaves the replica set.
  const raw = new Redis(redis.url);
  t.teardown(() => raw.quit());
  const gone = await eventually(async () => {
    await a.publishSignals(key, snapshot(1, 10));
    const got = await a.collectSignals(key, snapshot(1, 12));
    return got.length === 1 && got[0]!.buckets[0]!.stable.calls === 12;
  });
  t.true(gone, "b's samples expire");
  t.deepEqual(await raw.smembers(`${config.keyPrefix}replicas:${key}`), ['a'], 'b was removed from the replica set');
  t.true((await raw.pttl(`${config.keyPrefix}replicas:${key}`)) > 0, 'the replica set expires too');
});

redisTest('Redis down: no leader, state calls reject GW_ERR_ROLLOUT_STORE_UNAVAILABLE, own samples only; it leads again once Redis is back', async (t) => {
  // Its own server: stopping the shared one would disturb the tests running alongside.
  const server = await startRedis();
  t.teardown(() => server.stop());
  const store = await open(t, storeConfig({ url: server.url, leaseTtlMs: 300, commandTimeoutMs: 200 }));
  t.true(await store.lead());
  t.true(await store.compareAndSet('m:1', undefined, initialState(Date.now())));

  const lost = nextEvent(store.client, 'close');
  await server.stop();
  await lost;
  t.false(await store.lead());
  t.false(store.isLeader());
  const readErr = await t.throwsAsync(store.read('m:1'), { instanceOf: GatewayError });
  t.is(readErr?.code, 'GW_ERR_ROLLOUT_STORE_UNAVAILABLE');
  t.regex(readErr?.message ?? '', /m:1/);
  const casErr = await t.throwsAsync(store.compareAndSet('m:1', 1, { ...initialState(Date.now()), revision: 2 }), { instanceOf: GatewayError });
  t.is(casErr?.code, 'GW_ERR_ROLLOUT_STORE_UNAVAILABLE');
  await t.notThrowsAsync(store.publishSignals('m:1', snapshot(1, 5)));
  t.deepEqual(await store.collectSignals('m:1', snapshot(1, 5)), [snapshot(1, 5)]);

  await server.start(); // empty: the lease, state and script cache are gone
  t.true(await eventually(() => store.lead()), 'leads again after ioredis reconnects');
  t.true(store.isLeader());
  t.is(await store.read('m:1'), undefined);
  t.true(await store.compareAndSet('m:1', undefined, initialState(Date.now())), 'the scripts load again');
});

test('connectRolloutStore with Redis unreachable returns after connectTimeoutMs; nothing hangs', async (t) => {
  const port = await closedPort();
  const config: CoordinationConfig['redis'] = {
    url: `redis://127.0.0.1:${port}`,
    keyPrefix: 'unreachable:',
    leaseTtlMs: 300,
    syncIntervalMs: 50,
    commandTimeoutMs: 200,
    connectTimeoutMs: 200,
  };
  const connecting = connectRolloutStore(config, { log, replicaId: 'lonely' });
  const store = await within(connecting, 5_000);
  if (store === 'timeout') return t.fail('connectRolloutStore did not return');
  t.is(store.mode, 'redis');
  t.is(store.replicaId, 'lonely');
  t.false(await store.lead());
  t.deepEqual(await store.collectSignals('m:1', snapshot(1, 1)), [snapshot(1, 1)]);
  await t.throwsAsync(store.read('m:1'), { instanceOf: GatewayError });
  t.not(await within(store.close(), 5_000), 'timeout', 'close() returns');
});

test('defaultReplicaId: host, pid and randomness', (t) => {
  const a = defaultReplicaId();
  t.true(a.startsWith(`${os.hostname()}:${process.pid}:`));
  t.regex(a, /:[0-9a-f]{8}$/);
  t.not(a, defaultReplicaId());
});
