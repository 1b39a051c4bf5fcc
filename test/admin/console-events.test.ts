// The console's live stream (GET /admin/events) against in-process gateways: what it sends and when — the snapshot
// every second and at once after a change, figures equal to the admin API's — its bounds, and how it ends (logout,
// session expiry, shutdown); the last disagreements with their inputs; a gateway with metrics off says so.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gatewayConfig, irisModels, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { IRIS_ROWS, irisDisagreementRows } from '../helpers/iris.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { consoleHeaders, login, openEvents, request, type SseEvent } from '../console/http.js';

const TOKEN = 'console-events-admin-token-0123';
const bearer = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

interface Snap {
  gateway: { metrics: boolean; generation: number; configHash: string };
  models: {
    name: string;
    weights: Record<string, number>;
    versions: { version: string; live: { rps: number; requests: number } | null; guard: { breaker: { state: string } } | null }[];
    shadowPairs: { compared: number; agreementRate: number | null }[];
  }[];
  audit: { action: string }[];
}
const snap = (e: SseEvent) => e.data as Snap;
const isSnapshot = (e: SseEvent) => e.event === 'snapshot';

async function shadowedGateway(t: import('ava').ExecutionContext, extra: Record<string, unknown> = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-console-events-'));
  const gw = await startTestGateway({
    ...gatewayConfig({
      admin: { token: TOKEN, console: { maxStreams: 2 } },
      models: {
        iris: {
          ...(irisModels().iris as Record<string, unknown>),
          weights: { '1': 90, '2': 10 },
          shadow: { targets: [{ version: '2', percent: 100 }], compare: { probabilities: { mode: 'classification' } } },
        },
      },
    }),
    disagreementLog: { path: path.join(dir, 'disagreements.jsonl'), includeInputs: true },
    ...extra,
  });
  t.teardown(() => gw.stop());
  return gw;
}

test('a session stream: retry, hello, history and a snapshot at once; a snapshot every second; a change pushed at once; logout ends it', async (t) => {
  const gw = await shadowedGateway(t);
  const admin = gw.admin!.url;
  const s = await login(admin, TOKEN);
  const stream = await openEvents(`${admin}/admin/events`, consoleHeaders(admin, s, null));
  t.teardown(() => stream.close());
  t.is(stream.status, 200);
  t.is(stream.headers['content-type'], 'text/event-stream; charset=utf-8');
  t.is(stream.headers['cache-control'], 'no-store');
  const first = await stream.next(isSnapshot, 5000, 0);
  t.regex(stream.raw(), /^retry: 2000\n\n/);
  t.deepEqual(
    stream.events.slice(0, 3).map((e) => e.event),
    ['hello', 'history', 'snapshot'],
  );
  t.like(stream.events[0]!.data, { actor: { subject: 'static token', kind: 'session', role: 'write' }, session: { subject: 'static token', role: 'write' } });
  t.like(stream.events[1]!.data, { metrics: true });
  t.like(snap(first), { gateway: { metrics: true, generation: 1 }, models: [{ name: 'iris', weights: { '1': 90, '2': 10 } }] });
  t.regex(snap(first).gateway.configHash, /^[0-9a-f]{64}$/);

  // Traffic shows in the live figures within a couple of seconds, and the shadow figures are the admin API's own.
  for (let i = 0; i < 40; i++) t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([IRIS_ROWS[i % 150]!]))).status, 200);
  await gw.controller.shadow.idle();
  const busy = await stream.next((e) => isSnapshot(e) && (snap(e).models[0]!.versions[0]!.live?.requests ?? 0) > 0, 4000);
  t.true(snap(busy).models[0]!.versions[0]!.live!.rps > 0);
  const api = await request(`${admin}/admin/models/iris/shadow`, { headers: bearer });
  const settled = await stream.next((e) => isSnapshot(e) && e.data !== busy.data, 3000);
  t.deepEqual(snap(settled).models[0]!.shadowPairs, api.json.pairs, 'the same pairs and figures as GET /admin/models/{m}/shadow');

  // Snapshots keep coming about once a second.
  const before = stream.events.filter(isSnapshot).length;
  await new Promise((r) => setTimeout(r, 2500));
  const ticks = stream.events.filter(isSnapshot).length - before;
  t.true(ticks >= 2 && ticks <= 4, `${ticks} snapshots in 2.5 s`);

  // A change reaches the page well before the next tick.
  const since = stream.events.length;
  const changedAt = Date.now();
  t.is((await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: bearer, body: '{"1": 50, "2": 50}' })).status, 200);
  const pushed = await stream.next((e) => isSnapshot(e) && snap(e).models[0]!.weights['2'] === 50, 2000, since);
  t.true(Date.now() - changedAt < 900, `pushed after ${Date.now() - changedAt} ms`);
  t.is(snap(pushed).audit[0]!.action, 'weights.set', 'with the audit entry it made');

  // Logout ends the stream with a reason.
  await request(`${admin}/admin/session`, { method: 'DELETE', headers: consoleHeaders(admin, s) });
  const end = await stream.next((e) => e.event === 'end', 3000);
  t.deepEqual(end.data, { reason: 'session-ended' });
  await stream.ended;
  const refused = await request(`${admin}/admin/events`, { headers: consoleHeaders(admin, s, null) });
  t.is(refused.status, 401);
});

test('streams are bounded (503 with Retry-After beyond admin.console.maxStreams); a bearer token streams too; shutdown ends them with a reason', async (t) => {
  const gw = await shadowedGateway(t);
  const admin = gw.admin!.url;
  const a = await openEvents(`${admin}/admin/events`, bearer);
  const b = await openEvents(`${admin}/admin/events`, bearer);
  t.teardown(() => (a.close(), b.close()));
  t.is(a.status, 200);
  t.like((await a.next((e) => e.event === 'hello', 2000, 0)).data, { actor: { subject: 'static token', kind: 'static-token' }, session: null });
  const c = await request(`${admin}/admin/events`, { headers: bearer });
  t.is(c.status, 503);
  t.is(c.headers['retry-after'], '5');
  t.regex(String(c.json.error), /2 live streams are open already \(admin.console.maxStreams\)/);
  t.is((await request(`${admin}/admin/events`)).status, 401, 'no credentials, no stream');
  b.close();
  await b.ended;
  await new Promise((r) => setTimeout(r, 50));
  const d = await openEvents(`${admin}/admin/events`, bearer);
  t.is(d.status, 200, 'a closed stream frees its place');
  await gw.stop();
  for (const s of [a, d]) {
    t.deepEqual((await s.next((e) => e.event === 'end', 3000, 0)).data, { reason: 'shutdown' });
    await s.ended;
  }
});

test("a session opened with a JWT ends with the JWT: its stream ends when the token's exp passes", async (t) => {
  const key = ecKey('events-k1');
  const gw = await startTestGateway({
    ...gatewayConfig({ admin: { token: TOKEN } }),
    auth: { issuers: [{ issuer: 'https://idp', audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
  });
  t.teardown(() => gw.stop());
  const admin = gw.admin!.url;
  const now = Math.floor(Date.now() / 1000);
  const s = await login(
    admin,
    tokenFor(key, { iss: 'https://idp', aud: 'gw', sub: 'brief', scope: 'gateway:admin', iat: now, exp: now + 3, jti: randomUUID() }),
  );
  t.is(s.answer.status, 200);
  const stream = await openEvents(`${admin}/admin/events`, consoleHeaders(admin, s, null));
  t.teardown(() => stream.close());
  t.is(stream.status, 200);
  t.deepEqual((await stream.next((e) => e.event === 'end', 6000, 0)).data, { reason: 'session-ended' });
  t.is((await request(`${admin}/admin/session`, { headers: consoleHeaders(admin, s, null) })).status, 401);
});

test('the last disagreements of a model, newest first, with the inputs when the log writes them', async (t) => {
  const gw = await shadowedGateway(t);
  const rows = irisDisagreementRows();
  for (const row of rows) {
    const r = await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest([IRIS_ROWS[row]!]), { 'x-request-id': `row-${row}` });
    t.is(r.status, 200);
  }
  await gw.controller.shadow.idle();
  await gw.controller.shadow.disagreementLog!.flush();
  const res = await request(`${gw.admin!.url}/admin/models/iris/shadow/disagreements?limit=3`, { headers: bearer });
  t.is(res.status, 200);
  const entries = res.json.entries as { requestId: string; inputs: { data: number[] }[]; primary: unknown[]; shadow: unknown[] }[];
  t.deepEqual(
    entries.map((e) => e.requestId),
    rows
      .slice(-3)
      .reverse()
      .map((r) => `row-${r}`),
  );
  t.deepEqual(entries[0]!.inputs[0]!.data, [...Float32Array.from(IRIS_ROWS[rows.at(-1)!]!)]);
  t.is(entries[0]!.primary.length, 2);
  t.is((await request(`${gw.admin!.url}/admin/models/nope/shadow/disagreements`, { headers: bearer })).status, 404);
  t.is((await request(`${gw.admin!.url}/admin/models/iris/shadow/disagreements?limit=51`, { headers: bearer })).status, 400);
});

test('with metrics off the stream says so (no figures, not zeros); with the console off there is no page and no session', async (t) => {
  const gw = await startTestGateway({ ...gatewayConfig({ admin: { token: TOKEN } }), telemetry: { metrics: { enabled: false } } });
  t.teardown(() => gw.stop());
  const stream = await openEvents(`${gw.admin!.url}/admin/events`, bearer);
  t.teardown(() => stream.close());
  const first = await stream.next(isSnapshot, 3000, 0);
  t.like(stream.events[1]!.data, { metrics: false, t: [] });
  t.is(snap(first).gateway.metrics, false);
  t.is(snap(first).models[0]!.versions[0]!.live, null);
  t.like(snap(first).models[0]!.versions[0]!.guard, { breaker: { state: 'closed' }, limits: { inFlight: 0 } }, 'breakers do not need metrics');

  const off = await startTestGateway(gatewayConfig({ admin: { token: TOKEN, console: { enabled: false } } }));
  t.teardown(() => off.stop());
  t.is((await request(`${off.admin!.url}/console`, { headers: bearer })).status, 404);
  t.is((await login(off.admin!.url, TOKEN)).answer.status, 401, 'no login: the body is not a credential there');
  t.is((await request(`${off.admin!.url}/admin/events`, { headers: bearer })).status, 404);
  t.is((await request(`${off.admin!.url}/admin/audit`, { headers: bearer })).status, 200, 'the audit trail does not need the console');
});
