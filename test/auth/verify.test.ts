// The verifier and the key sources with an injected clock: token cache bounds, JWKS cooldowns, rotation and outages.

import test from 'ava';
import { Writable } from 'node:stream';
import { authSchema } from '../../src/config/schema.js';
import { bindKeys, RemoteKeySource } from '../../src/auth/jwks.js';
import { readBearerToken, scopesOf, TokenVerifier } from '../../src/auth/verify.js';
import { isGatewayError } from '../../src/errors/gateway-error.js';
import { createLogger } from '../../src/telemetry/log.js';
import { closedPort, countingServer, ecKey, rsaKey, tokenFor } from '../helpers/jwt.js';

const log = createLogger('silent');
const ISS = 'https://idp.example';
const T0 = 1_700_000_000_000;

function clock(start = T0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const claims = (nowMs: number, over: Record<string, unknown> = {}) => ({
  iss: ISS,
  aud: 'gw',
  sub: 'alice',
  iat: nowMs / 1000,
  exp: nowMs / 1000 + 60,
  ...over,
});

function verifier(keys: unknown[] | { url: string; cooldownMs?: number; cacheMaxAgeMs?: number }, now: () => number, extra: Record<string, unknown> = {}) {
  const jwks = Array.isArray(keys) ? { keys } : keys;
  const auth = authSchema.parse({ issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['RS256', 'ES256'], jwks }], ...extra });
  return new TokenVerifier(auth, { now, log });
}

const rejects = async (t: import('ava').ExecutionContext, p: Promise<unknown>, pattern: RegExp) => {
  const err = await t.throwsAsync(p);
  t.true(isGatewayError(err));
  t.regex(err!.message, pattern);
};

test('a cached token is never used past its exp: at exp + tolerance it is verified again and refused', async (t) => {
  const c = clock();
  const key = ecKey('k1');
  const v = verifier([key.jwk], c.now);
  const token = tokenFor(key, claims(T0));
  t.is((await v.verify(token)).subject, 'alice');
  t.is((await v.verify(token)).subject, 'alice');
  t.is(v.stats.verified, 1);
  t.is(v.stats.cacheHits, 1);
  c.advance(59_000); // still before exp: served from the cache
  await v.verify(token);
  t.is(v.stats.cacheHits, 2);
  c.advance(1_000 + 29_000); // past exp: the cache entry is dead; the 30 s tolerance still accepts it (verified again)
  await v.verify(token);
  t.is(v.stats.verified, 2);
  c.advance(1_000); // beyond the tolerance
  await rejects(t, v.verify(token), /expired/);
});

test('a keep-alive connection remembers its last verified token: the same token again is recognised there, another is verified on its own', async (t) => {
  const c = clock();
  const key = ecKey('k1');
  const v = verifier([key.jwk], c.now);
  const alice = tokenFor(key, claims(T0));
  const bob = tokenFor(key, claims(T0, { sub: 'bob' }));
  const conn = {};
  t.is((await v.verify(alice, conn)).subject, 'alice');
  t.is((await v.verify(alice, conn)).subject, 'alice');
  t.like(v.stats, { verified: 1, cacheHits: 1, connectionHits: 1 });
  // A different token on the same connection never gets the remembered identity.
  t.is((await v.verify(bob, conn)).subject, 'bob');
  t.like(v.stats, { verified: 2, connectionHits: 1 });
  // Another connection with alice's token: the shared cache answers, and that connection remembers it from now on.
  const other = {};
  t.is((await v.verify(alice, other)).subject, 'alice');
  t.is((await v.verify(alice, other)).subject, 'alice');
  t.like(v.stats, { verified: 2, cacheHits: 3, connectionHits: 2 });
  // Past exp the memo is dead too: the verifier decides again (and refuses once beyond the tolerance).
  c.advance(60_000 + 31_000);
  await rejects(t, v.verify(alice, other), /expired/);
  t.is(v.stats.connectionHits, 2);
});

test('with the token cache off (maxEntries 0) connections remember nothing either', async (t) => {
  const key = ecKey('k1');
  const v = verifier([key.jwk], clock().now, { tokenCache: { maxEntries: 0 } });
  const token = tokenFor(key, claims(T0));
  const conn = {};
  await v.verify(token, conn);
  await v.verify(token, conn);
  t.like(v.stats, { verified: 2, cacheHits: 0, connectionHits: 0 });
});

test('the cache is bounded (least recently used evicted) and its entries live at most maxTtlMs', async (t) => {
  const c = clock();
  const key = ecKey('k1');
  const v = verifier([key.jwk], c.now, { tokenCache: { maxEntries: 2, maxTtlMs: 10_000 } });
  const tokens = ['a', 'b', 'c'].map((sub) => tokenFor(key, claims(T0, { sub, exp: T0 / 1000 + 3600 })));
  for (const token of tokens) await v.verify(token);
  await v.verify(tokens[2]!); // hit
  await v.verify(tokens[0]!); // evicted: verified again
  t.is(v.stats.cacheHits, 1);
  t.is(v.stats.verified, 4);
  c.advance(10_000);
  await v.verify(tokens[0]!); // past maxTtlMs: verified again
  t.is(v.stats.verified, 5);
});

test('a token without kid is tried against each matching key', async (t) => {
  const [k1, k2] = [rsaKey('r1'), rsaKey('r2')];
  const v = verifier([k1.jwk, k2.jwk], clock().now);
  t.is((await v.verify(tokenFor(k2, claims(T0), { kid: undefined }))).subject, 'alice');
});

test('scopes come from scope (space-separated) and scp (string or array)', (t) => {
  t.deepEqual([...scopesOf({ scope: 'a b  c' })], ['a', 'b', 'c']);
  t.deepEqual([...scopesOf({ scp: ['x', 'y', 3] })], ['x', 'y']);
  t.deepEqual([...scopesOf({ scope: 'a', scp: 'b' })], ['a', 'b']);
  t.deepEqual([...scopesOf({ scope: 42 })], []);
});

const bearerCase = test.macro({
  exec(t, headers: Record<string, string>, raw: string[], expected: string | undefined | RegExp) {
    if (expected instanceof RegExp) {
      const err = t.throws(() => readBearerToken(headers, raw, 'r'));
      t.regex(`${err!.message} ${(err as { status?: number }).status}`, expected);
    } else t.is(readBearerToken(headers, raw, 'r'), expected);
  },
  title: (title = '') => `Authorization parsing: ${title}`,
});
test('none', bearerCase, {}, [], undefined);
test('Basic is not a bearer token', bearerCase, { authorization: 'Basic YTpi' }, ['Authorization', 'Basic YTpi'], undefined);
test('scheme is case-insensitive', bearerCase, { authorization: 'bEaReR abc.def.ghi' }, ['authorization', 'bEaReR abc.def.ghi'], 'abc.def.ghi');
test('empty', bearerCase, { authorization: 'Bearer' }, ['authorization', 'Bearer'], /empty 401$/);
test(
  'two headers',
  bearerCase,
  { authorization: 'Bearer a' },
  ['authorization', 'Bearer a', 'AUTHORIZATION', 'Bearer b'],
  /more than one Authorization header.* 400$/,
);
test('two credentials', bearerCase, { authorization: 'Bearer a b' }, ['authorization', 'Bearer a b'], /more than one credential.* 400$/);

test('keys are bound to one algorithm; private keys and unusable keys are refused', (t) => {
  const rsa = rsaKey('r');
  const { alg: _drop, ...noAlg } = rsa.jwk;
  void _drop;
  t.is(bindKeys([noAlg], ['PS256', 'RS256']).keys[0]!.alg, 'PS256');
  t.deepEqual(bindKeys([rsa.jwk], ['ES256']), { keys: [], dropped: 1 });
  t.deepEqual(bindKeys([{ ...rsa.jwk, use: 'enc' }], ['RS256']), { keys: [], dropped: 1 });
  t.throws(() => bindKeys([{ ...rsa.jwk, d: 'secret' }], ['RS256']), { message: /private key material/ });
  t.throws(() => bindKeys([{ kty: 'RSA', n: 'AQAB', e: 'AQAB', alg: 'RS256' }, 'x'], ['RS256']), { message: /not|valid/ });
  t.throws(() => verifier([rsa.jwk], clock().now, { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [rsa.jwk] } }] }), {
    message: /no key usable with algorithms ES256/,
  });
});

test('remote JWKS: one fetch per cooldown however many unknown kids arrive; a rotated key is found after it', async (t) => {
  const c = clock();
  const [k1, k2, attacker] = [ecKey('k1'), ecKey('k2'), ecKey('x')];
  const server = await countingServer({ keys: [k1.jwk] });
  t.teardown(() => server.close());
  const source = new RemoteKeySource({ url: server.url, cacheMaxAgeMs: 600_000, cooldownMs: 30_000, timeoutMs: 1000, algorithms: ['ES256'], now: c.now, log });
  await source.warm();
  t.is(server.hits(), 1);
  for (let i = 0; i < 50; i++) await t.throwsAsync(source.candidates({ alg: 'ES256', kid: `unknown-${i}` }), { message: /no signing key/ });
  t.is(server.hits(), 1);
  server.serve({ keys: [k1.jwk, k2.jwk] }); // the IdP rotates
  await t.throwsAsync(source.candidates({ alg: 'ES256', kid: 'k2' })); // still within the cooldown
  c.advance(30_000);
  t.is((await source.candidates({ alg: 'ES256', kid: 'k2' })).length, 1);
  t.is(server.hits(), 2);
  await Promise.all(Array.from({ length: 20 }, () => t.throwsAsync(source.candidates({ alg: 'ES256', kid: attacker.kid }))));
  t.is(server.hits(), 2);
});

test('remote JWKS: the last good key set survives an IdP outage; with none, verification fails closed until a fetch works', async (t) => {
  const c = clock();
  const key = ecKey('k1');
  const server = await countingServer({ keys: [key.jwk] });
  const v = verifier({ url: server.url, cooldownMs: 30_000, cacheMaxAgeMs: 60_000 }, c.now);
  await v.warm();
  await server.close(); // IdP down
  c.advance(120_000); // stale: a background refresh fails, the old keys keep working
  t.is((await v.verify(tokenFor(key, claims(c.now())))).subject, 'alice');

  const port = await closedPort();
  const cold = verifier({ url: `http://127.0.0.1:${port}/jwks.json`, cooldownMs: 30_000 }, c.now);
  await cold.warm();
  const err = await t.throwsAsync(cold.verify(tokenFor(key, claims(c.now()))));
  t.like(err, { code: 'GW_ERR_AUTH_KEYS_UNAVAILABLE', status: 401 });
  t.is((err as unknown as { headers: Record<string, string> }).headers['www-authenticate'], 'Bearer realm="model-gateway", error="invalid_token"');
});

test('remote JWKS: at the cache max age the key set is refetched once, and a key rotated in meanwhile verifies', async (t) => {
  const c = clock();
  const [oldKey, newKey] = [ecKey('old-1'), ecKey('new-1')];
  const server = await countingServer({ keys: [oldKey.jwk] });
  t.teardown(() => server.close());
  const v = verifier({ url: server.url, cooldownMs: 30_000, cacheMaxAgeMs: 60_000 }, c.now);
  await v.warm();
  t.is(server.hits(), 1);
  t.is((await v.verify(tokenFor(oldKey, claims(c.now())))).subject, 'alice');

  server.serve({ keys: [newKey.jwk] }); // the IdP rotates: the old key is gone, the new one published
  c.advance(59_999); // still fresh: no fetch, however many tokens arrive
  for (let i = 0; i < 5; i++) await v.verify(tokenFor(oldKey, claims(c.now(), { sub: `fresh-${i}` })));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(server.hits(), 1);

  c.advance(1); // exactly the max age: the next token is answered from the cached keys and starts one refresh
  t.is((await v.verify(tokenFor(oldKey, claims(c.now(), { sub: 'stale' })))).subject, 'stale');
  const deadline = Date.now() + 5_000;
  while (server.hits() < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  t.is(server.hits(), 2, 'the age-based refresh fetched the key set');

  // The new key verifies; the refresh is not repeated, and the unknown-kid path has nothing to refetch within the cooldown.
  for (let i = 0; i < 5; i++) t.is((await v.verify(tokenFor(newKey, claims(c.now(), { sub: `new-${i}` })))).subject, `new-${i}`);
  // The refreshed set replaced the old one: the rotated-out key is no longer accepted.
  await rejects(t, v.verify(tokenFor(oldKey, claims(c.now(), { sub: 'rotated-out' }))), /no signing key/);
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(server.hits(), 2, 'exactly one new fetch');
});

test('maxLifetimeSeconds bounds exp - iat (exp - now without iat), refuses an iat in the future, and is off by default', async (t) => {
  const c = clock();
  const key = ecKey('k1');
  const bounded = (over: Record<string, unknown>) => verifier([key.jwk], c.now, {}).verify(tokenFor(key, claims(T0, over)));
  const auth = authSchema.parse({
    issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] }, maxLifetimeSeconds: 3600 }],
  });
  const v = new TokenVerifier(auth, { now: c.now, log });
  const nowS = T0 / 1000;
  t.is((await v.verify(tokenFor(key, claims(T0, { iat: nowS, exp: nowS + 3600 })))).subject, 'alice', 'exactly the maximum');
  await rejects(t, v.verify(tokenFor(key, claims(T0, { sub: 'b', iat: nowS, exp: nowS + 3601 }))), /lifetime exceeds its issuer's maximum of 3600 s/);
  await rejects(t, v.verify(tokenFor(key, claims(T0, { sub: 'c', iat: undefined, exp: 1e20 }))), /lifetime exceeds/);
  t.is((await v.verify(tokenFor(key, claims(T0, { sub: 'd', iat: undefined, exp: nowS + 600 })))).subject, 'd', 'without iat: exp - now');
  // An iat far in the future would make any exp look short-lived.
  await rejects(t, v.verify(tokenFor(key, claims(T0, { sub: 'e', iat: nowS + 3000, exp: nowS + 3600 }))), /issued in the future/);
  await rejects(t, v.verify(tokenFor(key, claims(T0, { sub: 'f', iat: 'soon', exp: nowS + 60 }))), /iat claim/);
  // Unset: a token claiming 1e20 is accepted, as before (the bound is opt-in).
  t.is((await bounded({ sub: 'g', exp: 1e20 })).subject, 'g');
});

test('remote JWKS: one failed fetch is logged once, however many callers joined it', async (t) => {
  const c = clock();
  const key = ecKey('k1');
  const server = await countingServer({ keys: [key.jwk] });
  t.teardown(() => server.close());
  const lines: string[] = [];
  const capture = createLogger(
    'warn',
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );
  const source = new RemoteKeySource({
    url: server.url,
    cacheMaxAgeMs: 60_000,
    cooldownMs: 30_000,
    timeoutMs: 1000,
    algorithms: ['ES256'],
    now: c.now,
    log: capture,
  });
  await source.warm();
  server.serve({ keys: [] }); // the IdP now publishes an unusable set: every fetch fails
  c.advance(60_000); // stale and past the cooldown
  // A stale lookup starts the background refresh; unknown kids join that same fetch.
  await Promise.all([
    source.candidates({ alg: 'ES256', kid: 'k1' }),
    ...Array.from({ length: 5 }, () => t.throwsAsync(source.candidates({ alg: 'ES256', kid: 'rotated' }))),
  ]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(server.hits(), 2, 'one fetch at start, one refresh');
  const failures = lines.filter((l) => l.includes('JWKS fetch failed'));
  t.is(failures.length, 1, lines.join('\n'));
  t.regex(failures[0]!, /the last good key set stays in use/);
});
