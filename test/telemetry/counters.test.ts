// Prometheus counters never go down: every `_total` series (and every histogram's _count, _sum and _bucket) of
// /metrics is scraped before and after the events that used to lower them — a reload that removes a shadow pair's
// version and replaces versions' guards (new breaker settings, new limits), and an operator's reset of the shadow
// statistics — and must still be there, at least as high. Also: timed-out shadow calls are shadow errors.

import test from 'ava';
import path from 'node:path';
import { createLogger } from '../../src/telemetry/log.js';
import { createBackend } from '../../src/backends/create.js';
import type { BackendFactory } from '../../src/models/catalog.js';
import { FaultyBackend } from '../helpers/fault-backend.js';
import { irisRequest, postJson } from '../helpers/gateway.js';
import { ADMIN_TOKEN, fileConfig, irisVersion, startFromFile, tempDir, writeConfig } from '../helpers/traffic.js';

type Samples = Map<string, number>;

/** Every sample of the exposition whose series must never decrease: counters and histogram parts. */
function monotonicSamples(text: string): Samples {
  const counters = new Set<string>();
  const histograms = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (counter|histogram)$/.exec(line);
    if (m) (m[2] === 'counter' ? counters : histograms).add(m[1]!);
  }
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const series = line.slice(0, line.lastIndexOf(' '));
    const name = series.replace(/\{.*$/, '');
    const histogram = /^(.*)_(bucket|count|sum)$/.exec(name)?.[1];
    if (counters.has(name) || (histogram !== undefined && histograms.has(histogram))) out.set(series, Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** Series that went down or disappeared between two scrapes. */
function decreased(before: Samples, after: Samples): string[] {
  const wrong: string[] = [];
  for (const [series, value] of before) {
    const now = after.get(series);
    if (now === undefined) wrong.push(`${series} ${value} → gone`);
    else if (now < value) wrong.push(`${series} ${value} → ${now}`);
  }
  return wrong;
}

const SHADOW_TIMEOUT_MS = 50;

function models(stage: 'before' | 'after'): Record<string, unknown> {
  return {
    iris: {
      defaultVersion: '1',
      versions: {
        '1': irisVersion('iris-v1.onnx'),
        // Removed by the reload: the pair 1 → 2 and its statistics go with it.
        ...(stage === 'before' ? { '2': irisVersion('iris-v2.onnx') } : {}),
        '3': irisVersion('iris-v2.onnx'), // held far beyond the shadow timeout: every copy times out
      },
      shadow: { targets: [...(stage === 'before' ? [{ version: '2', percent: 100 }] : []), { version: '3', percent: 100 }], timeoutMs: SHADOW_TIMEOUT_MS },
    },
    // One call at a time and no queue: a second concurrent request is shed. The reload changes the limits (new guard).
    capped: { versions: { '1': { ...irisVersion('iris-v1.onnx'), limits: { maxConcurrent: stage === 'before' ? 1 : 2 } } } },
    // Nothing listens on port 1: two failures open the breaker. The reload changes its settings (new guard).
    dead: {
      versions: {
        '1': {
          backend: { kind: 'http', url: 'http://127.0.0.1:1', probeTimeoutMs: 100, probeIntervalMs: 60_000, retry: { enabled: false } },
          breaker: { volumeThreshold: 2, errorThresholdPercent: stage === 'before' ? 50 : 60, resetTimeoutMs: 60_000 },
        },
      },
    },
  };
}

test('no counter or histogram series goes down or disappears across a reload that replaces guards and removes a shadow pair, or a shadow-stats reset', async (t) => {
  const file = path.join(await tempDir('mg-counters-'), 'gateway.yaml');
  // Replaced guards are closed 100 ms after the reload: the scrape after the reset sees them closed.
  const write = (stage: 'before' | 'after') =>
    writeConfig(file, fileConfig(models(stage), { reload: { watch: false, pollIntervalMs: 0, drainTimeoutMs: 100 } }));
  await write('before');
  // Slow on purpose where asked; every other version is its real backend (a remote keeps its pass-through forwarding).
  const log = createLogger('silent');
  const slow: Record<string, number> = { 'iris/3': 10_000, 'capped/1': 300 };
  const factory: BackendFactory = (model, version, config) => {
    const delayMs = slow[`${model}/${version}`];
    return delayMs === undefined ? createBackend(model, version, config, log) : new FaultyBackend(createBackend(model, version, config, log), { delayMs });
  };
  const gw = await startFromFile(file, { backendFactory: factory });
  t.teardown(() => gw.stop());
  const scrape = async () => monotonicSamples(await (await fetch(`${gw.admin!.url}/metrics`)).text());
  const admin = (method: string, route: string) => fetch(`${gw.admin!.url}${route}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

  for (let i = 0; i < 3; i++) t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  const [held, shed] = await Promise.all([
    postJson(`${gw.url}/v2/models/capped/infer`, irisRequest()),
    postJson(`${gw.url}/v2/models/capped/infer`, irisRequest()),
  ]);
  t.deepEqual([held.status, shed.status].sort(), [200, 503]);
  for (let i = 0; i < 4; i++) t.true((await postJson(`${gw.url}/v2/models/dead/infer`, irisRequest())).status >= 500);
  await gw.controller.shadow.idle();

  const before = await scrape();
  const pair = (p: string, s: string) => `{model="iris",primary_version="${p}",shadow_version="${s}"}`;
  // The figures this test relies on are really there (so a decrease would show).
  t.is(before.get(`model_gateway_shadow_compared_total${pair('1', '2')}`), 3);
  t.is(before.get(`model_gateway_shadow_errors_total${pair('1', '3')}`), 3, 'timed-out copies are shadow errors');
  t.is(before.get(`model_gateway_shadow_timeouts_total${pair('1', '3')}`), 3);
  t.is(before.get('model_gateway_breaker_opened_total{model="dead",version="1"}'), 1);
  t.is(before.get('model_gateway_shed_total{model="capped",version="1"}'), 1);

  await write('after');
  const reload = await admin('POST', '/admin/reload');
  t.like(await reload.json(), { outcome: 'applied' });
  t.deepEqual(
    gw.controller.shadow.stats.forModel('iris').map((p) => p.shadowVersion),
    ['3'],
    'the pair of the removed version is gone from the statistics',
  );
  const afterReload = await scrape();
  t.deepEqual(decreased(before, afterReload), []);

  t.is((await admin('DELETE', '/admin/models/iris/shadow')).status, 200);
  t.deepEqual(gw.controller.shadow.stats.forModel('iris'), [], 'the statistics were reset');
  await new Promise((resolve) => setTimeout(resolve, 300)); // the replaced guards are closed by now
  const afterReset = await scrape();
  t.deepEqual(decreased(afterReload, afterReset), []);
  t.deepEqual(decreased(before, afterReset), []);

  // And they keep counting from where they were.
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  await gw.controller.shadow.idle();
  const later = await scrape();
  t.is(later.get(`model_gateway_shadow_errors_total${pair('1', '3')}`), 4);
  t.is(later.get(`model_gateway_shadow_requests_total${pair('1', '3')}`), 4);
  t.is(later.get(`model_gateway_shadow_compared_total${pair('1', '2')}`), 3, 'a removed pair keeps its last value');
});
