// Console sessions and their CSRF tokens, alone: random ids, expiry (the TTL or a JWT's own exp, whichever is first),
// the bound on sessions, the cookie's attributes, constant-time CSRF checks, and the cross-origin test.

import test from 'ava';
import { cookieValue, crossOrigin, csrfMatches, SESSION_COOKIE, sessionCookie, SessionStore } from '../../src/admin/sessions.js';

const alice = { subject: 'alice', kind: 'jwt' as const };
const staticToken = { subject: 'static token', kind: 'static-token' as const };

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('a session id and its CSRF token are 256 random bits each, never equal, and only the id finds the session', (t) => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 10 });
  const ids = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const { id, session } = store.create(alice, 'write');
    t.regex(id, /^[A-Za-z0-9_-]{43}$/); // 32 bytes, base64url
    t.regex(session.csrfToken, /^[A-Za-z0-9_-]{43}$/);
    t.not(id, session.csrfToken);
    ids.add(id);
    t.is(store.get(id), session);
    t.is(store.get(session.csrfToken), undefined);
  }
  t.is(ids.size, 50);
  t.is(store.get(undefined), undefined);
  t.is(store.get(''), undefined);
  t.is(store.get('x'.repeat(1000)), undefined);
});

test('a session ends at its TTL, or at its JWT expiry when that comes first; expired sessions are dropped', (t) => {
  const c = clock();
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 10, now: c.now });
  const plain = store.create(alice, 'read');
  const shortJwt = store.create({ ...alice, expiresAt: c.now() + 5_000 }, 'write');
  t.is(plain.session.expiresAt, c.now() + 60_000);
  t.is(shortJwt.session.expiresAt, c.now() + 5_000);
  t.is(store.maxAgeSeconds(shortJwt.session), 5);
  c.advance(4_999);
  t.truthy(store.get(shortJwt.id));
  c.advance(1);
  t.is(store.get(shortJwt.id), undefined);
  t.truthy(store.get(plain.id));
  t.is(store.size, 1);
  c.advance(55_000);
  t.is(store.get(plain.id), undefined);
  t.is(store.size, 0);
});

test('the store holds maxSessions at most: a new login ends the oldest; logout ends one', (t) => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 3 });
  const made = [1, 2, 3, 4].map(() => store.create({ ...staticToken, tokenDigest: 't' }, 'write'));
  t.is(store.size, 3);
  t.is(store.get(made[0]!.id), undefined);
  for (const m of made.slice(1)) t.truthy(store.get(m.id));
  t.true(store.delete(made[2]!.id));
  t.false(store.delete(made[2]!.id));
  t.is(store.get(made[2]!.id), undefined);
  t.is(store.size, 2);
});

test('the session cookie is HttpOnly, SameSite=Strict, Path=/ with a Max-Age, and Secure only when asked', (t) => {
  t.is(sessionCookie('abc', 3600, false), `${SESSION_COOKIE}=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600`);
  t.is(sessionCookie('abc', 3600, true), `${SESSION_COOKIE}=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600; Secure`);
  t.is(sessionCookie('', 0, false), `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
});

test('the cookie is read from a Cookie header among others', (t) => {
  t.is(cookieValue({ cookie: `a=1; ${SESSION_COOKIE}=xyz; b=2` }, SESSION_COOKIE), 'xyz');
  t.is(cookieValue({ cookie: `${SESSION_COOKIE}x=1` }, SESSION_COOKIE), undefined);
  t.is(cookieValue({}, SESSION_COOKIE), undefined);
});

test("CSRF: only the session's own token passes", (t) => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 10 });
  const a = store.create(alice, 'write').session;
  const b = store.create(alice, 'write').session;
  t.true(csrfMatches(a, a.csrfToken));
  t.false(csrfMatches(a, b.csrfToken));
  t.false(csrfMatches(a, undefined));
  t.false(csrfMatches(a, ''));
  t.false(csrfMatches(a, [a.csrfToken, a.csrfToken]));
  t.false(csrfMatches(a, a.csrfToken.slice(0, -1)));
});

const origins = test.macro({
  exec(t, headers: Record<string, string>, cross: boolean) {
    t.is(crossOrigin({ host: '127.0.0.1:8081', ...headers }) !== undefined, cross);
  },
  title: (given = '') => `cross-origin check: ${given}`,
});
test('no Origin and no Sec-Fetch-Site (not a browser)', origins, {}, false);
test('same origin by Sec-Fetch-Site', origins, { 'sec-fetch-site': 'same-origin', origin: 'http://127.0.0.1:8081' }, false);
test('same origin by Origin alone', origins, { origin: 'http://127.0.0.1:8081' }, false);
test('another port of the same host is another origin', origins, { origin: 'http://127.0.0.1:8080' }, true);
test('a same-site page (SameSite does not stop it)', origins, { 'sec-fetch-site': 'same-site' }, true);
test('a cross-site page', origins, { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }, true);
test('an opaque origin', origins, { origin: 'null' }, true);

test('a navigation (Sec-Fetch-Site: none) may read, never change', (t) => {
  t.is(crossOrigin({ host: '127.0.0.1:8081', 'sec-fetch-site': 'none' }, true), undefined);
  t.regex(crossOrigin({ host: '127.0.0.1:8081', 'sec-fetch-site': 'none' }) ?? '', /Sec-Fetch-Site is none/);
});
