// server.workers: 2 as a real process: both workers serve the data plane on one port, admin changes reach both,
// /metrics sums them, a killed worker is replaced without a failed request, and SIGTERM stops everything with exit 0.

import test from 'ava';
import http from 'node:http';
import { parseConfig } from '../../src/config/load.js';
import { gatewayConfig, getJson, irisModels, irisRequest, ROOT, spawnGateway, writeConfigFile } from '../helpers/gateway.js';

const TOKEN = 'workers-admin-token-0123456789';

/** One inference on a connection of its own (agent: false), so connections spread over the workers. */
function fresh(url: string): Promise<number> {
  const body = JSON.stringify(irisRequest());
  return new Promise((resolve) => {
    const req = http.request(`${url}/v2/models/iris/infer`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer in 10 s')));
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

const workersOf = (stdout: string) =>
  new Set(
    stdout
      .split('\n')
      .filter((l) => l.includes('"log":"access"'))
      .map((l) => (JSON.parse(l) as { worker?: number }).worker),
  );

const admin = (url: string, path: string, init: RequestInit = {}) =>
  fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...init.headers } });

test('two workers: one data-plane port, admin changes relayed to both, metrics summed, a dead worker replaced, SIGTERM exits 0', async (t) => {
  const file = await writeConfigFile({
    ...gatewayConfig({ server: { workers: 2, drainDelayMs: 0 }, admin: { token: TOKEN }, models: irisModels({}) }),
    logging: { level: 'info' },
  });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  t.regex(gw.stderr(), /2 data-plane workers \(server\.workers\)/);
  const adminUrl = /admin API on (http:\/\/\S+)/.exec(gw.stderr())![1]!;

  const statuses = await Promise.all(Array.from({ length: 40 }, () => fresh(gw.url)));
  t.deepEqual(new Set(statuses), new Set([200]));
  await new Promise((resolve) => setTimeout(resolve, 300)); // access lines are written asynchronously
  t.deepEqual([...workersOf(gw.stdout())].sort(), [1, 2], 'both workers served');

  // A change is made by every worker; a view names the worker it came from.
  const shift = await admin(adminUrl, '/admin/models/iris/weights', {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ '1': 1, '2': 3 }),
  });
  t.is(shift.status, 200);
  t.is(shift.headers.get('x-model-gateway-worker'), 'all/2');
  for (const worker of [1, 2]) {
    const view = await admin(adminUrl, `/admin/models/iris?worker=${worker}`);
    t.is(view.headers.get('x-model-gateway-worker'), `${worker}/2`);
    t.like(await view.json(), { weightsSource: 'override', weights: { '1': 1, '2': 3 } });
  }
  t.is((await admin(adminUrl, '/admin/models/iris?worker=7')).status, 503);
  t.is((await fetch(`${adminUrl}/admin/status`)).status, 401, 'the workers still authorise every relayed call');

  // The workers' counters, summed.
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  const answered = [...metrics.matchAll(/^model_gateway_requests_total\{[^}]*operation="infer"[^}]*status_class="2xx"[^}]*\} (\d+)/gm)].reduce(
    (n, m) => n + Number(m[1]),
    0,
  );
  t.is(answered, 40);

  // Worker 2 dies: the other serves meanwhile, and the supervisor starts it again.
  const pid = Number(/"worker":2,"pid":(\d+)/.exec(gw.stdout())![1]);
  process.kill(pid, 'SIGKILL');
  const during = await Promise.all(Array.from({ length: 20 }, () => fresh(gw.url)));
  t.deepEqual(new Set(during), new Set([200]), 'no request failed while worker 2 was down');
  for (let i = 0; i < 100 && !new RegExp(`"worker":2,"pid":(?!${pid}\\b)\\d+`).test(gw.stdout()); i++) await new Promise((r) => setTimeout(r, 100));
  t.regex(gw.stdout(), new RegExp(`"worker":2,"pid":(?!${pid}\\b)\\d+`), 'worker 2 was started again');
  t.like(await getJson(`${gw.url}/v2/health/ready`), { status: 200 });

  t.is(await gw.stop('SIGTERM'), 0);
});

test('workers are replicas: in-memory rate limits and a rollout without coordination are refused', async (t) => {
  const base = gatewayConfig({ server: { workers: 2 } });
  const limited = { ...base, rateLimits: { rules: [{ name: 'r', key: { header: 'x-user' }, ratePerSecond: 1, burst: 1 }] } };
  const err = await t.throwsAsync(parseConfig(limited, { baseDir: ROOT, source: 'test' }));
  t.regex(err!.message, /rateLimits\.store\.kind: server\.workers is 2: rate limits need the redis store/);
  const redis = { ...limited, rateLimits: { ...limited.rateLimits, store: { kind: 'redis', url: 'redis://127.0.0.1:9' } } };
  await t.notThrowsAsync(parseConfig(redis, { baseDir: ROOT, source: 'test' }));
  const rollout = { ...base, models: irisModels({}) as Record<string, Record<string, unknown>> };
  rollout.models.iris!.rollout = { stable: '1', candidate: '2' };
  const err2 = await t.throwsAsync(parseConfig(rollout, { baseDir: ROOT, source: 'test' }));
  t.regex(err2!.message, /models\.iris\.rollout: server\.workers is 2: a rollout needs coordination\.redis/);
});
