// Rate limits over real HTTP with an injected clock: the 429 share at twice the limit, consistent headers, rows, versions, dry run.

import test from 'ava';
import type { RunningGateway } from '../../src/app/gateway.js';
import { IRIS_ROW, gatewayConfig, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';

let now = 1_700_000_000_000;
const clock = () => now;

async function gateway(rules: Record<string, unknown>[], enforce = true): Promise<RunningGateway> {
  return startTestGateway({ ...gatewayConfig({ models: irisModels() }), rateLimits: { enforce, rules } }, { now: clock });
}

// Every test moves the shared clock, so they run one at a time.
test.serial('at twice the limit the 429 share is 50% ±5%, and every reply carries consistent RateLimit headers', async (t) => {
  const gw = await gateway([{ name: 'per-tenant', key: { header: 'x-tenant' }, ratePerSecond: 10, burst: 10 }]);
  t.teardown(() => gw.stop());
  const url = `${gw.url}/v2/models/iris/infer`;
  let refused = 0;
  const total = 1200; // 60 simulated seconds at 20 requests per second
  for (let i = 0; i < total; i++) {
    const res = await postJson(url, irisRequest(), { 'x-tenant': 'acme' });
    t.is(res.headers.get('ratelimit-policy'), '"per-tenant";q=10;w=1');
    const m = /^"per-tenant";r=(\d+);t=(\d+)$/.exec(res.headers.get('ratelimit') ?? '');
    t.truthy(m, res.headers.get('ratelimit') ?? 'no RateLimit header');
    const [r, reset] = [Number(m![1]), Number(m![2])];
    if (res.status === 429) {
      refused++;
      t.is(r, 0);
      t.is(res.headers.get('retry-after'), String(reset)); // t and Retry-After name the same moment
      t.true(reset >= 1);
      t.regex(String(res.body.error), /rate limit 'per-tenant' exceeded; retry in \d+ s/);
    } else {
      t.is(res.status, 200);
      t.true(r >= 0 && r <= 10);
      if (i < 10) t.is(r, Math.floor(9 - 0.5 * i)); // the burst drains by 1 per request and refills 0.5 per 50 ms
    }
    now += 50;
  }
  const share = refused / total;
  t.log(`429 share at 2x the limit: ${(share * 100).toFixed(1)}% (expected 50%)`);
  t.true(Math.abs(share - 0.5) <= 0.05, `429 share ${share}`);
  t.is(gw.security.rateLimitStore.stats.denied, refused);
  t.is(gw.security.rateLimitStore.stats.allowed, total - refused);
});

test.serial('keys are independent; requests without a key share one bucket', async (t) => {
  const gw = await gateway([{ name: 'per-tenant', key: { header: 'x-tenant' }, ratePerSecond: 0.01, burst: 2 }]);
  t.teardown(() => gw.stop());
  const url = `${gw.url}/v2/models/iris/infer`;
  const statuses = async (headers: Record<string, string>) => {
    const out: number[] = [];
    for (let i = 0; i < 3; i++) out.push((await postJson(url, irisRequest(), headers)).status);
    return out;
  };
  t.deepEqual(await statuses({ 'x-tenant': 'a' }), [200, 200, 429]);
  t.deepEqual(await statuses({ 'x-tenant': 'b' }), [200, 200, 429]);
  t.deepEqual(await statuses({}), [200, 200, 429]);
  t.deepEqual(await statuses({ 'x-tenant': '' }), [429, 429, 429]); // an empty value is the same shared bucket
});

test.serial('cost rows: a batch costs its first dimension; a batch larger than the burst is 413', async (t) => {
  const gw = await gateway([{ name: 'rows', key: { clientAddress: {} }, ratePerSecond: 4, burst: 8, cost: 'rows' }]);
  t.teardown(() => gw.stop());
  const url = `${gw.url}/v2/models/iris/infer`;
  const five = irisRequest(Array.from({ length: 5 }, () => IRIS_ROW));
  const first = await postJson(url, five);
  t.is(first.status, 200);
  t.is(first.headers.get('ratelimit'), '"rows";r=3;t=2');
  const second = await postJson(url, five);
  t.is(second.status, 429);
  t.is(second.headers.get('retry-after'), '1'); // 2 rows short at 4 rows/s
  now += 500;
  t.is((await postJson(url, five)).status, 200);
  const huge = await postJson(url, irisRequest(Array.from({ length: 9 }, () => IRIS_ROW)));
  t.is(huge.status, 413);
  t.regex(String(huge.body.error), /batch of 9 rows exceeds rate limit 'rows' \(at most 8 rows at once\)/);
  // An invalid body is refused by validate before a rows rule charges anything.
  t.is((await postJson(url, { inputs: 'nope' })).status, 400);
});

test.serial('a version rule limits only the serving version, decided after routing', async (t) => {
  const gw = await gateway([{ name: 'v2-canary', models: ['iris'], versions: ['2'], key: { clientAddress: {} }, ratePerSecond: 0.01, burst: 1 }]);
  t.teardown(() => gw.stop());
  const v1 = `${gw.url}/v2/models/iris/versions/1/infer`;
  const v2 = `${gw.url}/v2/models/iris/versions/2/infer`;
  for (let i = 0; i < 3; i++) {
    const res = await postJson(v1, irisRequest());
    t.is(res.status, 200);
    t.is(res.headers.get('ratelimit'), null);
  }
  t.is((await postJson(v2, irisRequest())).status, 200);
  const limited = await postJson(v2, irisRequest());
  t.is(limited.status, 429);
  t.is(limited.headers.get('x-model-version'), '2');
});

test.serial('dry run: nothing is refused and no headers are sent, but would-be refusals are counted', async (t) => {
  const gw = await gateway([{ name: 'quiet', key: { clientAddress: {} }, ratePerSecond: 0.01, burst: 2 }], false);
  t.teardown(() => gw.stop());
  for (let i = 0; i < 5; i++) {
    const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
    t.is(res.status, 200);
    t.is(res.headers.get('ratelimit'), null);
    t.is(res.headers.get('ratelimit-policy'), null);
  }
  t.is(gw.security.rateLimitStore.stats.dryRunDenied, 3);
});
