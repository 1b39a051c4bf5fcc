// The audit trail end to end, against a real gateway process: operator actions from the CLI (static token and JWT)
// and from a console session, each with its subject and the state before and after; refused calls; the structured
// log line; the file next to the config — and all of it still there after the gateway restarts.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { AuditEntry } from '../../src/admin/audit.js';
import { MODELS, runCli, spawnGateway, writeConfigFile, type GatewayProcess } from '../helpers/gateway.js';
import { ecKey, tokenFor } from '../helpers/jwt.js';
import { consoleHeaders, login, request } from './http.js';

const TOKEN = 'audit-e2e-admin-token-0123456789';
const ISS = 'https://idp.audit.test';
const key = ecKey('audit-k1');
const jwt = (sub: string) => {
  const now = Math.floor(Date.now() / 1000);
  return tokenFor(key, { iss: ISS, aud: 'gw', sub, scope: 'gateway:admin', iat: now, exp: now + 600, jti: randomUUID() });
};
const versions = {
  '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
  '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } },
};
const config = (irisWeights: Record<string, number>) => ({
  server: { host: '127.0.0.1', port: 0, grpc: { enabled: false }, drainDelayMs: 0 },
  admin: { host: '127.0.0.1', port: 0, token: TOKEN },
  logging: { level: 'info', accessLog: { enabled: false } },
  reload: { watch: false },
  auth: { issuers: [{ issuer: ISS, audiences: ['gw'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }] },
  models: {
    iris: { versions, weights: irisWeights },
    canary: { versions, rollout: { stable: '1', candidate: '2', evaluationIntervalMs: 600_000 } },
  },
});

const adminUrlOf = (gw: GatewayProcess) => /admin API on (http:\/\/\S+)/.exec(gw.stderr())![1]!;

test('CLI and console actions are audited with their subject and before/after state, refusals too, and survive a restart', async (t) => {
  const file = await writeConfigFile(config({ '1': 90, '2': 10 }));
  const trailFile = path.join(path.dirname(file), 'model-gateway-audit.jsonl');
  let gw = await spawnGateway(file);
  t.teardown(() => gw.stop('SIGKILL'));
  let admin = adminUrlOf(gw);
  const cli = (args: string[], token = TOKEN) => runCli([...args, '--admin-url', admin], { ...process.env, MODEL_GATEWAY_ADMIN_TOKEN: token });
  const trail = async (): Promise<AuditEntry[]> => {
    const res = await request(`${admin}/admin/audit?limit=1000`, { headers: { authorization: `Bearer ${TOKEN}` } });
    t.is(res.status, 200);
    return (res.json.entries as AuditEntry[]).reverse(); // oldest first, as the file
  };

  t.is((await cli(['shift', 'iris', '1=75', '2=25'])).code, 0);
  t.is((await cli(['shift', 'iris', '--reset'], jwt('bob'))).code, 0);
  t.is((await cli(['rollout', 'pause', 'canary'], jwt('carol'))).code, 0);
  await writeFile(file, stringify(config({ '1': 60, '2': 40 })));
  t.is((await cli(['reload'])).code, 0);
  t.is((await cli(['status'], 'not-the-token-00000000000')).code, 1);
  const session = await login(admin, jwt('dana'));
  t.is(session.answer.status, 200);
  const put = await request(`${admin}/admin/models/iris/weights`, { method: 'PUT', headers: consoleHeaders(admin, session), body: '{"1": 20, "2": 80}' });
  t.is(put.status, 200);
  const forged = await request(`${admin}/admin/models/iris/weights`, {
    method: 'PUT',
    headers: consoleHeaders(admin, session, null),
    body: '{"1": 1, "2": 1}',
  });
  t.is(forged.status, 403);

  const expected = [
    {
      action: 'weights.set',
      actor: { subject: 'static token', kind: 'static-token' },
      before: { weights: { '1': 90, '2': 10 } },
      after: { weights: { '1': 75, '2': 25 } },
    },
    {
      action: 'weights.reset',
      actor: { subject: 'bob', kind: 'jwt', role: 'write' },
      before: { weightsSource: 'override' },
      after: { weightsSource: 'config' },
    },
    {
      action: 'rollout.pause',
      actor: { subject: 'carol', kind: 'jwt' },
      target: { model: 'canary' },
      before: { status: 'running' },
      after: { status: 'paused' },
    },
    { action: 'reload', actor: { subject: 'static token' }, target: null, before: { generation: 1 }, after: { generation: 2 } },
    {
      action: 'read (refused)',
      actor: { subject: null, kind: 'unauthenticated' },
      outcome: { status: 401 },
      request: { method: 'GET', path: '/admin/status' },
    },
    { action: 'session.login', actor: { subject: 'dana', kind: 'jwt', role: 'write' }, outcome: { status: 200 } },
    {
      action: 'weights.set',
      actor: { subject: 'dana', kind: 'session', via: 'jwt' },
      before: { weights: { '1': 60, '2': 40 } },
      after: { weights: { '1': 20, '2': 80 } },
    },
    { action: 'weights.set', actor: { subject: 'dana', kind: 'session' }, outcome: { status: 403 } },
  ];
  const check = (entries: AuditEntry[]) => {
    t.is(entries.length, expected.length, entries.map((e) => e.action).join(', '));
    expected.forEach((e, i) => t.like(entries[i], e, `entry ${i}: ${e.action}`));
    for (const e of entries) t.is(e.peer, '127.0.0.1');
  };
  const entries = await trail();
  check(entries);
  const reload = entries[3]!;
  t.not((reload.before as { configHash: string }).configHash, (reload.after as { configHash: string }).configHash, 'the running config hash changed');

  // The file next to the config holds the same entries, one JSON line each; every entry is also a log line.
  const lines = (await readFile(trailFile, 'utf8')).trimEnd().split('\n');
  t.deepEqual(
    lines.map((l) => JSON.parse(l) as AuditEntry),
    entries,
  );
  const logged = gw
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"audit":'))
    .map((l) => (JSON.parse(l) as { audit: AuditEntry }).audit);
  t.deepEqual(logged, entries);

  // A restart: the trail is read back from the file, and goes on from there.
  t.is(await gw.stop('SIGTERM'), 0);
  gw = await spawnGateway(file);
  admin = adminUrlOf(gw);
  check(await trail());
  t.is((await cli(['shift', 'iris', '--reset'])).code, 0);
  const after = await trail();
  t.is(after.length, expected.length + 1);
  t.like(
    after.at(-1),
    { action: 'weights.reset', before: { weightsSource: 'config' }, after: { weightsSource: 'config' } },
    'restarted: the override is gone, and so recorded',
  );
  t.like(await request(`${admin}/admin/models/iris`, { headers: consoleHeaders(admin, session, null) }), { status: 401 }, 'sessions do not survive a restart');
});
