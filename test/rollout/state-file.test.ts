// The rollout state file of a gateway without Redis: atomic writes, what a restart reads back, entries and files it
// refuses (and never overwrites), write failures that do not stop a rollout, and where the file is by default.

import test from 'ava';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { initialState, applyAction, type RolloutState } from '../../src/rollout/machine.js';
import { parseStateFile, readStateFile, STATE_FILE_FORMAT, writeStateFile } from '../../src/rollout/state-file.js';
import { LocalRolloutStore, stateFileOf } from '../../src/rollout/store.js';
import { rolloutSchema } from '../../src/config/schema.js';
import { createLogger, type Logger } from '../../src/telemetry/log.js';
import { tempDir } from '../helpers/traffic.js';

const T0 = 1_700_000_000_000;
const CONFIG = rolloutSchema.parse({ stable: '1', candidate: '2' });

/** A state two promotions in: step 2/4 (25 %), revision 3. */
function promoted(): RolloutState {
  const once = applyAction(CONFIG, initialState(T0), 'promote', T0 + 1000);
  return applyAction(CONFIG, once, 'promote', T0 + 2000);
}

function sink(): { log: Logger; lines: () => Record<string, unknown>[] } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return {
    log: createLogger('info', stream),
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

test('a written state file reads back the same states; nothing else is left in the directory', async (t) => {
  const dir = await tempDir('mg-state-');
  const file = path.join(dir, 'gateway.yaml.rollout-state.json');
  const states = new Map([
    ['iris:0123456789abcdef', promoted()],
    ['mlp:fedcba9876543210', initialState(T0)],
  ]);
  await writeStateFile(file, states, 'replica-a', T0);
  t.deepEqual(await readdir(dir), ['gateway.yaml.rollout-state.json'], 'the temp file was renamed, not left behind');
  const body = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  t.like(body, { format: STATE_FILE_FORMAT, version: 1, writtenAt: new Date(T0).toISOString(), replica: 'replica-a' });
  const read = await readStateFile(file);
  t.true(read.ok);
  if (read.ok) {
    t.deepEqual(read.states, states);
    t.deepEqual(read.dropped, []);
  }
  // A missing file is an empty one.
  t.deepEqual(await readStateFile(path.join(dir, 'none.json')), { ok: true, states: new Map(), dropped: [] });
});

test('files that are not rollout state files are refused with the reason; a bad entry is dropped with its own', (t) => {
  const refused = (text: string) => {
    const read = parseStateFile(text);
    return read.ok ? 'accepted' : read.reason;
  };
  t.regex(refused('{"format": "model-gateway/rollout-st'), /^not valid JSON/);
  t.regex(refused('models:\n  iris: {}\n'), /^not valid JSON/); // a YAML config pointed at by mistake
  t.is(refused('{"rollouts": {}}'), 'not a rollout state file (no "format": "model-gateway/rollout-state")');
  t.is(refused('[]'), 'not a rollout state file (no "format": "model-gateway/rollout-state")');
  t.is(refused(JSON.stringify({ format: STATE_FILE_FORMAT, version: 2, rollouts: {} })), 'written in format version 2, this gateway reads version 1');
  t.is(refused(JSON.stringify({ format: STATE_FILE_FORMAT, version: 1, rollouts: [] })), '"rollouts" is not an object');

  const good = promoted();
  const read = parseStateFile(
    JSON.stringify({
      format: STATE_FILE_FORMAT,
      version: 1,
      rollouts: {
        'iris:a': good,
        'iris:b': { ...good, status: 'winning' },
        'iris:c': { ...good, phase: 'shadow' }, // step 1 in the shadow phase
        'iris:d': { ...good, revision: 0 },
        'iris:e': { ...good, lastDecision: { ...good.lastDecision, decision: 'guess' } },
        'iris:f': 'running',
      },
    }),
  );
  t.true(read.ok);
  if (!read.ok) return;
  t.deepEqual([...read.states.keys()], ['iris:a']);
  t.deepEqual(read.dropped, [
    { key: 'iris:b', reason: 'status, phase or step missing or unknown' },
    { key: 'iris:c', reason: 'step 1 does not fit phase shadow' },
    { key: 'iris:d', reason: 'phaseId or revision missing' },
    { key: 'iris:e', reason: 'lastDecision malformed' },
    { key: 'iris:f', reason: 'not an object' },
  ]);
});

test('the store writes every change through to the file before it answers, and a new store resumes from it', async (t) => {
  const dir = await tempDir('mg-state-');
  const file = path.join(dir, 'state.json');
  const first = await LocalRolloutStore.open('a', { file });
  t.deepEqual(first.durability, { kept: 'file', stateFile: file, stateFileError: null });
  t.true(await first.compareAndSet('iris:k', undefined, initialState(T0)));
  t.true(await first.compareAndSet('iris:k', 1, promoted()));
  t.false(await first.compareAndSet('iris:k', 1, initialState(T0)), 'compare-and-set still compares');
  // On disk already, without close(): a crash now keeps it.
  const again = await LocalRolloutStore.open('b', { file });
  t.deepEqual(await again.read('iris:k'), promoted());
  await first.forget('iris:k');
  t.is(await (await LocalRolloutStore.open('c', { file })).read('iris:k'), undefined);
});

test('retainOnly drops the rollouts a restarted config no longer has, on disk too', async (t) => {
  const file = path.join(await tempDir('mg-state-'), 'state.json');
  const store = await LocalRolloutStore.open('a', { file });
  await store.compareAndSet('iris:old', undefined, promoted());
  await store.compareAndSet('mlp:kept', undefined, initialState(T0));
  await store.retainOnly(['mlp:kept', 'iris:new']);
  t.is(await store.read('iris:old'), undefined);
  const read = await readStateFile(file);
  t.true(read.ok && read.states.has('mlp:kept') && !read.states.has('iris:old'));
});

test('a file that is not a state file is reported, never overwritten, and the store keeps going in memory', async (t) => {
  const file = path.join(await tempDir('mg-state-'), 'gateway.yaml');
  const foreign = 'server:\n  port: 8080\n'; // e.g. rolloutState.path pointed at the config itself
  await writeFile(file, foreign);
  const { log, lines } = sink();
  const store = await LocalRolloutStore.open('a', { file, log });
  t.like(lines()[0], { level: 50, event: 'rollout.state-file', file });
  t.regex(String(lines()[0]!.msg), /is left untouched and rollout state is kept in memory only/);
  t.like(store.durability, { kept: 'memory', stateFile: file });
  t.regex(store.durability.stateFileError!, /^not valid JSON/);
  t.true(await store.compareAndSet('iris:k', undefined, promoted()));
  t.deepEqual(await store.read('iris:k'), promoted(), 'the rollout still runs');
  t.is(await readFile(file, 'utf8'), foreign, 'the file is untouched');
});

test('a bad entry is logged and dropped; the others are resumed', async (t) => {
  const file = path.join(await tempDir('mg-state-'), 'state.json');
  await writeFile(file, JSON.stringify({ format: STATE_FILE_FORMAT, version: 1, rollouts: { 'iris:a': promoted(), 'iris:b': { status: 'nope' } } }));
  const { log, lines } = sink();
  const store = await LocalRolloutStore.open('a', { file, log });
  t.deepEqual(await store.read('iris:a'), promoted());
  t.is(await store.read('iris:b'), undefined);
  t.true(lines().some((l) => l.level === 40 && l.rollout === 'iris:b' && l.reason === 'status, phase or step missing or unknown'));
});

test('a failing write is logged once, the rollout goes on, and the next good write clears it', async (t) => {
  // The directory vanishes under the store (permissions would not stop root, which these tests may run as).
  const dir = path.join(await tempDir('mg-state-'), 'state');
  await mkdir(dir);
  const file = path.join(dir, 'state.json');
  const { log, lines } = sink();
  const store = await LocalRolloutStore.open('a', { file, log });
  await rm(dir, { recursive: true });
  t.true(await store.compareAndSet('iris:k', undefined, initialState(T0)), 'the change is made in memory');
  t.true(await store.compareAndSet('iris:k', 1, promoted()));
  const errors = lines().filter((l) => l.level === 50);
  t.is(errors.length, 1, 'logged once per failing run');
  t.regex(String(errors[0]!.msg), /cannot be written .*a restart now would start them again/);
  t.like(store.durability, { kept: 'file', stateFile: file });
  t.regex(store.durability.stateFileError!, /^cannot be written/);
  await mkdir(dir);
  await store.forget('iris:other'); // nothing to forget: no write
  t.true(await store.compareAndSet('iris:k', 3, { ...promoted(), revision: 4 }));
  t.is(store.durability.stateFileError, null);
  t.is((await LocalRolloutStore.open('b', { file })).durability.stateFileError, null);
  t.is((await (await LocalRolloutStore.open('b', { file })).read('iris:k'))?.revision, 4);
});

test('where the state file is: beside the config file by default, rolloutState.path relative to it, none when off', (t) => {
  t.is(stateFileOf({ persist: true }, '/etc/gw/gateway.yaml'), '/etc/gw/gateway.yaml.rollout-state.json');
  t.is(stateFileOf({ persist: true, path: 'state/rollouts.json' }, '/etc/gw/gateway.yaml'), '/etc/gw/state/rollouts.json');
  t.is(stateFileOf({ persist: true, path: '/var/lib/gw/rollouts.json' }, '/etc/gw/gateway.yaml'), '/var/lib/gw/rollouts.json');
  t.is(stateFileOf({ persist: false, path: '/var/lib/gw/rollouts.json' }, '/etc/gw/gateway.yaml'), undefined);
  // Started without a config file (embedded, tests): nothing unless a path is given (then relative to the cwd).
  t.is(stateFileOf({ persist: true }, undefined), undefined);
  t.is(stateFileOf({ persist: true, path: 'r.json' }, undefined), path.resolve('r.json'));
});
