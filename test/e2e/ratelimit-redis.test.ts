// Shared limits with a real Redis: two gateway processes share one limit, and each failure mode holds through an outage.

import test from 'ava';
import type { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { RunningGateway } from '../../src/app/gateway.js';
import type { RedisStore } from '../../src/ratelimit/redis-store.js';
import {
  MODELS,
  gatewayConfig,
  irisModels,
  irisRequest,
  postJson,
  spawnGateway,
  startTestGateway,
  writeConfigFile,
  type GatewayProcess,
} from '../helpers/gateway.js';
import { loadFigures, reportLoad, rssMiB, timed, type Outcome } from '../helpers/load.js';
import { redisTestsEnabled, startRedis, type RedisServer } from '../helpers/redis.js';

/** The next `name` event; unlike events.once it ignores 'error' (ioredis emits one per failed reconnect attempt). */
const nextEvent = (emitter: EventEmitter, name: string) => new Promise<void>((resolve) => emitter.once(name, () => resolve()));

const redisTest = redisTestsEnabled ? test.serial : test.skip;

let redis: RedisServer;
test.before(async () => {
  if (redisTestsEnabled) redis = await startRedis();
});
test.after.always(() => redis?.stop());

/** Resolves when the process has written a line matching `pattern` to stdout (its JSON log). */
function logged(gw: GatewayProcess, pattern: RegExp): Promise<void> {
  if (pattern.test(gw.stdout())) return Promise.resolve();
  return new Promise((resolve) => {
    const onData = () => {
      if (pattern.test(gw.stdout())) {
        gw.child.stdout!.off('data', onData);
        resolve();
      }
    };
    gw.child.stdout!.on('data', onData);
  });
}

redisTest('two gateway processes share one limit through Redis (±10%), and log an outage', async (t) => {
  const ratePerSecond = 20;
  const burst = 20;
  const file = await writeConfigFile({
    ...gatewayConfig({ models: irisModels() }),
    logging: { level: 'info' },
    rateLimits: {
      store: { kind: 'redis', url: redis.url, keyPrefix: 'two-procs:' },
      rules: [{ name: 'shared', key: { header: 'x-tenant' }, ratePerSecond, burst }],
    },
  });
  const gws = await Promise.all([spawnGateway(file, ['--port', '0']), spawnGateway(file, ['--port', '0'])]);
  t.teardown(() => Promise.all(gws.map((g) => g.stop('SIGKILL'))));

  // Twice the limit for 3 s, alternating between the two processes, paced by a timer (a bounded load, not a wait).
  const total = 120;
  const intervalMs = 1000 / (2 * ratePerSecond);
  const sent: Promise<number>[] = [];
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const i = sent.length;
      sent.push(postJson(`${gws[i % 2]!.url}/v2/models/iris/infer`, irisRequest(), { 'x-tenant': 'acme' }).then((r) => r.status));
      if (sent.length === total) {
        clearInterval(timer);
        resolve();
      }
    }, intervalMs);
  });
  const spanS = (performance.now() - started) / 1000;
  const statuses = await Promise.all(sent);
  t.true(
    statuses.every((s) => s === 200 || s === 429),
    String(statuses),
  );
  const allowed = statuses.filter((s) => s === 200).length;
  const expected = burst + ratePerSecond * spanS; // what one shared bucket allows; separate buckets would allow all 120
  t.log(
    `two processes: ${allowed} allowed of ${total} over ${spanS.toFixed(2)} s; one shared bucket allows ${expected.toFixed(1)} (${((allowed / expected - 1) * 100).toFixed(1)}%)`,
  );
  t.true(Math.abs(allowed / expected - 1) <= 0.1, `${allowed} allowed, expected ${expected.toFixed(1)}`);

  await redis.stop();
  await Promise.all(gws.map((gw) => logged(gw, /rate-limit store connection lost/)));
  const during = await postJson(`${gws[0]!.url}/v2/models/iris/infer`, irisRequest(), { 'x-tenant': 'acme' });
  t.is(during.status, 200); // failureMode open: the local bucket decides
  await logged(gws[0]!, /rate-limit store unavailable/);
  await redis.start();
  await Promise.all(gws.map((gw) => logged(gw, /"reconnected":true[^\n]*rate-limit store connected/)));
});

redisTest('Redis stopped mid-test: open rules fall back to a local bucket, closed rules answer 503; both recover when it returns', async (t) => {
  const gw: RunningGateway = await startTestGateway({
    ...gatewayConfig({
      models: irisModels({ 'iris-b': { versions: { '1': { backend: { kind: 'onnx', path: `${MODELS}/iris-v1.onnx` } } } } }),
    }),
    rateLimits: {
      store: { kind: 'redis', url: redis.url, keyPrefix: 'outage:', commandTimeoutMs: 200 },
      rules: [
        { name: 'open-rule', models: ['iris'], key: { header: 'x-tenant' }, ratePerSecond: 0.01, burst: 3, failureMode: 'open' },
        { name: 'closed-rule', models: ['iris-b'], key: { header: 'x-tenant' }, ratePerSecond: 0.01, burst: 3, failureMode: 'closed' },
      ],
    },
  });
  t.teardown(() => gw.stop());
  const store = gw.security.rateLimitStore as RedisStore;
  // Every request is recorded for the scenario's figures (429 and 503 are answers here, by design).
  const outcomes: Outcome[] = [];
  const rssAtStart = rssMiB(); // in-process gateway: the test process's RSS
  const open = () => timed(outcomes, () => postJson(`${gw.url}/v2/models/iris/infer`, irisRequest(), { 'x-tenant': 'acme' }));
  const closed = () => timed(outcomes, () => postJson(`${gw.url}/v2/models/iris-b/infer`, irisRequest(), { 'x-tenant': 'acme' }));

  t.is((await open()).status, 200);
  t.is((await closed()).status, 200);
  t.is(store.stats.storeErrors, 0);

  const lost = nextEvent(store.client, 'close');
  await redis.stop();
  await lost;
  // open: allowed and counted by a fresh local bucket of the same size, which still limits.
  t.deepEqual([(await open()).status, (await open()).status, (await open()).status, (await open()).status], [200, 200, 200, 429]);
  const refused = await closed();
  t.is(refused.status, 503);
  t.is(refused.headers.get('retry-after'), '1');
  t.regex(String(refused.body.error), /rate limit 'closed-rule' cannot be checked right now/);
  t.like(store.stats, { fallbackDecisions: 4, failedClosed: 1, storeErrors: 5, disconnects: 1 });

  const back = nextEvent(store.client, 'ready');
  await redis.start();
  await back;
  const recovered = await closed();
  t.is(recovered.status, 200);
  t.is(recovered.headers.get('ratelimit'), '"closed-rule";r=2;t=100'); // a new (empty) Redis: a full bucket again
  // The open rule is decided by Redis again: its local fallback bucket is empty (429 above), Redis's is full.
  const reopened = await open();
  t.is(reopened.status, 200);
  t.regex(String(reopened.headers.get('ratelimit')), /^"open-rule";r=2;t=\d+$/);
  t.like(store.stats, { fallbackDecisions: 4, failedClosed: 1, storeErrors: 5 });
  const figures = reportLoad(
    t,
    'Redis stopped and restarted',
    loadFigures(outcomes, { startMiB: rssAtStart, endMiB: rssMiB(), of: 'the test process (in-process gateway)' }),
  );
  t.is(figures.statuses, '200: 7, 429: 1, 503: 1', 'every request answered: the outage shows only as the designed 429 and 503');
  const inspect = new Redis(redis.url);
  t.teardown(() => inspect.quit());
  t.deepEqual((await inspect.keys('outage:*')).sort(), ['outage:closed-rule:acme', 'outage:open-rule:acme']);
});
