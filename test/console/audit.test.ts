// The audit trail alone: one JSON line per entry (and one structured log line), newest entries in memory, rotation
// to one `.1` file at the size cap, entries reloaded after a restart, a cap on refused calls, and a file that cannot
// be written (counted and logged, the trail keeps working).

import test from 'ava';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AuditTrail, auditPath, type AuditEntry } from '../../src/admin/audit.js';
import { createLogger } from '../../src/telemetry/log.js';

const dir = () => mkdtemp(path.join(os.tmpdir(), 'mg-audit-'));

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return {
    log: createLogger('info', stream),
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const entry = (i: number, status = 200): Omit<AuditEntry, 'time' | 'suppressed'> => ({
  actor: { subject: 'alice', kind: 'jwt', role: 'write' },
  peer: '127.0.0.1',
  action: 'weights.set',
  target: { model: 'iris' },
  request: { method: 'PUT', path: '/admin/models/iris/weights' },
  outcome: { status },
  before: { weights: { '1': 100 - i, '2': i } },
  after: { weights: { '1': 99 - i, '2': i + 1 } },
});

const fileLines = async (file: string) =>
  (await readFile(file, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditEntry);

test('each entry is one JSON line in the file, one structured log line, and in memory newest first', async (t) => {
  const file = path.join(await dir(), 'audit.jsonl');
  const { log, lines } = capture();
  const trail = await AuditTrail.open({ path: file, maxFileBytes: 1 << 20, log });
  await trail.record(entry(1));
  await trail.record(entry(2, 409));
  const written = await fileLines(file);
  t.is(written.length, 2);
  t.like(written[0], { actor: { subject: 'alice', kind: 'jwt', role: 'write' }, action: 'weights.set', target: { model: 'iris' }, outcome: { status: 200 } });
  t.deepEqual(written[1]!.before, { weights: { '1': 98, '2': 2 } });
  t.regex(written[0]!.time, /^\d{4}-\d\d-\d\dT/);
  t.deepEqual(
    trail.recent(10).map((e) => e.outcome.status),
    [409, 200],
  );
  const logged = lines().filter((l) => l.audit !== undefined);
  t.is(logged.length, 2);
  t.like(logged[0], { level: 30, audit: { action: 'weights.set', actor: { subject: 'alice' } } });
  t.like(trail.stats(), { path: file, written: 2, failed: 0, rotations: 0 });
  t.is((await stat(file)).mode & 0o777, 0o600, 'the trail is readable by its owner only');
  await trail.close();
});

test('the file rotates to .1 before it would pass maxFileBytes (one old file kept), and a reopened trail shows the newest entries', async (t) => {
  const file = path.join(await dir(), 'audit.jsonl');
  const log = createLogger('silent');
  const trail = await AuditTrail.open({ path: file, maxFileBytes: 4096, log });
  for (let i = 0; i < 60; i++) await trail.record(entry(i));
  await trail.close();
  t.true(trail.stats().rotations >= 2, `rotations: ${trail.stats().rotations}`);
  t.true((await stat(file)).size <= 4096);
  t.true((await stat(`${file}.1`)).size <= 4096);
  const kept = [...(await fileLines(`${file}.1`)), ...(await fileLines(file))];
  t.deepEqual(
    kept.map((e) => (e.before as { weights: Record<string, number> }).weights['2']),
    Array.from({ length: kept.length }, (_, k) => 60 - kept.length + k),
    'the newest entries, in order, across both files',
  );
  // A restart: the newest entries come back from both files, the trail appends after them.
  const reopened = await AuditTrail.open({ path: file, maxFileBytes: 4096, log });
  t.deepEqual(
    reopened.recent(1000).map((e) => (e.before as { weights: Record<string, number> }).weights['2']),
    kept.map((e) => (e.before as { weights: Record<string, number> }).weights['2']).reverse(),
  );
  await reopened.record(entry(99));
  t.is(reopened.recent(1)[0]!.target!.model, 'iris');
  await reopened.close();
  const last = (await fileLines(file)).at(-1)!;
  t.deepEqual(last.before, { weights: { '1': 1, '2': 99 } });
});

test('lines that are not entries (a torn write) are skipped when the trail is reloaded', async (t) => {
  const file = path.join(await dir(), 'audit.jsonl');
  const log = createLogger('silent');
  const first = await AuditTrail.open({ path: file, maxFileBytes: 1 << 20, log });
  await first.record(entry(1));
  await first.close();
  await writeFile(file, `${await readFile(file, 'utf8')}not json\n{"also":"not an entry"}\n{"time":"2026-01-01T00:00:00.000Z","act`, { flag: 'w' });
  const reopened = await AuditTrail.open({ path: file, maxFileBytes: 1 << 20, log });
  t.is(reopened.recent(10).length, 1);
  await reopened.close();
});

test('refused calls beyond refusedPerMinute are counted, not written; the next one written says how many were left out', async (t) => {
  const file = path.join(await dir(), 'audit.jsonl');
  let now = 0;
  const trail = await AuditTrail.open({ path: file, maxFileBytes: 1 << 20, log: createLogger('silent'), refusedPerMinute: 3, now: () => now });
  for (let i = 0; i < 10; i++) await trail.record(entry(i, 401));
  await trail.record(entry(50, 200)); // changes are never capped
  now = 60_000;
  await trail.record(entry(60, 403));
  await trail.close();
  const written = await fileLines(file);
  t.deepEqual(
    written.map((e) => [e.outcome.status, e.suppressed]),
    [
      [401, undefined],
      [401, undefined],
      [401, undefined],
      [200, undefined],
      [403, 7],
    ],
  );
  t.like(trail.stats(), { suppressed: 7, written: 5 });
});

test('a file that cannot be written: the entry is still logged and in memory, the failure counted and logged', async (t) => {
  const file = path.join(await dir(), 'missing', 'audit.jsonl');
  const { log, lines } = capture();
  const trail = await AuditTrail.open({ path: file, maxFileBytes: 1 << 20, log });
  await trail.record(entry(1));
  t.is(trail.recent(5).length, 1);
  t.like(trail.stats(), { written: 0, failed: 1 });
  t.regex(trail.stats().lastError ?? '', /ENOENT/);
  t.true(lines().some((l) => l.msg === 'cannot open the audit trail file: entries go to the log (and memory) only until it can be written'));
  t.true(lines().some((l) => l.audit !== undefined));
  await trail.close();
});

test('without a file the trail lives in memory and the log only', async (t) => {
  const trail = await AuditTrail.open({ path: undefined, maxFileBytes: 1 << 20, log: createLogger('silent'), memory: 3 });
  for (let i = 0; i < 5; i++) await trail.record(entry(i));
  t.deepEqual(
    trail.recent(10).map((e) => (e.before as { weights: Record<string, number> }).weights['2']),
    [4, 3, 2],
  );
  t.like(trail.stats(), { path: null, written: 0 });
});

test('where the trail is written: admin.audit.path against the config directory, else next to the config file, else nowhere', (t) => {
  t.is(auditPath({ enabled: true, maxFileBytes: 1 }, '/etc/gw/gateway.yaml'), '/etc/gw/model-gateway-audit.jsonl');
  t.is(auditPath({ enabled: true, maxFileBytes: 1, path: 'logs/a.jsonl' }, '/etc/gw/gateway.yaml'), '/etc/gw/logs/a.jsonl');
  t.is(auditPath({ enabled: true, maxFileBytes: 1, path: '/var/audit.jsonl' }, '/etc/gw/gateway.yaml'), '/var/audit.jsonl');
  t.is(auditPath({ enabled: true, maxFileBytes: 1 }, undefined), undefined);
});
