// The console's server side over real HTTP against an in-process gateway: the static files and their headers, login
// (static token, read-only and write JWTs, refusals), the session cookie, CSRF and origin checks on every change, the
// unchanged bearer-token API, logout, token rotation — and every change and refusal in the audit trail.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { gatewayConfig, irisModels, ROOT } from '../helpers/gateway.js';
import { parseConfig } from '../../src/config/load.js';
import type { RunningGateway } from '../../src/app/gateway.js';
import type { AuditEntry } from '../../src/admin/audit.js';
import { consoleHeaders, login, request } from '../console/http.js';
import { startTestGateway } from '../helpers/gateway.js';

const TOKEN = 'console-session-admin-token-0123';
const ISS = 'https://idp.console.test';
const key = ecKey('console-k1');
const jwt = (sub: string, scope: string, claims: Record<string, unknown> = {}) => {
  const now = Math.floor(Date.now() / 1000);
  return tokenFor(key, { iss: ISS, aud: 'gw', sub, scope, iat: now, exp: now + 600, jti: randomUUID(), ...claims });
};

const raw = (token: string) => ({
  ...gatewayConfig({
    admin: { token },
    models: { iris: { ...(irisModels().iris as Record<string, unknown>), weights: { '1': 90, '2': 10 }, auth: { allowAnonymous: true } } },
  }),
  auth: {
    issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }],
    admin: { read: { scopes: ['gw:read'] }, write: { scopes: ['gw:write'] } },
  },
});

let gw: RunningGateway;
let admin: string;
test.before(async () => {
  gw = await startTestGateway(raw(TOKEN));
  admin = gw.admin!.url;
});
test.after.always(() => gw?.stop());

const bearer = (token = TOKEN) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });

async function audit(limit = 20): Promise<AuditEntry[]> {
  const res = await request(`${admin}/admin/audit?limit=${limit}`, { headers: bearer() });
  return res.json.entries as AuditEntry[];
}

test.serial('the page and its assets: right types, a strict CSP, no inline code, cached for good under a content digest', async (t) => {
  const page = await request(`${admin}/console`);
  t.is(page.status, 200);
  t.is(page.headers['content-type'], 'text/html; charset=utf-8');
  t.is(page.headers['cache-control'], 'no-cache');
  t.is(page.headers['x-content-type-options'], 'nosniff');
  const csp = page.headers['content-security-policy']!;
  for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"])
    t.true(csp.includes(directive), directive);
  t.false(csp.includes('unsafe'), 'no unsafe-inline or unsafe-eval');
  t.notRegex(page.text, /<script(?![^>]*\bsrc=)[^>]*>/, 'every script is a file');
  t.notRegex(page.text, /<style|\sstyle=|\son[a-z]+=/, 'no inline style or handler');
  t.notRegex(page.text, /https?:\/\//, 'nothing from another host');
  const assets = [...page.text.matchAll(/(?:src|href)="(\/console\/assets\/[0-9a-f]{16}\/[^"]+)"/g)].map((m) => m[1]!);
  t.deepEqual(assets.map((a) => a.slice(a.lastIndexOf('/') + 1)).sort(), ['console.css', 'favicon.svg', 'main.js', 'uPlot.iife.min.js', 'uPlot.min.css']);
  const types: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' };
  for (const asset of assets) {
    const res = await request(`${admin}${asset}`);
    t.is(res.status, 200, asset);
    t.is(res.headers['content-type'], types[asset.slice(asset.lastIndexOf('.') + 1)], asset);
    t.is(res.headers['cache-control'], 'public, max-age=31536000, immutable');
    t.is(res.headers['x-content-type-options'], 'nosniff');
  }
  const version = /\/console\/assets\/([0-9a-f]{16})\//.exec(assets[0]!)![1]!;
  t.is((await request(`${admin}/console/assets/${version}/api.js`)).status, 200, 'the modules main.js imports');
  t.is((await request(`${admin}/console/assets/${version}/vendor/uPlot.LICENSE.txt`)).status, 200, "uPlot's licence is served beside it");
  const stale = await request(`${admin}/console/assets/0000000000000000/main.js`);
  t.is(stale.status, 404);
  t.deepEqual(Object.keys(stale.json), ['error']);
  t.is((await request(`${admin}/console/`)).status, 308);
  t.like(await request(`${admin}/console`, { method: 'POST' }), { status: 405, headers: { allow: 'GET, HEAD' } });
});

test.serial('login with the static token: an HttpOnly SameSite=Strict cookie with an expiry, the CSRF token in the answer only', async (t) => {
  const s = await login(admin, TOKEN);
  t.is(s.answer.status, 200);
  t.like(s.answer.json, { subject: 'static token', role: 'write', via: 'static-token' });
  const cookie = s.answer.headers['set-cookie']![0]!;
  t.regex(cookie, /^mg_console_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=28800$/);
  t.false(cookie.includes(TOKEN) || cookie.includes(s.csrf), 'the cookie carries neither the token nor the CSRF token');
  const again = await request(`${admin}/admin/session`, { headers: consoleHeaders(admin, s, null) });
  t.like(again.json, { subject: 'static token', role: 'write', csrfToken: s.csrf });
  t.is((await request(`${admin}/admin/models`, { headers: consoleHeaders(admin, s, null) })).status, 200, 'the cookie authorises reads');
});

test.serial('a change with a session: refused without the CSRF token, with a wrong one or from another origin; done with it — all audited', async (t) => {
  const s = await login(admin, TOKEN);
  const put = (headers: Record<string, string>) => request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers, body: '{"1": 50, "2": 50}' });
  const refusals: [string, Record<string, string>][] = [
    ['no CSRF token', consoleHeaders(admin, s, null)],
    ['a wrong CSRF token', consoleHeaders(admin, s, `${s.csrf.slice(0, -2)}xx`)],
    ['another origin', { ...consoleHeaders(admin, s), origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' }],
    ['a cross-site page', { ...consoleHeaders(admin, s), 'sec-fetch-site': 'cross-site' }],
  ];
  for (const [what, headers] of refusals) {
    const res = await put(headers);
    t.is(res.status, 403, what);
    t.regex(String(res.json.error), /CSRF token|own origin/, what);
  }
  t.deepEqual(gw.controller.model('iris').weights, { '1': 90, '2': 10 }, 'nothing changed');
  const done = await put(consoleHeaders(admin, s));
  t.is(done.status, 200);
  t.deepEqual(gw.controller.model('iris').weights, { '1': 50, '2': 50 });
  const entries = await audit(5);
  t.like(entries[0], {
    actor: { subject: 'static token', kind: 'session', role: 'write', via: 'static-token' },
    action: 'weights.set',
    target: { model: 'iris' },
    request: { method: 'PUT', path: '/admin/models/iris/weights' },
    outcome: { status: 200 },
    before: { weights: { '1': 90, '2': 10 }, weightsSource: 'config' },
    after: { weights: { '1': 50, '2': 50 }, weightsSource: 'override' },
  });
  t.is(entries[0]!.peer, '127.0.0.1');
  t.deepEqual(
    entries.slice(1).map((e) => [e.action, e.actor.kind, e.outcome.status]),
    [4, 3, 2, 1].map(() => ['weights.set', 'session', 403]),
  );
  t.regex(entries[1]!.outcome.error!, /own origin/);
  t.regex(entries[4]!.outcome.error!, /CSRF token in the x-csrf-token header/);
  // Back, through the API the CLI uses: a bearer token needs no CSRF token and is audited as itself.
  const reset = await request(`${admin}/admin/models/iris/weights`, { method: 'DELETE', headers: bearer() });
  t.is(reset.status, 200);
  t.like((await audit(1))[0], {
    actor: { subject: 'static token', kind: 'static-token', role: 'write' },
    action: 'weights.reset',
    before: { weightsSource: 'override' },
    after: { weights: { '1': 90, '2': 10 }, weightsSource: 'config' },
  });
});

test.serial('login refusals are audited: a wrong token (401), another origin (403), a JWT without the admin scopes (403)', async (t) => {
  const wrong = await login(admin, 'not-the-admin-token-000000');
  t.is(wrong.answer.status, 401);
  t.is(wrong.answer.headers['set-cookie'], undefined);
  t.like((await audit(1))[0], { action: 'session.login', actor: { subject: null, kind: 'unauthenticated' }, outcome: { status: 401 } });
  const cross = await request(`${admin}/admin/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    body: JSON.stringify({ token: TOKEN }),
  });
  t.is(cross.status, 403);
  t.is(cross.headers['set-cookie'], undefined);
  t.like((await audit(1))[0], { action: 'session.login', outcome: { status: 403 } });
  const noScope = await login(admin, jwt('mallory', 'iris:infer'));
  t.is(noScope.answer.status, 403);
  t.like((await audit(1))[0], { action: 'session.login', actor: { subject: 'mallory', kind: 'jwt' }, outcome: { status: 403 } });
  t.like(await login(admin, ''), { answer: { status: 400 } });
});

test.serial('a JWT with only the read scope opens a read-only session: it looks but cannot act (403, audited with its subject)', async (t) => {
  const s = await login(admin, jwt('viewer', 'gw:read'));
  t.like(s.answer.json, { subject: 'viewer', role: 'read', via: 'jwt' });
  t.is((await request(`${admin}/admin/models/iris/shadow`, { headers: consoleHeaders(admin, s, null) })).status, 200);
  const shift = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: consoleHeaders(admin, s), body: '{"1": 1, "2": 1}' });
  t.is(shift.status, 403);
  t.regex(String(shift.json.error), /viewer's console session is read-only/);
  t.like((await audit(1))[0], { action: 'weights.set', actor: { subject: 'viewer', kind: 'session', role: 'read', via: 'jwt' }, outcome: { status: 403 } });
  const operator = await login(admin, jwt('alice', 'gw:read gw:write'));
  t.like(operator.answer.json, { subject: 'alice', role: 'write' });
  const cookieMaxAge = Number(/Max-Age=(\d+)/.exec(operator.answer.headers['set-cookie']![0]!)![1]);
  t.true(cookieMaxAge <= 600 && cookieMaxAge > 590, `a session never outlives its JWT (Max-Age ${cookieMaxAge})`);
  const reset = await request(`${admin}/admin/models/iris/shadow`, { method: 'DELETE', headers: consoleHeaders(admin, operator) });
  t.is(reset.status, 200);
  t.like((await audit(1))[0], { action: 'shadow.reset', actor: { subject: 'alice', kind: 'session', role: 'write', via: 'jwt' }, outcome: { status: 200 } });
});

test.serial('refused bearer calls are audited too, with what they tried', async (t) => {
  const res = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: bearer('wrong-token-0000000000000'), body: '{"1":1}' });
  t.is(res.status, 401);
  t.like((await audit(1))[0], {
    action: 'weights.set',
    target: { model: 'iris' },
    actor: { kind: 'unauthenticated' },
    outcome: { status: 401 },
    before: null,
    after: null,
  });
  const read = await request(`${admin}/admin/models`, { headers: { authorization: `Bearer ${jwt('nobody', 'other')}` } });
  t.is(read.status, 403);
  t.like((await audit(1))[0], {
    action: 'read (refused)',
    actor: { subject: 'nobody', kind: 'jwt' },
    outcome: { status: 403 },
    request: { method: 'GET', path: '/admin/models' },
  });
  // An authorised change that fails is recorded with its error and the unchanged state.
  const bad = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: bearer(), body: '{"3": 1}' });
  t.is(bad.status, 400);
  t.like((await audit(1))[0], {
    action: 'weights.set',
    outcome: { status: 400 },
    before: { weights: { '1': 90, '2': 10 } },
    after: { weights: { '1': 90, '2': 10 } },
  });
  t.regex((await audit(1))[0]!.outcome.error!, /version '3' is not one of 1, 2/);
});

test.serial('GET /admin/audit: newest first, limit checked', async (t) => {
  const two = await request(`${admin}/admin/audit?limit=2`, { headers: bearer() });
  t.is(two.status, 200);
  const entries = two.json.entries as AuditEntry[];
  t.is(entries.length, 2);
  t.true(entries[0]!.time >= entries[1]!.time);
  t.like(two.json.trail, { path: null, failed: 0 });
  for (const limit of ['0', '1001', 'abc', '1.5', '']) {
    const res = await request(`${admin}/admin/audit?limit=${limit}`, { headers: bearer() });
    t.is(res.status, 400, limit);
    t.regex(String(res.json.error), /limit must be an integer from 1 to 1000/);
  }
});

test.serial('logout ends the session (cookie cleared, stream and calls refused); a reload that rotates the token ends static-token sessions', async (t) => {
  const s = await login(admin, TOKEN);
  const viaJwt = await login(admin, jwt('alice', 'gw:read gw:write'));
  const noCsrf = await request(`${admin}/admin/session`, { method: 'DELETE', headers: consoleHeaders(admin, s, null) });
  t.is(noCsrf.status, 403);
  const out = await request(`${admin}/admin/session`, { method: 'DELETE', headers: consoleHeaders(admin, s) });
  t.like(out, { status: 200, json: { loggedOut: true } });
  t.regex(out.headers['set-cookie']![0]!, /^mg_console_session=; .*Max-Age=0/);
  t.like((await audit(1))[0], { action: 'session.logout', actor: { subject: 'static token', kind: 'session' }, outcome: { status: 200 } });
  t.is((await request(`${admin}/admin/models`, { headers: consoleHeaders(admin, s, null) })).status, 401);
  t.like((await audit(1))[0], { action: 'read (refused)', actor: { kind: 'session', subject: null }, outcome: { status: 401 } });

  const again = await login(admin, TOKEN);
  await gw.controller.applyConfig(await parseConfig(raw('console-session-rotated-token-99'), { baseDir: ROOT, source: 'test' }));
  const after = await request(`${admin}/admin/models`, { headers: consoleHeaders(admin, again, null) });
  t.is(after.status, 401);
  t.regex(String(after.json.error), /admin token was changed/);
  t.is(
    (await request(`${admin}/admin/models`, { headers: consoleHeaders(admin, viaJwt, null) })).status,
    200,
    'a JWT session does not depend on the static token',
  );
  await gw.controller.applyConfig(await parseConfig(raw(TOKEN), { baseDir: ROOT, source: 'test' }));
});
