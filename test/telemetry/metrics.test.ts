// /metrics on the admin port after real traffic: the series and their values, and the real `promtool check metrics`.

import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createBackend } from '../../src/backends/create.js';
import type { BackendFactory } from '../../src/models/catalog.js';
import type { RolloutView } from '../../src/rollout/view.js';
import { GatewayMetrics } from '../../src/telemetry/metrics.js';
import { registerRolloutMetrics } from '../../src/app/state-metrics.js';
import { createLogger } from '../../src/telemetry/log.js';
import { MODELS, IRIS_ROW, gatewayConfig, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';

const PROMTOOL_HINT = 'promtool is missing: install it with `apt-get install -y prometheus` (Debian)';

/** The value of one sample line, matched exactly by name and label set (order as exposed). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Runs the real `promtool check metrics` on an exposition (skipped with a note when promtool is missing, outside CI). */
function promtoolAccepts(t: ExecutionContext, text: string): void {
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (check.error && (check.error as NodeJS.ErrnoException).code === 'ENOENT') {
    if (process.env.CI === 'true') t.fail(PROMTOOL_HINT);
    else t.log(PROMTOOL_HINT);
    return;
  }
  t.is(check.status, 0, `${check.stdout}${check.stderr}`);
}

const ROW_2 = [6.2, 2.9, 4.3, 1.3];
const ROW_3 = [7.7, 3.0, 6.1, 2.3];
const rows = (n: number): number[][] => Array.from({ length: n }, (_, i) => [IRIS_ROW, ROW_2, ROW_3][i % 3]!);

test('after traffic, /metrics has request, latency, upstream, shadow, rate-limit, breaker and batch-size series with the right values; promtool accepts it', async (t) => {
  const gw = await startTestGateway({
    ...gatewayConfig({
      models: {
        iris: {
          defaultVersion: '1',
          versions: {
            '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
            '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } },
          },
          shadow: { targets: [{ version: '2', percent: 100 }], compare: { probabilities: { mode: 'classification' } } },
        },
        // A run starts once 8 rows are queued (the delay, 1 s, is only a backstop), so the batch below is deterministic.
        batched: {
          versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx'), batching: { maxBatchSize: 8, maxQueueDelayUs: 1_000_000 } } } },
        },
      },
    }),
    rateLimits: { rules: [{ name: 'per-tenant', key: { header: 'x-tenant' }, ratePerSecond: 1, burst: 3 }] },
  });
  t.teardown(() => gw.stop());
  t.truthy(gw.admin, 'metrics need the admin port');

  // 3 allowed (burst 3) + 2 limited for tenant a; 1 invalid request for tenant b; 1 unknown model.
  for (let i = 0; i < 5; i++) await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest([IRIS_ROW]), { 'x-tenant': 'a' });
  t.is((await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, { inputs: [] }, { 'x-tenant': 'b' })).status, 400);
  t.is((await postJson(`${gw.url}/v2/models/nope/infer`, irisRequest(), { 'x-tenant': 'c' })).status, 404);
  // Batching: 4 concurrent calls of 1+2+3+2 rows fill one 8-row run; then a 16-row call, larger than the batch
  // limit, runs alone at once. Recorded in rows per run: 8 and 16.
  const batchedUrl = `${gw.url}/v2/models/batched/versions/1/infer`;
  const together = await Promise.all([1, 2, 3, 2].map((n, i) => postJson(batchedUrl, irisRequest(rows(n)), { 'x-tenant': `batch-${i}` })));
  t.deepEqual(
    together.map((r) => r.status),
    [200, 200, 200, 200],
  );
  t.is((await postJson(batchedUrl, irisRequest(rows(16)), { 'x-tenant': 'batch-4' })).status, 200);
  // Shadow comparisons settle after the replies.
  for (let i = 0; i < 100 && (gw.controller.shadow.stats.forModel('iris')[0]?.compared ?? 0) < 3; i++) await new Promise((r) => setTimeout(r, 10));

  const res = await fetch(`${gw.admin!.url}/metrics`);
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();

  t.is(sample(text, 'model_gateway_requests_total{model="iris",version="1",operation="infer",status_class="2xx",protocol="http"}'), 3);
  t.is(sample(text, 'model_gateway_requests_total{model="iris",version="1",operation="infer",status_class="4xx",protocol="http"}'), 1); // the 400
  // 429s are decided at admission, before routing picks a version.
  t.is(sample(text, 'model_gateway_requests_total{model="iris",version="",operation="infer",status_class="4xx",protocol="http"}'), 2);
  t.is(sample(text, 'model_gateway_requests_total{model="unknown",version="",operation="infer",status_class="4xx",protocol="http"}'), 1);
  t.is(sample(text, 'model_gateway_request_duration_seconds_count{model="iris",version="1",operation="infer",status_class="2xx",protocol="http"}'), 3);
  t.is(sample(text, 'model_gateway_requests_in_flight{model="iris"}'), 0);
  t.is(sample(text, 'model_gateway_upstream_duration_seconds_count{model="iris",version="1",backend="onnx",outcome="ok"}'), 3);
  t.is(sample(text, 'model_gateway_upstream_duration_seconds_count{model="iris",version="2",backend="onnx",outcome="ok"}'), 3); // the shadow calls
  t.is(sample(text, 'model_gateway_ratelimit_decisions_total{rule="per-tenant",decision="allowed"}'), 10); // 3 for a, 1 for b, 1 for c (admission runs before routing), 5 for the batch-* tenants
  t.is(sample(text, 'model_gateway_ratelimit_decisions_total{rule="per-tenant",decision="limited"}'), 2);
  t.is(sample(text, 'model_gateway_shadow_requests_total{model="iris",primary_version="1",shadow_version="2"}'), 3);
  t.is(sample(text, 'model_gateway_shadow_compared_total{model="iris",primary_version="1",shadow_version="2"}'), 3);
  t.is(sample(text, 'model_gateway_shadow_agreement_ratio{model="iris",primary_version="1",shadow_version="2"}'), 1); // setosa: both agree
  t.is(sample(text, 'model_gateway_breaker_state{model="iris",version="1",state="closed"}'), 1);
  t.is(sample(text, 'model_gateway_breaker_state{model="iris",version="1",state="open"}'), 0);
  t.is(sample(text, 'model_gateway_breaker_state{model="iris",version="1",state="half-open"}'), 0);
  t.is(sample(text, 'model_gateway_shadow_dropped_total{model="iris",primary_version="1",shadow_version="2"}'), 0);
  // Rows per run: one 8-row batch of 4 calls, one 16-row call alone.
  const batch = (suffix: string) => sample(text, `model_gateway_batch_size${suffix}{model="batched",version="1"}`);
  const bucket = (le: string) => sample(text, `model_gateway_batch_size_bucket{le="${le}",model="batched",version="1"}`);
  t.is(batch('_count'), 2);
  t.is(batch('_sum'), 24);
  t.deepEqual(['1', '2', '4', '8', '16', '32', '+Inf'].map(bucket), [0, 0, 0, 1, 2, 2, 2]);
  t.is(sample(text, 'model_gateway_upstream_duration_seconds_count{model="batched",version="1",backend="onnx",outcome="ok"}'), 5);
  // Only versions with batching configured have the series.
  t.false(text.includes('model_gateway_batch_size_count{model="iris"'));
  t.is(sample(text, 'model_gateway_shed_total{model="iris",version="1"}'), 0);
  t.truthy(sample(text, 'nodejs_eventloop_lag_p99_seconds'), 'event-loop delay');
  t.truthy(sample(text, 'process_resident_memory_bytes'), 'process metrics');

  // The exposition must pass the real promtool (Debian package `prometheus`).
  promtoolAccepts(t, text);
});

/**
 * The real backends, with the calls of one version (`model/version`) held until `release()`: a shadow that is still
 * running for as long as the test needs, without timing assumptions.
 */
function holding(held: string): { factory: BackendFactory; release(): void } {
  const log = createLogger('silent');
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const factory: BackendFactory = (model, version, config) => {
    const backend = createBackend(model, version, config, log);
    if (`${model}/${version}` !== held) return backend;
    const infer = backend.infer.bind(backend);
    backend.infer = async (request, signal) => {
      await released;
      return infer(request, signal);
    };
    return backend;
  };
  return { factory, release: () => release() };
}

test('a shadow dropped at the concurrency cap and a breaker opened by a dead remote show in /metrics; promtool accepts it', async (t) => {
  const shadow = holding('iris/2');
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        iris: {
          defaultVersion: '1',
          versions: {
            '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
            '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } },
          },
          // One shadow call at a time, and the first is held: the copies of the next requests find the cap taken.
          shadow: { targets: [{ version: '2', percent: 100 }], maxConcurrent: 1, timeoutMs: 10_000 },
        },
        // Nothing listens on port 1: every call fails to connect, and two failures open the breaker.
        dead: {
          versions: {
            '1': {
              backend: { kind: 'http', url: 'http://127.0.0.1:1', probeTimeoutMs: 100, probeIntervalMs: 60_000, retry: { enabled: false } },
              breaker: { volumeThreshold: 2, errorThresholdPercent: 50, resetTimeoutMs: 60_000 },
            },
          },
        },
      },
    }),
    { backendFactory: shadow.factory },
  );
  t.teardown(async () => {
    shadow.release();
    await gw.stop();
  });

  for (let i = 0; i < 3; i++) t.is((await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest())).status, 200);
  const dead: number[] = [];
  for (let i = 0; i < 4; i++) dead.push((await postJson(`${gw.url}/v2/models/dead/versions/1/infer`, irisRequest())).status);
  t.true(
    dead.every((s) => s >= 500),
    `statuses ${dead.join(',')}`,
  );

  const text = await (await fetch(`${gw.admin!.url}/metrics`)).text();
  const pair = '{model="iris",primary_version="1",shadow_version="2"}';
  // The first copy took the only slot; the next two were dropped while it was held.
  t.is(sample(text, `model_gateway_shadow_requests_total${pair}`), 3);
  t.is(sample(text, `model_gateway_shadow_dropped_total${pair}`), 2);

  t.is(sample(text, 'model_gateway_breaker_state{model="dead",version="1",state="open"}'), 1);
  t.is(sample(text, 'model_gateway_breaker_state{model="dead",version="1",state="closed"}'), 0);
  t.is(sample(text, 'model_gateway_breaker_state{model="dead",version="1",state="half-open"}'), 0);
  t.is(sample(text, 'model_gateway_breaker_opened_total{model="dead",version="1"}'), 1);
  t.is(sample(text, 'model_gateway_breaker_state{model="iris",version="1",state="closed"}'), 1);
  promtoolAccepts(t, text);
});

test('rollout gauges are in base units: weight and shadow share as 0-1 ratios, gate values split into ratio and seconds series', async (t) => {
  const metrics = new GatewayMetrics({ processMetrics: false });
  const view = {
    model: 'iris',
    candidate: '2',
    status: 'running',
    step: 2,
    candidateWeight: 25,
    shadowPercent: 50,
    gates: [
      { gate: 'agreement', status: 'pass', value: 0.98, limit: 0.95, samples: 100, detail: '' },
      { gate: 'errorRate', status: 'pass', value: 0.01, limit: 0.05, samples: 100, detail: '' },
      { gate: 'p99', status: 'pass', value: 12.5, limit: 20, samples: 100, detail: '' },
    ],
  } as unknown as RolloutView;
  registerRolloutMetrics(metrics, { views: () => [view], store: { isLeader: () => true, mode: 'local' } });
  const { body: text } = await metrics.exposition();
  t.is(sample(text, 'model_gateway_rollout_candidate_weight_ratio{model="iris",candidate="2"}'), 0.25);
  t.is(sample(text, 'model_gateway_rollout_shadow_ratio{model="iris",candidate="2"}'), 0.5);
  t.is(sample(text, 'model_gateway_rollout_gate_ratio{model="iris",gate="agreement"}'), 0.98);
  t.is(sample(text, 'model_gateway_rollout_gate_ratio{model="iris",gate="errorRate"}'), 0.01);
  t.is(sample(text, 'model_gateway_rollout_gate_ratio{model="iris",gate="p99"}'), undefined);
  t.is(sample(text, 'model_gateway_rollout_gate_seconds{model="iris",gate="p99"}'), 0.0125);
  t.is(sample(text, 'model_gateway_rollout_gate_seconds{model="iris",gate="agreement"}'), undefined);
  t.is(sample(text, 'model_gateway_rollout_status{model="iris",status="running"}'), 1);
  t.false(/_percent\b/.test(text), 'no percent-valued series');
  promtoolAccepts(t, text);
});

test('with metrics disabled no /metrics is served and nothing is recorded', async (t) => {
  const gw = await startTestGateway({ ...gatewayConfig({ admin: { token: 'a-long-enough-admin-token' } }), telemetry: { metrics: { enabled: false } } });
  t.teardown(() => gw.stop());
  t.is(gw.metrics, undefined);
  const res = await fetch(`${gw.admin!.url}/metrics`, { headers: { authorization: 'Bearer a-long-enough-admin-token' } });
  t.is(res.status, 404);
});
