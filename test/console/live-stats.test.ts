// The console's live figures, derived from the gateway's own histogram: quantiles from bucket deltas (as
// Prometheus's histogram_quantile), req/s and 5xx rate over the last minute, and the 15-minute chart history.

import test from 'ava';
import { difference, LiveStats, quantile } from '../../src/admin/live-stats.js';
import { GatewayMetrics } from '../../src/telemetry/metrics.js';

test('quantile: linear inside the bucket holding the rank; the +Inf bucket gives the highest bound; nothing observed gives null', (t) => {
  const bounds = [0.1, 0.2, 0.5];
  t.is(quantile(bounds, [10, 20, 20, 20], 0.5), 0.1);
  t.is(quantile(bounds, [10, 20, 20, 20], 0.25), 0.05);
  t.is(Math.round(quantile(bounds, [10, 20, 20, 20], 0.99)! * 1e6) / 1e6, 0.198);
  t.is(quantile(bounds, [0, 0, 0, 5], 0.5), 0.5);
  t.is(quantile(bounds, [0, 0, 0, 0], 0.5), null);
});

test('difference: a new version counts from zero, a reset counter from its new value', (t) => {
  const a = { count: 10, errors: 2, buckets: [4, 10] };
  const b = { count: 15, errors: 3, buckets: [6, 15] };
  t.deepEqual(difference(a, b), { count: 5, errors: 1, buckets: [2, 5] });
  t.deepEqual(difference(undefined, b), b);
  t.deepEqual(difference(b, a), a);
  t.is(difference(a, undefined), undefined);
});

function setup() {
  let now = 1_700_000_000_000;
  const metrics = new GatewayMetrics({ processMetrics: false });
  const live = new LiveStats(metrics, { now: () => now });
  return {
    metrics,
    live,
    async tick(seconds = 1) {
      for (let i = 0; i < seconds; i++) {
        now += 1000;
        await live.read();
      }
    },
  };
}

test('req/s, 5xx rate and p50/p99 of each version over the last minute, from inference answers only', async (t) => {
  const { metrics, live, tick } = setup();
  await live.read();
  t.is(live.live('iris', '1'), null, 'one reading is not a rate');
  for (let i = 0; i < 90; i++) metrics.answered('iris', '1', 'infer', 200, 0.003);
  for (let i = 0; i < 10; i++) metrics.answered('iris', '1', 'infer', 200, 0.04, 'grpc');
  for (let i = 0; i < 5; i++) metrics.answered('iris', '2', 'infer', 503, 0.001);
  for (let i = 0; i < 5; i++) metrics.answered('iris', '2', 'infer', 200, 0.001);
  for (let i = 0; i < 500; i++) metrics.answered('iris', '1', 'model-ready', 200, 1); // health checks are not traffic
  await tick(10);
  const v1 = live.live('iris', '1')!;
  t.is(v1.windowS, 10);
  t.is(v1.requests, 100);
  t.is(v1.rps, 10);
  t.is(v1.errorRate, 0);
  t.true(v1.p50Ms! > 2.5 && v1.p50Ms! <= 5, `p50 ${v1.p50Ms}`);
  t.true(v1.p99Ms! > 25 && v1.p99Ms! <= 50, `p99 ${v1.p99Ms}`);
  const v2 = live.live('iris', '2')!;
  t.is(v2.rps, 1);
  t.is(v2.errorRate, 0.5);
  t.like(live.live('iris', '3'), { rps: 0, errorRate: null, p50Ms: null, p99Ms: null, requests: 0 });
  // A minute later, with no traffic since, the window has moved past the burst.
  await tick(61);
  t.like(live.live('iris', '1'), { rps: 0, requests: 0, windowS: 60, errorRate: null });
});

test('chart points smooth over 5 s; the history keeps 15 minutes and aligns every series on one time axis', async (t) => {
  const { metrics, live, tick } = setup();
  await live.read();
  await tick(4);
  for (let i = 0; i < 50; i++) metrics.answered('iris', '1', 'infer', 200, 0.002);
  await tick(1);
  t.deepEqual(live.latestPoint()!.points['iris/1'], { rps: 10, errors: 0, p99Ms: live.latestPoint()!.points['iris/1']!.p99Ms });
  for (let i = 0; i < 10; i++) metrics.answered('iris', '2', 'infer', 500, 0.002);
  await tick(1);
  const history = live.history();
  t.is(history.t.length, 6);
  t.deepEqual(history.series['iris/1']!.rps, [null, null, null, null, 10, 10]);
  t.deepEqual(history.series['iris/2']!.errors, [null, null, null, null, null, 2]);
  await tick(20 * 60);
  t.true(live.history().t.length <= 15 * 60 + 6, 'bounded to 15 minutes');
  t.is(live.history().t.length, live.history().series['iris/1']!.rps.length);
});
