// /metrics on the admin port after real traffic: the series and their values, and the real `promtool check metrics`.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { MODELS, IRIS_ROW, gatewayConfig, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';

const PROMTOOL_HINT = 'promtool is missing: install it with `apt-get install -y prometheus` (Debian)';

/** The value of one sample line, matched exactly by name and label set (order as exposed). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('after traffic, /metrics has request, latency, upstream, shadow, rate-limit and breaker series with the right values; promtool accepts it', async (t) => {
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
  // Shadow comparisons settle after the replies.
  for (let i = 0; i < 100 && (gw.controller.shadow.stats.forModel('iris')[0]?.compared ?? 0) < 3; i++) await new Promise((r) => setTimeout(r, 10));

  const res = await fetch(`${gw.admin!.url}/metrics`);
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();

  t.is(sample(text, 'model_gateway_requests_total{model="iris",version="1",operation="infer",status_class="2xx"}'), 3);
  t.is(sample(text, 'model_gateway_requests_total{model="iris",version="1",operation="infer",status_class="4xx"}'), 1); // the 400
  // 429s are decided at admission, before routing picks a version.
  t.is(sample(text, 'model_gateway_requests_total{model="iris",version="",operation="infer",status_class="4xx"}'), 2);
  t.is(sample(text, 'model_gateway_requests_total{model="unknown",version="",operation="infer",status_class="4xx"}'), 1);
  t.is(sample(text, 'model_gateway_request_duration_seconds_count{model="iris",version="1",operation="infer",status_class="2xx"}'), 3);
  t.is(sample(text, 'model_gateway_requests_in_flight{model="iris"}'), 0);
  t.is(sample(text, 'model_gateway_upstream_duration_seconds_count{model="iris",version="1",backend="onnx",outcome="ok"}'), 3);
  t.is(sample(text, 'model_gateway_upstream_duration_seconds_count{model="iris",version="2",backend="onnx",outcome="ok"}'), 3); // the shadow calls
  t.is(sample(text, 'model_gateway_ratelimit_decisions_total{rule="per-tenant",decision="allowed"}'), 5); // 3 for a, 1 for b, 1 for c (admission runs before routing)
  t.is(sample(text, 'model_gateway_ratelimit_decisions_total{rule="per-tenant",decision="limited"}'), 2);
  t.is(sample(text, 'model_gateway_shadow_requests_total{model="iris",primary_version="1",shadow_version="2"}'), 3);
  t.is(sample(text, 'model_gateway_shadow_compared_total{model="iris",primary_version="1",shadow_version="2"}'), 3);
  t.is(sample(text, 'model_gateway_shadow_agreement_ratio{model="iris",primary_version="1",shadow_version="2"}'), 1); // setosa: both agree
  t.is(sample(text, 'model_gateway_breaker_state{model="iris",version="1"}'), 0);
  t.is(sample(text, 'model_gateway_shed_total{model="iris",version="1"}'), 0);
  t.truthy(sample(text, 'nodejs_eventloop_lag_p99_seconds'), 'event-loop delay');
  t.truthy(sample(text, 'process_resident_memory_bytes'), 'process metrics');

  // The exposition must pass the real promtool (Debian package `prometheus`).
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (check.error && (check.error as NodeJS.ErrnoException).code === 'ENOENT') {
    if (process.env.CI === 'true') t.fail(PROMTOOL_HINT);
    else t.log(PROMTOOL_HINT);
    return;
  }
  t.is(check.status, 0, `${check.stdout}${check.stderr}`);
});

test('with metrics disabled no /metrics is served and nothing is recorded', async (t) => {
  const gw = await startTestGateway({ ...gatewayConfig({ admin: { token: 'a-long-enough-admin-token' } }), telemetry: { metrics: { enabled: false } } });
  t.teardown(() => gw.stop());
  t.is(gw.metrics, undefined);
  const res = await fetch(`${gw.admin!.url}/metrics`, { headers: { authorization: 'Bearer a-long-enough-admin-token' } });
  t.is(res.status, 404);
});
