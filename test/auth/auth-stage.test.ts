// The auth stage in isolation: identity headers are gateway-owned (client copies never reach ctx.upstreamHeaders), dry run, anonymous models, admin scopes.

import test from 'ava';
import { Writable } from 'node:stream';
import { jwtAdminAuthorizer } from '../../src/admin/auth.js';
import { configSchema } from '../../src/config/schema.js';
import { AuthStats } from '../../src/auth/stats.js';
import { createContext } from '../../src/pipeline/context.js';
import type { Context, Operation, Reply } from '../../src/pipeline/stage.js';
import { authStage } from '../../src/stages/auth.js';
import { authStageOptions } from '../../src/stages/chain.js';
import { createLogger } from '../../src/telemetry/log.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';

const key = ecKey('k1');
const NOW = 1_700_000_000_000;
const ISS = 'https://idp.example';
const token = (over: Record<string, unknown> = {}) =>
  tokenFor(key, { iss: ISS, aud: 'gw', sub: 'alice', tenant: 'acme', scope: 'iris:infer', exp: NOW / 1000 + 600, ...over });

function config(auth: Record<string, unknown> | undefined, modelAuth?: Record<string, unknown>) {
  return configSchema.parse({
    models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: '/m.onnx' } } }, ...(modelAuth ? { auth: modelAuth } : {}) } },
    ...(auth ? { auth: { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }], ...auth } } : {}),
  });
}

function ctxFor(headers: Record<string, string>, operation: Operation = 'infer'): Context {
  return createContext({
    requestId: 'req-1',
    operation,
    modelName: 'iris',
    pathVersion: undefined,
    headers: { ...headers },
    rawHeaders: Object.entries(headers).flat(),
    clientAddress: '127.0.0.1',
  });
}

const OK: Reply = { status: 200, body: {} };

function logSink() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', stream), lines };
}

const forged = { 'x-auth-subject': 'root', 'x-auth-issuer': ISS, 'x-tenant': 'evil', 'x-claims': 'e30' };

const forwarding = test.macro({
  async exec(t, auth: Record<string, unknown> | undefined, headers: Record<string, string>, expected: Record<string, string>, owned: string[]) {
    const cfg = config(auth);
    const stage = authStage(authStageOptions(cfg, { log: createLogger('silent'), now: () => NOW }));
    const ctx = ctxFor({ ...forged, ...headers });
    await stage.handle(ctx, async () => OK);
    t.deepEqual(ctx.upstreamHeaders, expected);
    for (const name of Object.keys(forged)) t.is(ctx.headers[name], owned.includes(name) ? undefined : forged[name as keyof typeof forged], name);
  },
  title: (title = '') => `identity forwarding: ${title}`,
});

const identityHeaders = { identityHeaders: { claims: { tenant: 'x-tenant' }, payload: 'x-claims' } };
test('auth off: client copies of the default identity headers are stripped, nothing is forwarded', forwarding, undefined, {}, {}, [
  'x-auth-subject',
  'x-auth-issuer',
]);
test(
  'valid token: gateway-owned headers only, from verified claims',
  forwarding,
  identityHeaders,
  { authorization: `Bearer ${token()}` },
  {
    'x-auth-subject': 'alice',
    'x-auth-issuer': ISS,
    'x-tenant': 'acme',
    'x-claims': Buffer.from(JSON.stringify({ iss: ISS, aud: 'gw', sub: 'alice', tenant: 'acme', scope: 'iris:infer', exp: NOW / 1000 + 600 })).toString(
      'base64url',
    ),
  },
  ['x-auth-subject', 'x-auth-issuer', 'x-tenant', 'x-claims'],
);
test(
  'non-ASCII claim values are percent-encoded, never raw in a header',
  forwarding,
  { identityHeaders: { claims: { tenant: 'x-tenant' } } },
  { authorization: `Bearer ${token({ sub: 'zoë\r\nx: y', tenant: 'ünï' })}` },
  {
    'x-auth-subject': encodeURIComponent('zoë\r\nx: y'),
    'x-auth-issuer': ISS,
    'x-tenant': encodeURIComponent('ünï'),
  },
  ['x-auth-subject', 'x-auth-issuer', 'x-tenant'],
);

test('the client Authorization header is always removed; forwardToken passes the verified token as a gateway-owned header', async (t) => {
  for (const forwardToken of [false, true]) {
    const cfg = config({ forwardToken });
    const bearer = `Bearer ${token()}`;
    const ctx = ctxFor({ authorization: bearer });
    await authStage(authStageOptions(cfg, { log: createLogger('silent'), now: () => NOW })).handle(ctx, async () => OK);
    t.is(ctx.headers.authorization, undefined);
    t.is(ctx.upstreamHeaders.authorization, forwardToken ? bearer : undefined);
  }
});

test('dry run: denials are logged (throttled) and counted, the request goes on without an identity', async (t) => {
  const { log, lines } = logSink();
  const cfg = config({ enforce: false }, { infer: { scopes: ['iris:admin'] } });
  const authStats = new AuthStats();
  const stage = authStage(authStageOptions(cfg, { log, now: () => NOW, authStats }));
  let reached = 0;
  for (let i = 0; i < 5; i++) {
    const ctx = ctxFor({ 'x-auth-subject': 'root' });
    await stage.handle(ctx, async () => (reached++, OK));
    t.is(ctx.identity, undefined);
    t.deepEqual(ctx.upstreamHeaders, {});
  }
  const scoped = ctxFor({ authorization: `Bearer ${token()}` });
  await stage.handle(scoped, async () => (reached++, OK));
  t.is(scoped.identity?.subject, 'alice'); // verified, only unauthorised: the identity still goes upstream
  t.is(reached, 6);
  t.deepEqual(authStats.dryRunDenied, { GW_ERR_UNAUTHENTICATED: 5, GW_ERR_INSUFFICIENT_SCOPE: 1 });
  const warnings = lines.filter((l) => l.msg === 'auth dry run: this request would have been denied');
  t.is(warnings.length, 2); // one per (model, code) per second
  t.like(warnings[0], { dryRun: true, code: 'GW_ERR_UNAUTHENTICATED', status: 401 });
});

test('per model: anonymous access, metadata vs infer requirements, claim values', async (t) => {
  const run = async (modelAuth: Record<string, unknown>, headers: Record<string, string>, operation: Operation = 'infer') => {
    const cfg = config({}, modelAuth);
    const ctx = ctxFor(headers, operation);
    try {
      await authStage(authStageOptions(cfg, { log: createLogger('silent'), now: () => NOW })).handle(ctx, async () => OK);
      return 200;
    } catch (err) {
      return (err as { status: number }).status;
    }
  };
  t.is(await run({ allowAnonymous: true }, {}), 200);
  t.is(await run({ allowAnonymous: true }, { authorization: 'Bearer a.b.c' }), 401); // a presented token must be valid
  t.is(await run({ infer: { scopes: ['iris:infer'] }, metadata: { scopes: ['iris:read'] } }, { authorization: `Bearer ${token()}` }), 200);
  t.is(await run({ infer: { scopes: ['iris:infer'] }, metadata: { scopes: ['iris:read'] } }, { authorization: `Bearer ${token()}` }, 'model-metadata'), 403);
  t.is(await run({ infer: { claims: { tenant: ['acme', 'beta'] } } }, { authorization: `Bearer ${token()}` }), 200);
  t.is(await run({ infer: { claims: { tenant: ['beta'] } } }, { authorization: `Bearer ${token()}` }), 403);
  t.is(await run({ infer: { claims: { groups: ['ml'] } } }, { authorization: `Bearer ${token({ groups: ['ops', 'ml'] })}` }), 200);
  t.is(await run({ enforce: false, infer: { scopes: ['nope'] } }, {}), 200); // per-model dry run
});

test('admin authoriser: read and write scopes from auth.admin, 401 without a token, 403 without the scope', async (t) => {
  const cfg = config({ admin: { read: { scopes: ['gw:read'] }, write: { scopes: ['gw:write'] } } });
  const authorize = jwtAdminAuthorizer(() => cfg, { log: createLogger('silent'), now: () => NOW });
  const headers = (scope: string) => ({ authorization: `Bearer ${token({ scope })}` });
  await t.notThrowsAsync(authorize({ method: 'GET', action: 'read', headers: headers('gw:read') }));
  await t.notThrowsAsync(authorize({ method: 'PUT', action: 'write', headers: headers('gw:write') }));
  await t.throwsAsync(authorize({ method: 'PUT', action: 'write', headers: headers('gw:read') }), { message: /admin write access needs the scope 'gw:write'/ });
  const missing = await t.throwsAsync(authorize({ method: 'GET', action: 'read', headers: {} }));
  t.like(missing, { status: 401 });
  await t.throwsAsync(
    jwtAdminAuthorizer(() => config(undefined), { log: createLogger('silent') })({ method: 'GET', action: 'read', headers: headers('gw:read') }),
    {
      message: /no JWT auth/,
    },
  );
});
