// The admin API over real HTTP: bearer auth, every endpoint, every validation error as JSON with its status, atomic weight changes.

import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { anyOf, bearerToken, bearerTokenAuthorizer, tokensEqual } from '../../src/admin/auth.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { RunningGateway } from '../../src/app/gateway.js';
import type { ModelView } from '../../src/reload/views.js';
import { gatewayConfig, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';

const TOKEN = 'admin-token-for-tests-0123';
const versions = (irisModels().iris as { versions: unknown }).versions;

let gw: RunningGateway;
let admin: string;
test.before(async () => {
  gw = await startTestGateway({
    ...gatewayConfig({ admin: { token: TOKEN } }),
    models: {
      iris: { versions, weights: { '1': 90, '2': 10 }, sticky: { header: 'x-user-id' }, shadow: { targets: [{ version: '2', percent: 50 }] } },
      solo: { versions: { '1': (versions as Record<string, unknown>)['1'] } },
    },
  });
  admin = gw.admin!.url;
});
test.after.always(() => gw?.stop());

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A raw admin call (so any method, header and body can be sent). */
function call(method: string, path: string, options: { token?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const token = options.token === undefined ? TOKEN : options.token;
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${admin}${path}`,
      {
        method,
        headers: {
          ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
          ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...options.headers,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(text) as Record<string, unknown> });
          } catch (err) {
            reject(new Error(`non-JSON answer ${res.statusCode}: ${text}`, { cause: err }));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

test('the admin API listens on loopback, on its own port', (t) => {
  const address = gw.admin!.server.address() as AddressInfo;
  t.is(address.address, '127.0.0.1');
  t.not(address.port, gw.port);
});

const refused = test.macro({
  async exec(t, token: string | null, headers: Record<string, string>, challenge: string) {
    for (const [method, path] of [
      ['GET', '/admin/models'],
      ['PUT', '/admin/models/iris/weights'],
      ['POST', '/admin/reload'],
      ['GET', '/admin/nope'],
    ]) {
      const res = await call(method!, path!, { token, headers, ...(method === 'PUT' ? { body: '{"1":1}' } : {}) });
      t.is(res.status, 401, `${method} ${path}`);
      t.is(res.headers['www-authenticate'], challenge);
      t.deepEqual(Object.keys(res.body), ['error']);
    }
  },
  title: (given = '') => `401: ${given}`,
});

test('no token', refused, null, {}, 'Bearer realm="model-gateway-admin"');
test('a wrong token', refused, 'admin-token-for-tests-0124', {}, 'Bearer realm="model-gateway-admin", error="invalid_token"');
test('a prefix of the token', refused, TOKEN.slice(0, -1), {}, 'Bearer realm="model-gateway-admin", error="invalid_token"');
test(
  'a non-bearer scheme',
  refused,
  null,
  { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
  'Bearer realm="model-gateway-admin", error="invalid_token"',
);

test('GET /admin/models: versions, effective weights and shares, source, stickiness, shadows, readiness', async (t) => {
  const res = await call('GET', '/admin/models');
  t.is(res.status, 200);
  t.is(res.headers['cache-control'], 'no-store');
  const models = res.body.models as ModelView[];
  const iris = models.find((m) => m.name === 'iris')!;
  t.like(iris, {
    ready: true,
    defaultVersion: '1',
    weightsSource: 'config',
    weights: { '1': 90, '2': 10 },
    configWeights: { '1': 90, '2': 10 },
    override: null,
    sticky: { header: 'x-user-id' },
    versionHeader: { enabled: false, requiredScope: null },
    shadow: { targets: [{ version: '2', percent: 50 }], timeoutMs: 5000, maxConcurrent: 8, inFlight: 0 },
  });
  t.deepEqual(iris.versions, [
    { version: '1', weight: 90, share: 0.9, ready: true, backend: 'onnx', shadowPercent: null },
    { version: '2', weight: 10, share: 0.1, ready: true, backend: 'onnx', shadowPercent: 50 },
  ]);
  t.like(
    models.find((m) => m.name === 'solo'),
    { weightsSource: 'default', weights: { '1': 1 }, shadow: null },
  );
  t.is(res.body.generation, 1);
});

const badWeights = test.macro({
  async exec(t, model: string, body: string, status: number, message: RegExp) {
    const res = await call('PUT', `/admin/models/${model}/weights`, { body });
    t.is(res.status, status, JSON.stringify(res.body));
    t.regex(String(res.body.error), message);
    // Nothing changed.
    t.like((await call('GET', '/admin/models/iris')).body, { weightsSource: 'config', weights: { '1': 90, '2': 10 } });
  },
  title: (given = '') => `PUT weights rejected: ${given}`,
});

test.serial('an unknown version', badWeights, 'iris', '{"1": 50, "3": 50}', 400, /version '3' is not one of 1, 2/);
test.serial('a negative weight', badWeights, 'iris', '{"1": -5, "2": 10}', 400, /weight of version '1' must be an integer from 0 to 1000000, got -5/);
test.serial('a fractional weight', badWeights, 'iris', '{"1": 7.5}', 400, /got 7\.5/);
test.serial('all zero', badWeights, 'iris', '{"1": 0, "2": 0}', 400, /at least one weight must be above 0/);
test.serial('not an object', badWeights, 'iris', '[75, 25]', 400, /weights must be an object/);
test.serial('not JSON', badWeights, 'iris', '{"1": 75,', 400, /not valid JSON/);
test.serial('an empty body', badWeights, 'iris', '', 400, /empty/);
test.serial('a huge body', badWeights, 'iris', `{"1": 1, "x": "${'a'.repeat(70_000)}"}`, 413, /exceeds the limit of 65536 bytes/);
test.serial('an unknown model', badWeights, 'nope', '{"1": 1}', 404, /unknown model 'nope'/);

test.serial('PUT weights applies atomically, says it is a runtime override, and DELETE returns to the config', async (t) => {
  const put = await call('PUT', '/admin/models/iris/weights', { body: '{"1": 75, "2": 25}' });
  t.is(put.status, 200);
  t.like(put.body, { weightsSource: 'override', weights: { '1': 75, '2': 25 }, configWeights: { '1': 90, '2': 10 } });
  t.regex(
    String((put.body.override as { note: string }).note),
    /runtime override.*kept across reloads unless the reloaded config changes this model's weights; lost on restart/,
  );
  t.like((await call('GET', '/admin/models')).body, { models: [{ name: 'iris', weightsSource: 'override' }] });
  // Unlisted versions get 0: all traffic to v2 now, which the data plane shows at once.
  t.like((await call('PUT', '/admin/models/iris/weights', { body: '{"2": 3}' })).body, { weights: { '1': 0, '2': 3 } });
  for (let i = 0; i < 10; i++) t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest())).headers.get('x-model-version'), '2');
  const del = await call('DELETE', '/admin/models/iris/weights');
  t.like(del.body, { weightsSource: 'config', weights: { '1': 90, '2': 10 }, override: null });
  // Setting exactly the config's weights is "back to config", not an override.
  t.like((await call('PUT', '/admin/models/iris/weights', { body: '{"1": 90, "2": 10}' })).body, { weightsSource: 'config', override: null });
});

test.serial('a model without config weights can get weights at runtime', async (t) => {
  const put = await call('PUT', '/admin/models/solo/weights', { body: '{"1": 5}' });
  t.like(put.body, { weightsSource: 'override', weights: { '1': 5 }, configWeights: null });
  t.like((await call('DELETE', '/admin/models/solo/weights')).body, { weightsSource: 'default' });
});

test.serial('GET and DELETE /admin/models/{m}/shadow: comparison statistics, and a reset', async (t) => {
  for (let i = 0; i < 20; i++) await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest());
  await gw.controller.shadow.idle();
  const stats = await call('GET', '/admin/models/iris/shadow');
  t.is(stats.status, 200);
  t.like(stats.body, { model: 'iris', config: { targets: [{ version: '2', percent: 50 }] }, disagreementLog: null });
  const [pair] = stats.body.pairs as { mirrored: number; compared: number; outputs: Record<string, unknown> }[];
  t.true(pair!.mirrored > 0 && pair!.mirrored <= 20);
  t.is(pair!.compared, pair!.mirrored);
  t.deepEqual(Object.keys(pair!.outputs).sort(), ['label', 'probabilities']);
  const reset = await call('DELETE', '/admin/models/iris/shadow');
  t.deepEqual(reset.body.pairs, []);
  t.like(await call('GET', '/admin/models/solo/shadow'), { status: 200, body: { config: null, pairs: [] } });
});

test('GET /admin/status reports the generation and that this gateway has no file to reload', async (t) => {
  t.like(await call('GET', '/admin/status'), {
    status: 200,
    body: { configFile: null, watching: false, reload: { lastAttempt: { outcome: 'applied', trigger: 'start' } } },
  });
  t.like(await call('POST', '/admin/reload'), { status: 409, body: { error: 'the gateway was not started from a config file, so it cannot reload one' } });
});

const notFound = test.macro({
  async exec(t, method: string, path: string, status: number, allow?: string) {
    const res = await call(method, path);
    t.is(res.status, status);
    t.is(typeof res.body.error, 'string');
    t.is(res.headers.allow, allow);
  },
  title: (given = '') => `routing: ${given}`,
});

test('an unknown endpoint', notFound, 'GET', '/admin/whatever', 404);
test('a path outside /admin', notFound, 'GET', '/v2/models', 404);
test('an unknown model', notFound, 'GET', '/admin/models/nope', 404);
test('a deeper unknown path', notFound, 'GET', '/admin/models/iris/weights/x', 404);
test('GET on weights', notFound, 'GET', '/admin/models/iris/weights', 405, 'PUT, DELETE');
test('POST on models', notFound, 'POST', '/admin/models', 405, 'GET');
test('GET on reload', notFound, 'GET', '/admin/reload', 405, 'POST');

test('a malformed request line gets a JSON 400 and the admin server keeps running', async (t) => {
  const net = await import('node:net');
  const socket = net.connect((gw.admin!.server.address() as AddressInfo).port, '127.0.0.1');
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString()));
  socket.end('GARBAGE\r\n\r\n');
  await new Promise((resolve) => socket.on('close', resolve));
  t.regex(answer, /^HTTP\/1\.1 400 /);
  t.regex(answer, /\{"error":"malformed HTTP request/);
  t.is((await call('GET', '/admin/status')).status, 200);
});

test('token comparison: equal only when identical, whatever the lengths', (t) => {
  t.true(tokensEqual('abc', 'abc'));
  t.false(tokensEqual('abc', 'abd'));
  t.false(tokensEqual('abc', 'abcd'));
  t.false(tokensEqual('', 'abc'));
  t.is(bearerToken({ authorization: 'Bearer abc.def' }), 'abc.def');
  t.is(bearerToken({ authorization: 'bearer   abc' }), 'abc');
  t.is(bearerToken({ authorization: 'Bearer a b' }), '');
  t.is(bearerToken({}), undefined);
});

test('authorisation is pluggable: anyOf lets either check allow, and keeps the more specific refusal', async (t) => {
  const token = bearerTokenAuthorizer(() => 'the-static-token-123');
  const readOnlyJwt = (r: { action: string }) => {
    if (r.action === 'write') throw new GatewayError('GW_ERR_ADMIN_FORBIDDEN', 'writes need gateway:admin');
  };
  const either = anyOf(token, readOnlyJwt);
  const check = async (r: Parameters<typeof either>[0]) => either(r);
  const req = (action: 'read' | 'write', authorization?: string) => ({
    method: 'GET',
    path: '/admin/models',
    action,
    headers: authorization ? { authorization } : {},
  });
  await t.notThrowsAsync(check(req('read')));
  await t.notThrowsAsync(check(req('write', 'Bearer the-static-token-123')));
  const err = await t.throwsAsync(check(req('write')), { instanceOf: GatewayError });
  t.is(err!.status, 403);
});

test('without a token in config or environment the admin API does not start (metrics off) or refuses every admin call (metrics on)', async (t) => {
  const quiet = await startTestGateway({ ...gatewayConfig(), telemetry: { metrics: { enabled: false } } }, { env: {} });
  t.teardown(() => quiet.stop());
  t.is(quiet.admin, undefined);
  const metricsOnly = await startTestGateway(gatewayConfig(), { env: {} });
  t.teardown(() => metricsOnly.stop());
  t.is((await fetch(`${metricsOnly.admin!.url}/metrics`)).status, 200);
  for (const authorization of [undefined, 'Bearer anything-at-all-here']) {
    const refused = await fetch(`${metricsOnly.admin!.url}/admin/status`, authorization ? { headers: { authorization } } : {});
    t.is(refused.status, 401);
  }
  const fromEnv = await startTestGateway(gatewayConfig(), { env: { MODEL_GATEWAY_ADMIN_TOKEN: 'token-from-the-environment' } });
  t.teardown(() => fromEnv.stop());
  const res = await fetch(`${fromEnv.admin!.url}/admin/status`, { headers: { authorization: 'Bearer token-from-the-environment' } });
  t.is(res.status, 200);
});
