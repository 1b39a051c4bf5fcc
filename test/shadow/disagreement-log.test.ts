// The disagreement log: one JSON line per sampled disagreement, outputs truncated, sampling, and rotation at the size cap.

import test from 'ava';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Tensor } from '../../src/protocol/oip.js';
import { DisagreementLog, type Disagreement } from '../../src/shadow/disagreement-log.js';
import { createLogger } from '../../src/telemetry/log.js';

const log = createLogger('silent');
const dir = () => mkdtemp(path.join(os.tmpdir(), 'mg-disagree-'));

function entry(i: number, elements = 3): Disagreement {
  const p: Tensor = { name: 'p', datatype: 'FP32', shape: [1, elements], data: Float32Array.from({ length: elements }, (_, k) => k / 4) };
  const label = (v: number): Tensor => ({ name: 'label', datatype: 'INT64', shape: [1], data: BigInt64Array.from([BigInt(v)]) });
  return {
    requestId: `req-${i}`,
    model: 'iris',
    primaryVersion: '1',
    shadowVersion: '2',
    comparison: [
      { name: 'label', mode: 'classification', rows: 1, rowsAgreed: 0 },
      { name: 'p', mode: 'regression', rows: 1, rowsAgreed: 1, maxAbsDiff: 0, relL2: 0 },
    ],
    primary: [label(1), p],
    shadow: [label(2), { ...p, data: Float32Array.from([NaN, 0, 0]).slice(0, elements) }],
  };
}

test('each disagreement is one JSON line with the request id, the disagreeing outputs and both answers', async (t) => {
  const file = path.join(await dir(), 'd.jsonl');
  const d = new DisagreementLog(file, { path: file, sampleRate: 1, maxFileBytes: 1 << 20, maxElementsPerOutput: 2, includeInputs: false }, log);
  d.record(entry(1));
  d.record(entry(2));
  await d.close();
  const lines = (await readFile(file, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 2);
  t.like(lines[0], { requestId: 'req-1', model: 'iris', primaryVersion: '1', shadowVersion: '2' });
  // Only the output that disagreed is listed in the comparison.
  t.deepEqual(lines[0]!.comparison, [{ name: 'label', mode: 'classification', rows: 1, rowsAgreed: 0 }]);
  t.deepEqual(lines[0]!.primary, [
    { name: 'label', datatype: 'INT64', shape: [1], data: [1] },
    { name: 'p', datatype: 'FP32', shape: [1, 3], data: [0, 0.25], truncated: true },
  ]);
  // NaN is written as an explicit null.
  t.deepEqual((lines[0]!.shadow as { data: unknown[] }[])[1]!.data, [null, 0]);
  t.deepEqual(d.stats(), { path: file, written: 2, sampledOut: 0, dropped: 0, rotations: 0 });
});

test('sampleRate keeps the given fraction (injected rng)', async (t) => {
  const file = path.join(await dir(), 'd.jsonl');
  let i = 0;
  const d = new DisagreementLog(
    file,
    { path: file, sampleRate: 0.25, maxFileBytes: 1 << 20, maxElementsPerOutput: 8, includeInputs: false },
    log,
    () => (i++ % 4) / 4,
  );
  for (let k = 0; k < 40; k++) d.record(entry(k));
  await d.close();
  t.like(d.stats(), { written: 10, sampledOut: 30 });
  t.is((await readFile(file, 'utf8')).trimEnd().split('\n').length, 10);
});

test('the file rotates to .1 before it would pass maxFileBytes, keeping one old file', async (t) => {
  const file = path.join(await dir(), 'd.jsonl');
  const d = new DisagreementLog(file, { path: file, sampleRate: 1, maxFileBytes: 2048, maxElementsPerOutput: 8, includeInputs: false }, log);
  for (let k = 0; k < 60; k++) {
    d.record(entry(k));
    await d.flush(); // one line per write, so every rotation boundary is exercised
  }
  await d.close();
  const stats = d.stats();
  t.is(stats.written, 60);
  t.true(stats.rotations >= 2, `rotations ${stats.rotations}`);
  t.true((await stat(file)).size <= 2048);
  t.true((await stat(`${file}.1`)).size <= 2048);
  const last = (await readFile(file, 'utf8')).trimEnd().split('\n').at(-1)!;
  t.is((JSON.parse(last) as { requestId: string }).requestId, 'req-59');
});

test('a file that cannot be written drops and counts the lines; the log keeps working for the caller', async (t) => {
  const file = path.join(await dir(), 'missing-dir', 'd.jsonl');
  const d = new DisagreementLog(file, { path: file, sampleRate: 1, maxFileBytes: 1 << 20, maxElementsPerOutput: 8, includeInputs: false }, log);
  t.notThrows(() => d.record(entry(1)));
  await d.flush();
  t.like(d.stats(), { written: 0, dropped: 1 });
  await d.close();
});

test('includeInputs writes the request inputs beside both answers (cut like them); without it they are never written', async (t) => {
  const input: Tensor = { name: 'input', datatype: 'FP32', shape: [1, 4], data: Float32Array.from([5.1, 3.5, 1.4, 0.2]) };
  for (const includeInputs of [true, false]) {
    const file = path.join(await dir(), 'd.jsonl');
    const d = new DisagreementLog(file, { path: file, sampleRate: 1, maxFileBytes: 1 << 20, maxElementsPerOutput: 3, includeInputs }, log);
    d.record({ ...entry(1), inputs: [input] });
    await d.close();
    const line = JSON.parse(await readFile(file, 'utf8')) as { inputs?: unknown[] };
    if (includeInputs)
      t.deepEqual(line.inputs, [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [...Float32Array.from([5.1, 3.5, 1.4])], truncated: true }]);
    else t.false('inputs' in line);
  }
});
