// The benchmark's pure parts: statistics, the wrk script and its parser, the nginx configs (checked by nginx itself when
// it is installed), the hit counter, the chart, and the gateway config the bench runs (accepted by the real schema).

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chartSvg, niceAxis } from '../../bench/chart.js';
import { backendConfig, findNginx, INFER_RESPONSE, parseHits, proxyConfig } from '../../bench/nginx.js';
import { median, percentile, relativeDiff, spread, summarize } from '../../bench/stats.js';
import { gatewayConfig } from '../../bench/targets.js';
import { errorCount, luaLongString, okRps, parseWrk, wrkScript } from '../../bench/wrk.js';
import { parseConfig } from '../../src/config/load.js';

test('statistics: nearest-rank percentiles, median of odd and even counts, NaN left out of the spread', (t) => {
  const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  t.is(percentile(sorted, 0.5), 5);
  t.is(percentile(sorted, 0.99), 10);
  t.is(percentile(sorted, 0), 1);
  t.true(Number.isNaN(percentile([], 0.5)));
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.deepEqual(spread([5, Number.NaN, 1, 3]), { median: 3, min: 1, max: 5, n: 3 });
  t.is(spread([]).n, 0);
  t.is(relativeDiff(95, 100), 0.05);
  t.is(relativeDiff(0, 0), 0);
  t.deepEqual(summarize([3, 1, 2]), { count: 3, p50: 2, p99: 3, max: 3 });
});

test('wrk: long strings cannot be closed early; the script carries method, path, body and headers; done() output parses', (t) => {
  t.is(luaLongString('a]]b'), '[=[\na]]b]=]');
  t.is(luaLongString('plain'), '[[\nplain]]');
  const script = wrkScript({ method: 'POST', path: '/v2/models/iris/infer', body: '{"a":"]]"}', headers: { authorization: 'Bearer x' } });
  t.regex(script, /wrk\.method = "POST"/);
  t.regex(script, /wrk\.body = \[=\[\n\{"a":"\]\]"\}\]=\]/);
  t.regex(script, /wrk\.headers\[ \[\[\nauthorization\]\] \] = \[\[\nBearer x\]\]/);
  const result = parseWrk(
    'Running 1s test\n{"requests":1000,"durationUs":2000000,"bytes":1,"connectErrors":0,"readErrors":1,"writeErrors":0,"statusErrors":10,"timeouts":2,"p50Us":1,"p99Us":2,"maxUs":3}\n',
  );
  t.is(okRps(result), 495);
  t.is(errorCount(result), 13);
  t.throws(() => parseWrk('no summary'), { message: /no wrk summary/ });
});

test('nginx: the backend answers OIP JSON with the model it was asked for; per-path hits and non-2xx are counted', (t) => {
  const config = backendConfig({ port: 18080, prefix: '/tmp/x', workers: 1, root: true, accessLog: '/tmp/x/hits.log' });
  t.regex(config, /listen 127\.0\.0\.1:18080/);
  t.regex(config, /log_format hits/);
  t.like(JSON.parse(INFER_RESPONSE('iris-a')), { model_name: 'iris-a' });
  t.deepEqual(parseHits('POST /v2/models/iris-a/infer 200\nPOST /v2/models/iris-b/infer 200\nPOST /v2/models/iris-a/infer 503\nGET /v2 200\n\n'), {
    hits: { '/v2/models/iris-a/infer': 1, '/v2/models/iris-b/infer': 1 },
    non2xx: 1,
  });
});

// Like the Redis tests: run when nginx is installed, always under CI=true (where .ci/run installs it, and a missing
// binary fails instead of skipping).
const nginx = findNginx();
const nginxTest = nginx !== undefined || process.env.CI === 'true' ? test : test.skip;
if (nginx === undefined && process.env.CI !== 'true') process.stderr.write('skipping the nginx config check: apt-get install -y nginx\n');
nginxTest('nginx -t accepts both generated configs', (t) => {
  if (nginx === undefined) return t.fail('nginx is not installed (apt-get install -y nginx)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-bench-nginx-'));
  for (const [name, text] of [
    ['backend.conf', backendConfig({ port: 18081, prefix: dir, workers: 1, root: process.getuid?.() === 0, accessLog: path.join(dir, 'hits.log') })],
    ['proxy.conf', proxyConfig({ port: 18082, prefix: dir, workers: 1, root: process.getuid?.() === 0, upstream: 'http://127.0.0.1:18081', keepalive: 64 })],
  ] as const) {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    t.notThrows(() => execFileSync(nginx!, ['-t', '-q', '-p', dir, '-c', file], { stdio: 'pipe' }), name);
  }
});

test('chart: nice axis steps, and an SVG with one bar label per target and n/a for a missing figure', (t) => {
  t.deepEqual(niceAxis(4200), { max: 6000, step: 2000 });
  t.deepEqual(niceAxis(900), { max: 1000, step: 250 });
  t.deepEqual(niceAxis(0), { max: 1, step: 0.25 });
  const svg = chartSvg('bench', [
    {
      title: 'req/s',
      unit: 'req/s',
      bars: [
        { label: 'gateway', value: spread([4000, 4200, 4100]) },
        { label: 'nginx <proxy>', value: spread([]) },
      ],
    },
  ]);
  t.true(svg.startsWith('<?xml'));
  t.regex(svg, />gateway</);
  t.regex(svg, /nginx &lt;proxy&gt;/);
  t.regex(svg, />n\/a</);
});

test('the gateway config the bench runs is valid, with auth and limits on and off', async (t) => {
  for (const auth of [true, false]) {
    const raw = gatewayConfig({
      port: 0,
      backend: 'http://127.0.0.1:9',
      auth,
      jwks: path.resolve('examples/dev-keys/jwks.json'),
      adminToken: 'bench-admin-token-0123456789',
    });
    const config = await parseConfig(raw, { baseDir: process.cwd(), source: 'bench' });
    t.deepEqual(config.models.iris!.weights, { a: 90, b: 10 });
    t.is(config.auth !== undefined, auth);
    t.is(config.rateLimits !== undefined, auth);
  }
});
