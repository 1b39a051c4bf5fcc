// The console and the audit trail with server.workers: 2 (a real supervisor and its workers): the supervisor's relay
// serves the page and holds the sessions, a console change reaches every worker, the live stream is relayed and ends
// on logout, and each action is recorded once — by the supervisor, in one file. A worker's own admin API answers
// nothing that did not come through the relay.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditEntry } from '../../src/admin/audit.js';
import { ACTOR_HEADER, AUDIT_HEADER, decodeHeader, encodeHeader, RELAY_HEADER, RELAY_SECRET_ENV, type RelayedAudit } from '../../src/admin/relayed.js';
import { gatewayConfig, irisModels, spawnGateway, startTestGateway, writeConfigFile } from '../helpers/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { consoleHeaders, login, openEvents, request } from './http.js';

const TOKEN = 'workers-console-admin-token-0123';
const ISS = 'https://idp.workers.test';
const key = ecKey('workers-k1');
const jwt = (sub: string) => {
  const now = Math.floor(Date.now() / 1000);
  return tokenFor(key, { iss: ISS, aud: 'gw', sub, scope: 'gateway:admin', iat: now, exp: now + 600, jti: randomUUID() });
};
const auth = { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] };

test('two workers: the relay serves the console, a console change reaches both workers, and the audit trail records it once', async (t) => {
  const file = await writeConfigFile({
    ...gatewayConfig({
      server: { workers: 2, drainDelayMs: 0 },
      admin: { token: TOKEN },
      models: { iris: { ...(irisModels().iris as Record<string, unknown>), weights: { '1': 90, '2': 10 } } },
    }),
    auth,
  });
  const gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  const admin = /admin API on (http:\/\/\S+)/.exec(gw.stderr())![1]!;
  const bearer = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

  const page = await request(`${admin}/console`);
  t.is(page.status, 200);
  t.regex(String(page.headers['content-security-policy']), /default-src 'self'/);
  const s = await login(admin, jwt('alice'));
  t.like(s.answer, { status: 200, json: { subject: 'alice', role: 'write', via: 'jwt' } });

  const stream = await openEvents(`${admin}/admin/events`, consoleHeaders(admin, s, null));
  t.teardown(() => stream.close());
  t.is(stream.status, 200);
  t.is(stream.headers['x-model-gateway-worker'], '1/2');
  t.deepEqual((await stream.next((e) => e.event === 'relay', 3000, 0)).data, { worker: 1, workers: 2 });
  await stream.next((e) => e.event === 'snapshot', 3000, 0);

  const forged = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: consoleHeaders(admin, s, null), body: '{"1": 1, "2": 1}' });
  t.is(forged.status, 403);
  const shift = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: consoleHeaders(admin, s), body: '{"1": 50, "2": 50}' });
  t.is(shift.status, 200);
  t.is(shift.headers['x-model-gateway-worker'], 'all/2');
  for (const worker of [1, 2]) {
    const view = await request(`${admin}/admin/models/iris?worker=${worker}`, { headers: bearer });
    t.deepEqual(view.json.weights, { '1': 50, '2': 50 }, `worker ${worker}`);
  }
  await stream.next((e) => e.event === 'snapshot' && (e.data as { models: { weights: Record<string, number> }[] }).models[0]!.weights['2'] === 50, 3000);
  const reset = await request(`${admin}/admin/models/iris/weights`, { method: 'DELETE', headers: bearer });
  t.is(reset.status, 200);

  const entries = ((await request(`${admin}/admin/audit?limit=100`, { headers: bearer })).json.entries as AuditEntry[]).reverse();
  t.deepEqual(
    entries.map((e) => [e.action, e.actor.subject, e.outcome.status]),
    [
      ['session.login', 'alice', 200],
      ['weights.set', 'alice', 403],
      ['weights.set', 'alice', 200],
      ['weights.reset', 'static token', 200],
    ],
    'each action once, not once per worker',
  );
  t.like(entries[2], {
    actor: { kind: 'session', via: 'jwt' },
    before: { weights: { '1': 90, '2': 10 } },
    after: { weights: { '1': 50, '2': 50 } },
    peer: '127.0.0.1',
  });
  const lines = (await readFile(path.join(path.dirname(file), 'model-gateway-audit.jsonl'), 'utf8')).trimEnd().split('\n');
  t.is(lines.length, 4, 'one file, written by the supervisor alone');

  await request(`${admin}/admin/session`, { method: 'DELETE', headers: consoleHeaders(admin, s) });
  t.deepEqual((await stream.next((e) => e.event === 'end', 3000)).data, { reason: 'session-ended' });
});

test("a worker's admin API answers only its relay: the secret, a relayed session's role, and the audit entry handed back", async (t) => {
  const secret = 'relay-secret-for-tests';
  const gw = await startTestGateway(
    {
      ...gatewayConfig({ admin: { token: TOKEN }, models: { iris: { ...(irisModels().iris as Record<string, unknown>), weights: { '1': 90, '2': 10 } } } }),
      auth,
    },
    { worker: true, env: { ...process.env, [RELAY_SECRET_ENV]: secret } },
  );
  t.teardown(() => gw.stop());
  const admin = gw.admin!.url;
  const direct = await request(`${admin}/admin/models`, { headers: { authorization: `Bearer ${TOKEN}` } });
  t.is(direct.status, 403);
  t.regex(String(direct.json.error), /private admin API: call the supervisor's admin address/);
  t.is((await request(`${admin}/admin/models`, { headers: { authorization: `Bearer ${TOKEN}`, [RELAY_HEADER]: 'wrong' } })).status, 403);
  t.is((await request(`${admin}/console`, { headers: { [RELAY_HEADER]: secret } })).status, 401, 'the page is the relay’s to serve');

  const viewer = { subject: 'victor', role: 'read', via: 'jwt' };
  const asViewer = { [RELAY_HEADER]: secret, [ACTOR_HEADER]: encodeHeader(viewer), 'content-type': 'application/json' };
  t.is((await request(`${admin}/admin/models/iris`, { headers: asViewer })).status, 200);
  const refused = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: asViewer, body: '{"1": 1, "2": 1}' });
  t.is(refused.status, 403);
  t.like(decodeHeader<RelayedAudit>(refused.headers[AUDIT_HEADER]), {
    action: 'weights.set',
    actor: { subject: 'victor', kind: 'session', role: 'read' },
    outcome: { status: 403 },
  });

  const operator = {
    [RELAY_HEADER]: secret,
    [ACTOR_HEADER]: encodeHeader({ subject: 'alice', role: 'write', via: 'jwt' }),
    'content-type': 'application/json',
  };
  const done = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: operator, body: '{"1": 50, "2": 50}' });
  t.is(done.status, 200);
  t.like(decodeHeader<RelayedAudit>(done.headers[AUDIT_HEADER]), {
    action: 'weights.set',
    actor: { subject: 'alice', kind: 'session' },
    before: { weights: { '1': 90, '2': 10 } },
    after: { weights: { '1': 50, '2': 50 } },
  });
  const stale = {
    [RELAY_HEADER]: secret,
    [ACTOR_HEADER]: encodeHeader({ subject: 'static token', role: 'write', via: 'static-token', tokenDigest: 'not-the-digest' }),
  };
  t.is((await request(`${admin}/admin/models`, { headers: stale })).status, 401, 'a session opened with a rotated token');

  const verify = await request(`${admin}/admin/session/verify?action=write`, { headers: { [RELAY_HEADER]: secret, authorization: `Bearer ${jwt('alice')}` } });
  t.like(verify, { status: 200, json: { principal: { subject: 'alice', kind: 'jwt' } } });
  const wrong = await request(`${admin}/admin/session/verify?action=read`, {
    headers: { [RELAY_HEADER]: secret, authorization: 'Bearer nope-nope-nope-nope' },
  });
  t.is(wrong.status, 401);
});
