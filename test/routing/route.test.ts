// Version choice over real HTTP: path beats header beats sticky/weights; the header needs config (and a scope) to count.

import test from 'ava';
import http from 'node:http';
import type { RunningGateway } from '../../src/app/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { gatewayConfig, getJson, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';

const ISS = 'https://idp.test';
const AUD = 'model-gateway';
const key = ecKey('route-test');
const nowS = Math.floor(Date.now() / 1000);
const token = (claims: Record<string, unknown>) => tokenFor(key, { iss: ISS, aud: AUD, iat: nowS, exp: nowS + 3600, ...claims });

const versions = (irisModels().iris as { versions: unknown }).versions;
const model = (extra: Record<string, unknown>) => ({ versions, auth: { allowAnonymous: true }, ...extra });

let gw: RunningGateway;
test.before(async () => {
  gw = await startTestGateway({
    ...gatewayConfig(),
    auth: { issuers: [{ issuer: ISS, audiences: [AUD], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
    models: {
      // Everything unversioned goes to v2; the header is not honoured.
      plain: model({ weights: { '2': 1 } }),
      // The header is honoured, but only for callers with the `iris:pin` scope.
      guarded: model({ weights: { '1': 1 }, override: { enabled: true, requiredScope: 'iris:pin' } }),
      // Sticky by header, header honoured for anyone.
      sticky: model({ weights: { '1': 1, '2': 1 }, sticky: { header: 'x-user-id' }, override: { enabled: true } }),
      // Sticky by the verified `sub` claim.
      byclaim: model({ weights: { '1': 1, '2': 1 }, sticky: { claim: 'sub' } }),
      // No weights: the default version takes everything (the behaviour before weights existed).
      unweighted: model({ defaultVersion: '1' }),
    },
  });
});
test.after.always(() => gw?.stop());

async function versionOf(path: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await postJson(`${gw.url}${path}`, irisRequest(), headers);
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`);
  const header = res.headers.get('x-model-version')!;
  if (res.body.model_version !== header) throw new Error(`body says ${String(res.body.model_version)}, header says ${header}`);
  return header;
}

const routes = test.macro({
  async exec(t, path: string, headers: () => Record<string, string>, expected: string) {
    t.is(await versionOf(path, headers()), expected);
  },
  title: (given = '') => `route: ${given}`,
});

test('weights send unversioned inference to the only weighted version', routes, '/v2/models/plain/infer', () => ({}), '2');
test('a version in the path always wins', routes, '/v2/models/plain/versions/1/infer', () => ({ 'x-model-version': '2' }), '1');
test('the header is ignored where the model does not allow it', routes, '/v2/models/plain/infer', () => ({ 'x-model-version': '1' }), '2');
test('the header is honoured where allowed', routes, '/v2/models/sticky/infer', () => ({ 'x-model-version': '2', 'x-user-id': 'someone-on-v1' }), '2');
test('the path beats an allowed header', routes, '/v2/models/sticky/versions/1/infer', () => ({ 'x-model-version': '2' }), '1');
test(
  'a caller with the required scope may pin a version',
  routes,
  '/v2/models/guarded/infer',
  () => ({ 'x-model-version': '2', authorization: `Bearer ${token({ sub: 'ops', scope: 'iris:pin other' })}` }),
  '2',
);
test('without the header the guarded model follows its weights, scope or not', routes, '/v2/models/guarded/infer', () => ({}), '1');
test(
  'a caller with the required scope may name a version in the path',
  routes,
  '/v2/models/guarded/versions/2/infer',
  () => ({ authorization: `Bearer ${token({ sub: 'ops', scope: 'iris:pin' })}` }),
  '2',
);
test('no weights: the default version answers', routes, '/v2/models/unweighted/infer', () => ({}), '1');

const refuses = test.macro({
  async exec(t, path: string, headers: () => Record<string, string>, status: number, message: RegExp) {
    const res = await postJson(`${gw.url}${path}`, irisRequest(), headers());
    t.is(res.status, status);
    t.regex(String(res.body.error), message);
    t.deepEqual(Object.keys(res.body), ['error']);
  },
  title: (given = '') => `route refuses: ${given}`,
});

test(
  'a pinned version the model does not have',
  refuses,
  '/v2/models/sticky/infer',
  () => ({ 'x-model-version': '7' }),
  404,
  /model 'sticky' has no version '7' \(versions: 1, 2\)/,
);
test(
  'an anonymous caller pinning a guarded model',
  refuses,
  '/v2/models/guarded/infer',
  () => ({ 'x-model-version': '2' }),
  403,
  /needs an authenticated caller with the scope 'iris:pin'/,
);
test(
  'an anonymous caller naming a version of a guarded model in the path (one decision, whatever the way)',
  refuses,
  '/v2/models/guarded/versions/2/infer',
  () => ({}),
  403,
  /choosing a version of model 'guarded' in the path needs an authenticated caller with the scope 'iris:pin'/,
);
test(
  'a caller without the scope naming a version of a guarded model in the path',
  refuses,
  '/v2/models/guarded/versions/2/infer',
  () => ({ authorization: `Bearer ${token({ sub: 'dev', scope: 'iris:infer' })}` }),
  403,
  /in the path needs the scope 'iris:pin'/,
);
test(
  'a percent-encoded name is the same model: its version rule still applies',
  refuses,
  '/v2/models/gu%61rded/versions/2/infer',
  () => ({}),
  403,
  /model 'guarded' in the path/,
);
test(
  'a caller without the scope pinning a guarded model',
  refuses,
  '/v2/models/guarded/infer',
  () => ({ 'x-model-version': '2', authorization: `Bearer ${token({ sub: 'dev', scope: 'iris:infer' })}` }),
  403,
  /needs the scope 'iris:pin'/,
);

test('sticky by header: each caller keeps its version, and callers spread over both', async (t) => {
  const seen = new Map<string, Set<string>>();
  for (let round = 0; round < 3; round++) {
    await Promise.all(
      Array.from({ length: 40 }, async (_, u) => {
        const v = await versionOf('/v2/models/sticky/infer', { 'x-user-id': `user-${u}` });
        seen.set(`user-${u}`, (seen.get(`user-${u}`) ?? new Set()).add(v));
      }),
    );
  }
  t.true(
    [...seen.values()].every((s) => s.size === 1),
    'a caller changed version',
  );
  const onV2 = [...seen.values()].filter((s) => s.has('2')).length;
  // 40 callers at 50/50: both versions must have callers (P(all on one side) = 2^-39).
  t.true(onV2 > 0 && onV2 < 40, `${onV2} of 40 on v2`);
});

test('sticky by verified claim: the same subject keeps its version across tokens', async (t) => {
  const bySubject = new Map<string, Set<string>>();
  for (let i = 0; i < 60; i++) {
    const sub = `subject-${i % 20}`;
    // A new token each time (different iat): only the claim decides.
    const v = await versionOf('/v2/models/byclaim/infer', { authorization: `Bearer ${token({ sub, iat: nowS - i })}` });
    bySubject.set(sub, (bySubject.get(sub) ?? new Set()).add(v));
  }
  t.true([...bySubject.values()].every((s) => s.size === 1));
  const onV2 = [...bySubject.values()].filter((s) => s.has('2')).length;
  t.true(onV2 > 0 && onV2 < 20, `${onV2} of 20 on v2`);
});

test('unversioned metadata and ready describe the default version (the heaviest when none is set), never a coin flip', async (t) => {
  for (let i = 0; i < 5; i++) {
    t.is((await getJson(`${gw.url}/v2/models/plain`)).headers.get('x-model-version'), '2');
    t.like(await getJson(`${gw.url}/v2/models/plain/ready`), { status: 200, body: { version: '2', ready: true } });
  }
});

test('injected rng and hash: no sticky key → weighted random (rng decides); with a key → the hash decides', async (t) => {
  let next = 0.99;
  const pinned = await startTestGateway(
    { ...gatewayConfig(), models: { m: { versions, weights: { '1': 1, '2': 1 }, sticky: { header: 'x-user-id' } } } },
    {
      rng: () => next,
      // Key "on-1" scores best on version 1, anything else on version 2.
      keyHash: (_model, version, key) => ((key === 'on-1') === (version === '1') ? 0.9 : 0.1),
    },
  );
  t.teardown(() => pinned.stop());
  const ask = async (headers: Record<string, string> = {}) =>
    (await postJson(`${pinned.url}/v2/models/m/infer`, irisRequest(), headers)).headers.get('x-model-version');
  t.is(await ask(), '2');
  next = 0.1;
  t.is(await ask(), '1');
  t.is(await ask({ 'x-user-id': 'on-1' }), '1');
  next = 0.99;
  t.is(await ask({ 'x-user-id': 'on-1' }), '1');
  t.is(await ask({ 'x-user-id': 'someone-else' }), '2');
  next = 0.1;
  t.is(await ask({ 'x-user-id': 'someone-else' }), '2');
});

/** One request with raw header lines, so a header can be sent twice as two lines (as fetch never does). */
function rawPost(path: string, lines: string[]): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Record<string, unknown> }> {
  const body = JSON.stringify(irisRequest());
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${gw.url}${path}`,
      {
        method: 'POST',
        headers: ['host', new URL(gw.url).host, 'content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), ...lines],
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('repeated headers: x-model-version twice is a 400; a sticky key and x-request-id use their first value, never the joined one', async (t) => {
  const twice = await rawPost('/v2/models/sticky/infer', ['x-model-version', '2', 'x-model-version', '1']);
  t.is(twice.status, 400);
  t.regex(String(twice.body.error), /x-model-version header must be sent at most once/);

  // Node joins the two lines into "a, b"; routing must use "a", exactly as a caller sending only "a".
  for (const first of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']) {
    const alone = await rawPost('/v2/models/sticky/infer', ['x-user-id', first]);
    const repeated = await rawPost('/v2/models/sticky/infer', ['x-user-id', first, 'x-user-id', 'someone-else']);
    t.is(repeated.headers['x-model-version'], alone.headers['x-model-version'], first);
  }
  const ids = await rawPost('/v2/models/plain/infer', ['x-request-id', 'first-id', 'x-request-id', 'second-id']);
  t.is(ids.headers['x-request-id'], 'first-id');
});
