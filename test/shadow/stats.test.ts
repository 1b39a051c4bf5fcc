// Shadow statistics: counts, agreement per request and per output, errors, timeouts, drops and latency percentiles.

import test from 'ava';
import { LATENCY_WINDOW, LatencyRecorder, ShadowStats } from '../../src/shadow/stats.js';

const settled = (over: { primaryOk?: boolean; shadowOk?: boolean; timedOut?: boolean; agreed?: boolean; rows?: [number, number] } = {}) => ({
  kind: 'settled' as const,
  primary: { ok: over.primaryOk ?? true, ms: 2 },
  shadow: over.shadowOk === false ? { ok: false as const, ms: 5, timedOut: over.timedOut ?? false } : { ok: true as const, ms: 3 },
  ...(over.primaryOk === false || over.shadowOk === false
    ? {}
    : {
        comparison: {
          agreed: over.agreed ?? true,
          outputs: [
            { name: 'label', mode: 'classification' as const, rows: over.rows?.[0] ?? 1, rowsAgreed: over.rows?.[1] ?? 1 },
            { name: 'p', mode: 'regression' as const, rows: 1, rowsAgreed: over.agreed === false ? 0 : 1, maxAbsDiff: 0.2, relL2: 0.1 },
          ],
        },
      }),
});

test('a pair counts mirrored, compared, agreed, errors, timeouts and drops separately', (t) => {
  const stats = new ShadowStats();
  for (let i = 0; i < 5; i++) stats.record('iris', '1', '2', { kind: 'started' });
  stats.record('iris', '1', '2', settled());
  stats.record('iris', '1', '2', settled({ agreed: false, rows: [3, 1] }));
  stats.record('iris', '1', '2', settled({ shadowOk: false }));
  stats.record('iris', '1', '2', settled({ shadowOk: false, timedOut: true }));
  stats.record('iris', '1', '2', settled({ primaryOk: false }));
  stats.record('iris', '1', '2', { kind: 'dropped' });
  const [pair] = stats.forModel('iris');
  t.like(pair, {
    model: 'iris',
    primaryVersion: '1',
    shadowVersion: '2',
    mirrored: 6,
    dropped: 1,
    compared: 2,
    agreed: 1,
    agreementRate: 0.5,
    errors: { primary: 1, shadow: 1, shadowTimeouts: 1 },
  });
  t.deepEqual(pair!.outputs.label, { mode: 'classification', rows: 4, rowsAgreed: 2, agreementRate: 0.5, mismatches: 0 });
  t.deepEqual(pair!.outputs.p, {
    mode: 'regression',
    rows: 2,
    rowsAgreed: 1,
    agreementRate: 0.5,
    mismatches: 0,
    maxAbsDiff: { mean: 0.2, max: 0.2 },
    relL2: { mean: 0.1, max: 0.1 },
  });
  // Only answers are timed: 4 primary answers, 3 shadow answers.
  t.is(pair!.latencyMs.primary.count, 4);
  t.is(pair!.latencyMs.shadow.count, 3);
});

test('pairs are kept per (model, primary, shadow), ordered, and can be reset selectively', (t) => {
  const stats = new ShadowStats();
  stats.record('iris', '2', '3', settled());
  stats.record('iris', '1', '3', settled());
  stats.record('other', '1', '2', settled());
  t.deepEqual(
    stats.forModel('iris').map((p) => `${p.primaryVersion}→${p.shadowVersion}`),
    ['1→3', '2→3'],
  );
  stats.reset('iris', (primary) => primary === '2');
  t.deepEqual(
    stats.forModel('iris').map((p) => `${p.primaryVersion}→${p.shadowVersion}`),
    ['2→3'],
  );
  t.is(stats.forModel('other').length, 1);
  stats.reset('iris');
  t.deepEqual(stats.forModel('iris'), []);
});

test('no comparisons yet: rates are null, not NaN', (t) => {
  const stats = new ShadowStats();
  stats.record('iris', '1', '2', { kind: 'dropped' });
  const [pair] = stats.forModel('iris');
  t.is(pair!.agreementRate, null);
  t.deepEqual(pair!.latencyMs.primary, { count: 0, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, maxMs: null });
  t.notThrows(() => JSON.stringify(pair));
});

test('latency percentiles are nearest-rank over the recent window; mean and max over everything', (t) => {
  const rec = new LatencyRecorder();
  for (let i = 1; i <= 100; i++) rec.record(i);
  t.deepEqual(rec.summary(), { count: 100, meanMs: 50.5, p50Ms: 50, p90Ms: 90, p99Ms: 99, maxMs: 100 });
  // Push the early samples out of the window: percentiles follow, the max of all time stays.
  for (let i = 0; i < LATENCY_WINDOW; i++) rec.record(1);
  const s = rec.summary();
  t.is(s.p99Ms, 1);
  t.is(s.maxMs, 100);
  t.is(s.count, 100 + LATENCY_WINDOW);
});

test('an unbounded relative error is reported as null (JSON has no Infinity)', (t) => {
  const stats = new ShadowStats();
  stats.record('m', '1', '2', {
    kind: 'settled',
    primary: { ok: true, ms: 1 },
    shadow: { ok: true, ms: 1 },
    comparison: { agreed: false, outputs: [{ name: 'y', mode: 'regression', rows: 1, rowsAgreed: 0, maxAbsDiff: 1, relL2: Infinity }] },
  });
  t.deepEqual(stats.forModel('m')[0]!.outputs.y!.relL2, { mean: null, max: null });
});
