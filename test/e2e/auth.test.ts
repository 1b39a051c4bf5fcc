// JWT auth over real HTTP: every bad token gets its exact status and WWW-Authenticate, and no hostile header is ever followed.

import test from 'ava';
import http from 'node:http';
import { CompactEncrypt, decodeProtectedHeader, exportSPKI } from 'jose';
import jsonwebtoken from 'jsonwebtoken';
import type { RunningGateway } from '../../src/app/gateway.js';
import { gatewayConfig, irisModels, irisRequest, startTestGateway } from '../helpers/gateway.js';
import { b64url, closedPort, countingServer, ecKey, rsaKey, signRaw, tokenFor, type CountingServer } from '../helpers/jwt.js';
import { startOipRecorder, type OipRecorder } from '../helpers/oip-recorder.js';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const nowS = NOW / 1000;
const ISS_A = 'https://idp-a.example'; // remote JWKS
const ISS_B = 'https://idp-b.example'; // inline key, typ at+jwt
const ISS_DOWN = 'https://idp-down.example'; // JWKS unreachable
const AUD = 'model-gateway';

const MISSING = 'Bearer realm="model-gateway"';
const INVALID = 'Bearer realm="model-gateway", error="invalid_token"';
const BAD_REQUEST = 'Bearer realm="model-gateway", error="invalid_request"';
const NO_SCOPE = 'Bearer realm="model-gateway", error="insufficient_scope", scope="iris:infer"';

const rsaA = rsaKey('a-rsa-1');
const ecA = ecKey('a-ec-1');
const ecB = ecKey('b-ec-1');
const attacker = rsaKey('attacker-1');
const downKey = ecKey('down-1');

const claimsA = (over: Record<string, unknown> = {}) => ({ iss: ISS_A, aud: AUD, sub: 'alice', scope: 'iris:infer', iat: nowS, exp: nowS + 600, ...over });

let gw: RunningGateway;
let jwks: CountingServer;
let trap: CountingServer;

test.before(async () => {
  jwks = await countingServer({ keys: [rsaA.jwk, ecA.jwk] });
  trap = await countingServer({ keys: [attacker.jwk] });
  const down = await closedPort();
  gw = await startTestGateway(
    {
      ...gatewayConfig({ models: irisModels() }),
      auth: {
        issuers: [
          { issuer: ISS_A, audiences: [AUD], algorithms: ['RS256', 'ES256'], jwks: { url: jwks.url } },
          { issuer: ISS_B, audiences: [AUD], algorithms: ['ES256'], typ: 'at+jwt', jwks: { keys: [ecB.jwk] } },
          { issuer: ISS_DOWN, audiences: [AUD], algorithms: ['ES256'], jwks: { url: `http://127.0.0.1:${down}/jwks.json`, timeoutMs: 500 } },
        ],
      },
      models: { ...irisModels(), iris: { ...(irisModels().iris as object), auth: { infer: { scopes: ['iris:infer'] } } } },
    },
    // A fixed clock: no cooldown ever elapses, so the JWKS server must see exactly the one start-up fetch.
    { now: () => NOW },
  );
});
test.after.always(async () => {
  await gw?.stop();
  await jwks?.close();
  await trap?.close();
});

interface Answer {
  status: number;
  challenge: string | undefined;
  text: string;
}

/** POSTs an iris inference with these headers (an array value sends the header twice), to `gw` unless told otherwise. */
function infer(headers: Record<string, string | string[]>, base: string = gw.url): Promise<Answer> {
  const body = JSON.stringify(irisRequest());
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/v2/models/iris/infer`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, challenge: res.headers['www-authenticate'], text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The checks every row makes on an answer: status, exact challenge, reason, and no echo of the token. */
function checkAnswer(
  t: import('ava').ExecutionContext,
  sent: Record<string, string | string[]>,
  answer: Answer,
  status: number,
  challenge: string | undefined,
  reason?: RegExp,
): void {
  t.is(answer.status, status, answer.text);
  t.is(answer.challenge, challenge);
  const body = JSON.parse(answer.text) as { error?: string };
  if (status !== 200) t.is(typeof body.error, 'string');
  // The reason pins down *why* it failed, so a case cannot pass for the wrong reason.
  if (reason) t.regex(body.error ?? '', reason);
  // The body never echoes the token (nor any long piece of it).
  const auth = [sent.authorization ?? []].flat().join(' ');
  for (const piece of auth.split(/[ .]/).filter((p) => p.length >= 12)) t.false(answer.text.includes(piece), 'token echoed');
}

const expectAnswer = test.macro({
  async exec(
    t,
    headers: () => Record<string, string | string[]> | Promise<Record<string, string | string[]>>,
    status: number,
    challenge: string | undefined,
    reason?: RegExp,
  ) {
    const sent = await headers();
    checkAnswer(t, sent, await infer(sent), status, challenge, reason);
  },
  title: (title = '') => title,
});

/**
 * A row whose token names a trap server in `jku`, `x5u` or an embedded `jwk`: each row gets a trap of its own (rows run
 * concurrently, so a shared counter could not tell which row was followed). The header really holds the trap URL, and
 * once the row is answered (and a moment later, for a fetch started in the background) its trap has seen nothing.
 */
const expectNotFollowed = test.macro({
  async exec(t, header: (trapUrl: string) => Record<string, unknown>, key: () => typeof rsaA, status: number, challenge: string | undefined, reason?: RegExp) {
    const rowTrap = await countingServer({ keys: [attacker.jwk] });
    t.teardown(() => rowTrap.close());
    const token = tokenFor(key(), claimsA(), header(rowTrap.url));
    const sentHeader = decodeProtectedHeader(token) as Record<string, unknown>;
    const urls = [sentHeader.jku, sentHeader.x5u, (sentHeader.jwk as Record<string, unknown> | undefined)?.x5u].filter((u) => u !== undefined);
    t.true(urls.length > 0, 'the token points somewhere');
    for (const url of urls) t.is(url, rowTrap.url, 'the token points at the trap server');
    const sent = bearer(token);
    checkAnswer(t, sent, await infer(sent), status, challenge, reason);
    await new Promise((resolve) => setTimeout(resolve, 100));
    t.is(rowTrap.hits(), 0, 'a URL from the token header was fetched');
  },
  title: (title = '') => title,
});

test('valid RS256 token from a remote JWKS', expectAnswer, () => bearer(tokenFor(rsaA, claimsA())), 200, undefined);
test('valid ES256 token from a remote JWKS', expectAnswer, () => bearer(tokenFor(ecA, claimsA())), 200, undefined);
test(
  'valid token of a second issuer with its required typ',
  expectAnswer,
  () => bearer(tokenFor(ecB, claimsA({ iss: ISS_B }), { typ: 'at+jwt' })),
  200,
  undefined,
);
test('no token', expectAnswer, () => ({}), 401, MISSING, /needs a bearer token/);
test('Basic auth', expectAnswer, () => ({ authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` }), 401, MISSING);
test('empty Bearer', expectAnswer, () => ({ authorization: 'Bearer ' }), 401, INVALID, /empty/);
test('two segments', expectAnswer, () => bearer(tokenFor(rsaA, claimsA()).split('.').slice(0, 2).join('.')), 401, INVALID, /not a JWT/);
test('bad base64 in every segment', expectAnswer, () => bearer('a.b.c'), 401, INVALID, /not base64url-encoded JSON/);
test(
  'header that is base64 but not JSON',
  expectAnswer,
  () => bearer(`${b64url('{"alg":')}.${b64url(claimsA())}.c2ln`),
  401,
  INVALID,
  /not base64url-encoded JSON/,
);
test('characters a token cannot have', expectAnswer, () => bearer('eyJ%.e30.c2ln'), 401, INVALID, /characters/);
for (const alg of ['none', 'NONE', 'None', 'nOnE']) {
  test(`alg ${alg} (unsigned)`, expectAnswer, () => bearer(`${b64url({ alg, typ: 'JWT' })}.${b64url(claimsA())}.`), 401, INVALID, /alg none/);
}
test(
  'HS256 signed with the RSA public key as the HMAC secret',
  expectAnswer,
  async () => {
    const pem = await exportSPKI(rsaA.publicKey);
    return bearer(signRaw({ alg: 'HS256', typ: 'JWT', kid: rsaA.kid }, claimsA(), pem));
  },
  401,
  INVALID,
  /algorithm is not allowed/,
);
test(
  'algorithm not allowed (RS384 with the real key)',
  expectAnswer,
  () => bearer(signRaw({ alg: 'RS384', typ: 'JWT', kid: rsaA.kid }, claimsA(), rsaA.privateKey)),
  401,
  INVALID,
  /algorithm is not allowed/,
);
test(
  'tampered header',
  expectAnswer,
  () => {
    const [, payload, signature] = tokenFor(rsaA, claimsA()).split('.');
    return bearer(`${b64url({ alg: 'RS256', typ: 'JWT', kid: rsaA.kid, x: 1 })}.${payload}.${signature}`);
  },
  401,
  INVALID,
  /signature is invalid/,
);
test(
  'tampered payload (sub changed)',
  expectAnswer,
  () => {
    const [header, , signature] = tokenFor(rsaA, claimsA()).split('.');
    return bearer(`${header}.${b64url(claimsA({ sub: 'admin' }))}.${signature}`);
  },
  401,
  INVALID,
  /signature is invalid/,
);
test(
  'tampered signature',
  expectAnswer,
  () => {
    const [header, payload, signature] = tokenFor(rsaA, claimsA()).split('.');
    const flipped = Buffer.from(signature!, 'base64url');
    flipped[10] = flipped[10]! ^ 0xff;
    return bearer(`${header}.${payload}.${flipped.toString('base64url')}`);
  },
  401,
  INVALID,
  /signature is invalid/,
);
test('attacker key with a real kid', expectAnswer, () => bearer(tokenFor({ ...attacker, kid: rsaA.kid }, claimsA())), 401, INVALID, /signature is invalid/);
test('kid with path traversal', expectAnswer, () => bearer(tokenFor(attacker, claimsA(), { kid: '../../../../etc/passwd' })), 401, INVALID, /no signing key/);
test('kid of 10 KB', expectAnswer, () => bearer(tokenFor(attacker, claimsA(), { kid: 'k'.repeat(10 * 1024) })), 401, INVALID, /longer than 8192/);
/** A token with this kid, checked to stay under the 8192-byte token limit (so the kid check, not the size one, answers). */
const withKid = (kid: unknown, key = attacker) => {
  const token = tokenFor(key, claimsA(), { kid });
  if (token.length >= 8192) throw new Error(`token of ${token.length} bytes: over the size limit`);
  return bearer(token);
};
test('kid of 1 KB (token under the size limit)', expectAnswer, () => withKid('k'.repeat(1024)), 401, INVALID, /the token kid is malformed/);
test('kid of 257 characters', expectAnswer, () => withKid('k'.repeat(257)), 401, INVALID, /the token kid is malformed/);
test('kid of 256 characters passes the kid check (and matches no key)', expectAnswer, () => withKid('k'.repeat(256)), 401, INVALID, /no signing key/);
test('kid that is not a string', expectAnswer, () => withKid(42, rsaA), 401, INVALID, /the token kid is malformed/);
test(
  'jku pointing at a local server (never fetched)',
  expectNotFollowed,
  (url) => ({ jku: url }),
  () => attacker,
  401,
  INVALID,
  /no signing key/,
);
test(
  'x5u pointing at a local server (never fetched)',
  expectNotFollowed,
  (url) => ({ x5u: url }),
  () => attacker,
  401,
  INVALID,
  /no signing key/,
);
test(
  'embedded jwk (carrying an x5u at a local server) is never used nor followed',
  expectNotFollowed,
  (url) => ({ jwk: { ...attacker.jwk, x5u: url } }),
  () => attacker,
  401,
  INVALID,
  /no signing key/,
);
test(
  'jku, x5u and embedded jwk pointing at a local server (never fetched)',
  expectNotFollowed,
  (url) => ({ kid: attacker.kid, jku: url, x5u: url, jwk: { ...attacker.jwk, x5u: url } }),
  () => attacker,
  401,
  INVALID,
  /no signing key/,
);
test(
  'a validly signed token carrying jku/x5u is verified with the issuer keys only (and they are never fetched)',
  expectNotFollowed,
  (url) => ({ jku: url, x5u: url }),
  () => rsaA,
  200,
  undefined,
);
test('expired beyond the clock tolerance', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ exp: nowS - 31 }))), 401, INVALID, /expired/);
test('expired within the clock tolerance', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ exp: nowS - 20 }))), 200, undefined);
test('nbf in the future', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ nbf: nowS + 120 }))), 401, INVALID, /not valid yet/);
test('no exp', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ exp: undefined }))), 401, INVALID, /no exp/);
test('exp not a number', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ exp: String(nowS + 600) }))), 401, INVALID, /exp claim is not a number/);
test('wrong iss', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ iss: 'https://evil.example' }))), 401, INVALID, /issuer is not trusted/);
test('missing iss', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ iss: undefined }))), 401, INVALID, /no iss/);
test('a key from another issuer', expectAnswer, () => bearer(tokenFor(ecB, claimsA())), 401, INVALID, /no signing key/);
test('wrong aud', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ aud: 'another-service' }))), 401, INVALID, /audience is not accepted/);
test('missing aud', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ aud: undefined }))), 401, INVALID, /no aud/);
test('no sub', expectAnswer, () => bearer(tokenFor(rsaA, claimsA({ sub: undefined }))), 401, INVALID, /no sub/);
test('unknown crit', expectAnswer, () => bearer(tokenFor(rsaA, claimsA(), { crit: ['x-unknown'], 'x-unknown': true })), 401, INVALID, /crit/);
test(
  'a JWE (five segments)',
  expectAnswer,
  async () => {
    const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(claimsA())))
      .setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM' })
      .encrypt(rsaA.publicKey);
    return bearer(jwe);
  },
  401,
  INVALID,
  /JWE/,
);
test('wrong typ for an issuer that requires one', expectAnswer, () => bearer(tokenFor(ecB, claimsA({ iss: ISS_B }), { typ: 'JWT' })), 401, INVALID, /typ/);
test(
  'issuer whose JWKS is unreachable and has no cached key (fail closed)',
  expectAnswer,
  () => bearer(tokenFor(downKey, claimsA({ iss: ISS_DOWN }))),
  401,
  INVALID,
  /signing keys are unavailable/,
);
test(
  'two Authorization headers',
  expectAnswer,
  () => ({ authorization: [`Bearer ${tokenFor(rsaA, claimsA())}`, `Bearer ${tokenFor(ecA, claimsA())}`] }),
  400,
  BAD_REQUEST,
  /more than one Authorization header/,
);
test(
  'two credentials in one Authorization header',
  expectAnswer,
  () => ({ authorization: `Bearer ${tokenFor(rsaA, claimsA())}, Bearer ${tokenFor(ecA, claimsA())}` }),
  400,
  BAD_REQUEST,
  /more than one credential/,
);
test(
  'valid token without the model scope',
  expectAnswer,
  () => bearer(tokenFor(rsaA, claimsA({ scope: 'other:infer' }))),
  403,
  NO_SCOPE,
  /needs the scope 'iris:infer'/,
);
test('a client-forged identity header does not authenticate', expectAnswer, () => ({ 'x-auth-subject': 'admin', 'x-auth-issuer': ISS_A }), 401, MISSING);
test(
  'a client-forged identity header beside a valid token does not make it fail',
  expectAnswer,
  () => ({ ...bearer(tokenFor(rsaA, claimsA())), 'x-auth-subject': 'admin' }),
  200,
  undefined,
);
test('tokens signed by jsonwebtoken (RS256 and ES256) are accepted', async (t) => {
  for (const key of [rsaA, ecA]) {
    const token = jsonwebtoken.sign({ scope: 'iris:infer' }, key.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
      algorithm: key.alg,
      keyid: key.kid,
      issuer: ISS_A,
      audience: AUD,
      subject: 'bob',
      expiresIn: 600,
      // jsonwebtoken stamps iat from the real clock; the gateway's clock is NOW (same second or earlier).
    });
    const answer = await infer(bearer(token));
    t.is(answer.status, 200, `${key.alg}: ${answer.text}`);
  }
});

test('unknown kid flood: no JWKS refetch within the cooldown, and hostile headers were never fetched', async (t) => {
  // Each also names the shared trap in jku/x5u, so the trap check below is about these very tokens.
  const flood = Array.from({ length: 40 }, (_, i) =>
    tokenFor({ ...attacker, kid: `random-${i}-${Math.random()}` }, claimsA(), { jku: trap.url, x5u: trap.url }),
  );
  const answers = await Promise.all(flood.map((token) => infer(bearer(token))));
  t.true(answers.every((a) => a.status === 401 && a.challenge === INVALID));
  await new Promise((resolve) => setTimeout(resolve, 100)); // room for a fetch started in the background
  // Exactly the start-up fetch: the clock is fixed, so the 30 s cooldown never elapses.
  t.is(jwks.hits(), 1);
  t.is(trap.hits(), 0);
});

/**
 * A gateway of its own (so moving its clock cannot disturb the rows above) in front of a recording OIP backend, with an
 * inline key (no JWKS server), a realm of its own, and the `tenant` claim forwarded as `x-tenant`.
 */
async function recordedGateway(
  t: import('ava').ExecutionContext,
  now: () => number,
  issuer: Record<string, unknown> = {},
): Promise<{ url: string; backend: OipRecorder }> {
  const backend = await startOipRecorder();
  t.teardown(() => backend.close());
  const gateway = await startTestGateway(
    {
      ...gatewayConfig({ models: { iris: { versions: { '1': { backend: { kind: 'http', url: backend.url, version: '1' } } } } } }),
      auth: {
        realm: 'iris-e2e',
        identityHeaders: { claims: { tenant: 'x-tenant' } },
        issuers: [{ issuer: ISS_B, audiences: [AUD], algorithms: ['ES256'], jwks: { keys: [ecB.jwk] }, ...issuer }],
      },
    },
    { now },
  );
  t.teardown(() => gateway.stop());
  return { url: gateway.url, backend };
}

test('a cached token is refused once its exp passes: 401 with the exact invalid_token challenge', async (t) => {
  let now = NOW;
  const { url, backend } = await recordedGateway(t, () => now, { clockToleranceSeconds: 0 });
  const token = tokenFor(ecB, claimsA({ iss: ISS_B, exp: nowS + 60 }));
  const sent = bearer(token);
  checkAnswer(t, sent, await infer(sent, url), 200, undefined); // verified and cached until exp
  now = NOW + 60_000 - 1; // the last millisecond before exp: still served
  checkAnswer(t, sent, await infer(sent, url), 200, undefined);
  t.is(backend.seen.filter((r) => r.method === 'POST').length, 2);
  now = NOW + 60_000; // exp itself (no tolerance): the cached identity must not be used
  checkAnswer(t, sent, await infer(sent, url), 401, 'Bearer realm="iris-e2e", error="invalid_token"', /the token has expired/);
  now = NOW + 3_600_000; // and well past it
  checkAnswer(t, sent, await infer(sent, url), 401, 'Bearer realm="iris-e2e", error="invalid_token"', /the token has expired/);
  t.is(backend.seen.filter((r) => r.method === 'POST').length, 2, 'no refused request reached the backend');
});

test('client-forged identity headers beside a valid token are stripped: the backend sees only the verified identity', async (t) => {
  const { url, backend } = await recordedGateway(t, () => NOW);
  const token = tokenFor(ecB, claimsA({ iss: ISS_B, sub: 'alice' })); // no tenant claim
  const sent = {
    ...bearer(token),
    'x-auth-subject': 'admin',
    'x-auth-issuer': 'https://evil.example',
    'x-tenant': 'evil-corp',
    'x-other': 'kept',
    // Look-alikes: CGI/WSGI/PHP backends map `_` and `-` to the same HTTP_X_AUTH_SUBJECT.
    x_auth_subject: 'admin',
    X_Auth_Issuer: 'https://evil.example',
    x_tenant: 'evil-corp',
    x_forwarded_for: '6.6.6.6',
    x_model_version: '2',
    x_shadow: 'true',
  };
  checkAnswer(t, sent, await infer(sent, url), 200, undefined);
  const seen = backend.seen.filter((r) => r.method === 'POST');
  t.is(seen.length, 1);
  const headers = seen[0]!.headers;
  t.is(headers['x-auth-subject'], 'alice');
  t.is(headers['x-auth-issuer'], ISS_B);
  t.is(headers['x-tenant'], undefined, 'a forged copy of a claim header the token does not fill must not pass');
  t.is(headers['x-other'], 'kept', 'other client headers do reach the backend');
  for (const lookAlike of ['x_auth_subject', 'x_auth_issuer', 'x_tenant', 'x_forwarded_for', 'x_model_version', 'x_shadow']) {
    t.is(headers[lookAlike], undefined, `${lookAlike}: stacks reading _ as - would take it for the gateway's own`);
  }
  t.is(headers.authorization, undefined, 'the token is not forwarded (forwardToken: false)');

  const withTenant = { ...bearer(tokenFor(ecB, claimsA({ iss: ISS_B, sub: 'bob', tenant: 'acme' }))), 'x-tenant': 'evil-corp' };
  checkAnswer(t, withTenant, await infer(withTenant, url), 200, undefined);
  t.like(backend.seen.filter((r) => r.method === 'POST')[1]!.headers, { 'x-auth-subject': 'bob', 'x-tenant': 'acme' });
});
