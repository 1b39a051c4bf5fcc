// A started gateway with extAuthz on: Envoy's checks get the same answers as the data plane, from the same buckets.

import test from 'ava';
import http from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ENVOY_PROTO_SOURCE_DIRS, importClosure, VENDORED_ROOT_PROTO } from '../../scripts/vendor-envoy-protos.js';
import { vendoredProtoDir } from '../../src/ext-authz/grpc.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { gatewayConfig, irisRequest, ROOT, startTestGateway } from '../helpers/gateway.js';

const key = ecKey('k1');
const ISS = 'https://idp.example';
const bearer = (over: Record<string, unknown> = {}) =>
  `Bearer ${tokenFor(key, { iss: ISS, aud: 'gw', sub: 'alice', scope: 'iris:infer', exp: Math.floor(Date.now() / 1000) + 600, ...over })}`;

async function start() {
  const raw = gatewayConfig();
  const models = raw.models as Record<string, Record<string, unknown>>;
  models.iris!.auth = { infer: { scopes: ['iris:infer'] } };
  const gw = await startTestGateway({
    ...raw,
    auth: { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
    // A refill of one token per hour: nothing comes back during the test, whatever the machine's speed.
    rateLimits: { rules: [{ name: 'per-caller', key: { claim: 'sub' }, ratePerSecond: 1 / 3600, burst: 3 }] },
    extAuthz: { http: { enabled: true, port: 0 }, grpc: { enabled: true, port: 0 } },
  });
  return gw;
}

function envoyHttpCheck(base: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}/ext-authz/v2/models/iris/infer`,
      { method: 'POST', headers: { host: 'models.example', ...headers }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const parity = test.macro({
  async exec(t, headers: Record<string, string>, status: number) {
    const gw = await start();
    t.teardown(() => gw.stop());
    const plane = await fetch(`${gw.url}/v2/models/iris/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(irisRequest()),
    });
    await plane.arrayBuffer();
    const check = await envoyHttpCheck(gw.extAuthz.http!.url, headers);
    t.is(plane.status, status);
    t.is(check.status, status);
    t.is(check.headers['www-authenticate'], plane.headers.get('www-authenticate') ?? undefined);
  },
  title: (title) => `ext_authz and the data plane agree: ${title ?? ''}`,
});
test('no token', parity, {}, 401);
test('a malformed token', parity, { authorization: 'Bearer not-a-jwt' }, 401);
test('missing scope', parity, { authorization: bearer({ scope: 'other' }) }, 403);
test('a good token', parity, { authorization: bearer() }, 200);

test('checks and data-plane requests draw on the same bucket; stop() closes the ext_authz services', async (t) => {
  const gw = await start();
  let stopped = false;
  t.teardown(() => (stopped ? undefined : gw.stop()));
  const headers = { authorization: bearer({ sub: 'dave' }) };
  const infer = () =>
    fetch(`${gw.url}/v2/models/iris/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(irisRequest()),
    });
  t.is((await infer()).status, 200);
  t.is((await envoyHttpCheck(gw.extAuthz.http!.url, headers)).status, 200);
  t.is((await envoyHttpCheck(gw.extAuthz.http!.url, headers)).status, 200);
  const refused = await envoyHttpCheck(gw.extAuthz.http!.url, headers);
  t.is(refused.status, 429);
  t.truthy(refused.headers['retry-after']);
  t.is((await infer()).status, 429);

  const url = gw.extAuthz.http!.url;
  await gw.stop();
  stopped = true;
  await t.throwsAsync(() => envoyHttpCheck(url, headers), { code: 'ECONNREFUSED' });
});

test('protos/ holds exactly the ext_authz import closure, byte-identical to @grpc/grpc-js-xds (npm run protos:vendor), besides the gRPC data plane’s', async (t) => {
  const dir = vendoredProtoDir();
  t.is(dir, path.join(ROOT, 'protos'));
  const expected = importClosure(VENDORED_ROOT_PROTO, ENVOY_PROTO_SOURCE_DIRS);
  const present = (await readdir(dir, { recursive: true }))
    .filter((f) => f.endsWith('.proto'))
    .map((f) => f.split(path.sep).join('/'))
    .sort();
  // The data plane's own protos (written from their specifications, checked by test/grpc/protos.test.ts).
  const dataPlane = ['grpc/health/v1/health.proto', 'inference/open_inference_grpc.proto'];
  t.deepEqual(
    present.filter((f) => dataPlane.includes(f)),
    dataPlane,
  );
  t.deepEqual(
    present.filter((f) => !dataPlane.includes(f)),
    expected.map(([rel]) => rel).sort(),
  );
  for (const [rel, source] of expected) t.is(await readFile(path.join(dir, rel), 'utf8'), await readFile(source, 'utf8'), rel);
});
