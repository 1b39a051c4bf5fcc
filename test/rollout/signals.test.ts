// Rollout signals: which calls and comparisons count, time buckets per phase and window, merging replicas'
// snapshots, and the latency histogram's p99.

import test from 'ava';
import {
  latencyIndex,
  latencyOfIndex,
  mergeWindow,
  p99Exceedances,
  RolloutSignals,
  summaryOf,
  type SignalBucket,
  type SignalSnapshot,
} from '../../src/rollout/signals.js';
import { binomialUpperTail, countSlowerThan } from '../../src/rollout/latency-stats.js';

/** A clock tests set by hand. */
class FakeClock {
  constructor(public t: number) {}
  now(): number {
    return this.t;
  }
}

/** Bucket-aligned start (windowMs 20 s → 1 s buckets). */
const T0 = 1_700_000_000_000;
const WINDOW = 20_000;
const BUCKET = WINDOW / 20;

function setup(phaseId = 1) {
  const clock = new FakeClock(T0);
  const signals = new RolloutSignals(clock);
  signals.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId });
  // The summary as kept in a rollout's state (histograms are checked through snapshots).
  const summary = (id = phaseId) => summaryOf(mergeWindow([signals.snapshot('iris')!], id, clock.t, WINDOW));
  return { clock, signals, summary };
}

const emptySample = () => ({ calls: 0, errors: 0, latency: {} });
const bucket = (start: number, phaseId: number, over: Partial<SignalBucket> = {}): SignalBucket => ({
  start,
  phaseId,
  stable: emptySample(),
  candidate: emptySample(),
  compared: 0,
  agreed: 0,
  ...over,
});

test('only the rollout pair of the watched model is recorded', (t) => {
  const { signals, summary } = setup();
  signals.recordCall('iris', '1', true, 5);
  signals.recordCall('iris', '2', false, 7);
  signals.recordCall('iris', '3', true, 5); // another version of the model
  signals.recordCall('other', '1', true, 5); // another model (not watched)
  signals.recordComparison('iris', '1', '2', true);
  signals.recordComparison('iris', '1', '2', false);
  signals.recordComparison('iris', '1', '3', true); // a shadow of another version
  signals.recordComparison('iris', '2', '1', true); // the reverse pair
  signals.recordComparison('iris', '3', '2', true);
  signals.recordComparison('other', '1', '2', true);
  const s = summary();
  t.deepEqual(s.stable, { calls: 1, errors: 0, timed: 1, p99Ms: Math.round(latencyOfIndex(latencyIndex(5)) * 1000) / 1000, p99LowerBoundMs: 0 });
  t.deepEqual(s.candidate, { calls: 1, errors: 1, timed: 1, p99Ms: Math.round(latencyOfIndex(latencyIndex(7)) * 1000) / 1000, p99LowerBoundMs: 0 });
  t.is(s.compared, 2);
  t.is(s.agreed, 1);
  t.is(s.phaseCompared, 2);
  t.false(signals.watching('other'));
  t.is(signals.snapshot('other'), undefined);
});

test('phaseCompared counts every comparison since the phase began, beyond the window', (t) => {
  const { clock, signals, summary } = setup();
  for (let i = 0; i < 30; i++) {
    signals.recordComparison('iris', '1', '2', true);
    clock.t += 1000; // 30 s: longer than the 20 s window
  }
  const s = summary();
  t.is(s.phaseCompared, 30);
  // Only the buckets overlapping the last 20 s: those starting at T0 + 10 s .. T0 + 29 s.
  t.is(s.compared, 20);
  t.is(signals.snapshot('iris')!.phaseCompared, 30);
});

test('a new phaseId resets the phase count and the buckets; the same phaseId keeps them', (t) => {
  const { clock, signals, summary } = setup();
  signals.recordComparison('iris', '1', '2', true);
  signals.recordCall('iris', '2', true, 3);
  signals.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId: 1 });
  t.is(summary().phaseCompared, 1);
  t.is(summary().candidate.calls, 1);

  // Same time bucket, next phase: nothing of phase 1 is kept or judged.
  signals.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId: 2 });
  const snap = signals.snapshot('iris')!;
  t.deepEqual(snap, { phaseId: 2, phaseCompared: 0, buckets: [] });
  t.deepEqual(summary(2), {
    stable: { calls: 0, errors: 0, timed: 0, p99Ms: null, p99LowerBoundMs: null },
    candidate: { calls: 0, errors: 0, timed: 0, p99Ms: null, p99LowerBoundMs: null },
    compared: 0,
    agreed: 0,
    phaseCompared: 0,
  });

  signals.recordComparison('iris', '1', '2', false);
  signals.recordCall('iris', '1', true, 2);
  clock.t += 10;
  const after = signals.snapshot('iris')!;
  t.is(after.phaseCompared, 1);
  t.is(after.buckets.length, 1);
  t.like(after.buckets[0], { start: T0, phaseId: 2, compared: 1, agreed: 0 });
  t.is(after.buckets[0]!.candidate.calls, 0);
  t.is(after.buckets[0]!.stable.calls, 1);
});

test('buckets of an older phase recorded before a phase change are never merged', (t) => {
  const { clock, signals } = setup();
  signals.recordCall('iris', '2', false, 3);
  const phase1 = signals.snapshot('iris')!;
  clock.t += 2500;
  signals.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId: 2 });
  signals.recordCall('iris', '2', true, 3);
  const phase2 = signals.snapshot('iris')!;
  t.deepEqual(
    phase2.buckets.map((b) => b.phaseId),
    [2],
  );
  // A replica still publishing phase 1 counts for nothing in phase 2, and vice versa.
  const merged = mergeWindow([phase1, phase2], 2, clock.t, WINDOW);
  t.is(merged.candidate.calls, 1);
  t.is(merged.candidate.errors, 0);
  t.is(mergeWindow([phase1, phase2], 1, clock.t, WINDOW).candidate.calls, 1);
  t.is(mergeWindow([phase1, phase2], 1, clock.t, WINDOW).candidate.errors, 1);
  // A snapshot of the right phase carrying a bucket of another phase: that bucket is skipped.
  const mixed: SignalSnapshot = {
    phaseId: 2,
    phaseCompared: 0,
    buckets: [bucket(T0, 1, { compared: 50, agreed: 50 }), bucket(T0 + 1000, 2, { compared: 3, agreed: 2 })],
  };
  t.like(mergeWindow([mixed], 2, T0 + 2000, WINDOW), { compared: 3, agreed: 2 });
});

test('buckets older than the window are dropped', (t) => {
  const { clock, signals, summary } = setup();
  signals.recordCall('iris', '1', true, 4); // bucket [T0, T0 + 1 s)
  clock.t = T0 + 5000;
  signals.recordCall('iris', '1', true, 4); // bucket [T0 + 5 s, ...)
  clock.t = T0 + WINDOW - 1;
  t.is(summary().stable.calls, 2);
  t.is(signals.snapshot('iris')!.buckets.length, 2);
  // The first bucket ends a window before now: out of the window.
  clock.t = T0 + WINDOW + BUCKET;
  t.is(summary().stable.calls, 1);
  clock.t = T0 + WINDOW + 2 * BUCKET;
  t.deepEqual(
    signals.snapshot('iris')!.buckets.map((b) => b.start),
    [T0 + 5000],
  );
  t.is(summary().stable.calls, 1);
  clock.t = T0 + 5000 + WINDOW + 2 * BUCKET;
  t.deepEqual(signals.snapshot('iris')!.buckets, []);
  t.deepEqual(summary().stable, { calls: 0, errors: 0, timed: 0, p99Ms: null, p99LowerBoundMs: null });
  // Recording long after the last call also drops what has aged out.
  signals.recordCall('iris', '1', true, 4);
  t.is(signals.snapshot('iris')!.buckets.length, 1);
});

test('a new bucket starts every windowMs / 20', (t) => {
  const { clock, signals } = setup();
  for (let i = 0; i < 10; i++) {
    signals.recordCall('iris', '2', true, 1);
    clock.t += 250;
  }
  t.deepEqual(
    signals.snapshot('iris')!.buckets.map((b) => [b.start - T0, b.candidate.calls]),
    [
      [0, 4],
      [1000, 4],
      [2000, 2],
    ],
  );
});

test('mergeWindow ignores buckets outside (now − windowMs, now], e.g. from a replica with a skewed clock', (t) => {
  const snap: SignalSnapshot = {
    phaseId: 1,
    phaseCompared: 0,
    buckets: [
      bucket(T0 - WINDOW - BUCKET, 1, { compared: 1 }),
      bucket(T0 - WINDOW - BUCKET + 1, 1, { compared: 10 }),
      bucket(T0, 1, { compared: 100 }),
      bucket(T0 + 1, 1, { compared: 1000 }),
    ],
  };
  t.is(mergeWindow([snap], 1, T0, WINDOW).compared, 110);
});

test('mergeWindow sums several replicas and ignores snapshots of another phase', (t) => {
  const replicas = [0, 1, 2].map(() => {
    const clock = new FakeClock(T0);
    const signals = new RolloutSignals(clock);
    signals.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId: 4 });
    return { clock, signals };
  });
  replicas.forEach(({ clock, signals }, r) => {
    for (let i = 0; i < 10 * (r + 1); i++) {
      signals.recordCall('iris', '1', i % 10 !== 0, 10 + r);
      signals.recordCall('iris', '2', true, 20 + r);
      signals.recordComparison('iris', '1', '2', i % 5 !== 0);
      clock.t += 100;
    }
  });
  const lagging = new RolloutSignals(new FakeClock(T0));
  lagging.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId: 3 });
  for (let i = 0; i < 50; i++) {
    lagging.recordCall('iris', '2', false, 1000);
    lagging.recordComparison('iris', '1', '2', false);
  }
  const snapshots = [...replicas.map(({ signals }) => signals.snapshot('iris')!), lagging.snapshot('iris')!];
  const merged = mergeWindow(snapshots, 4, T0 + 3000, WINDOW);
  t.is(merged.stable.calls, 60);
  t.is(merged.stable.errors, 6);
  t.is(merged.candidate.calls, 60);
  t.is(merged.candidate.errors, 0);
  t.is(merged.compared, 60);
  t.is(merged.agreed, 48);
  t.is(merged.phaseCompared, 60);
  // The histograms are merged: p99 of 60 samples is the 60th (ceil(59.4)), the slowest replica's latency.
  t.is(merged.candidate.p99Ms, Math.round(latencyOfIndex(latencyIndex(22)) * 1000) / 1000);
  t.is(merged.stable.p99Ms, Math.round(latencyOfIndex(latencyIndex(12)) * 1000) / 1000);
  // Merging adds, it does not modify the snapshots.
  t.is(
    snapshots[0]!.buckets.reduce((n, b) => n + b.candidate.calls, 0),
    10,
  );
  t.deepEqual(mergeWindow([], 4, T0, WINDOW), {
    stable: { calls: 0, errors: 0, timed: 0, p99Ms: null, p99LowerBoundMs: null, latency: {} },
    candidate: { calls: 0, errors: 0, timed: 0, p99Ms: null, p99LowerBoundMs: null, latency: {} },
    compared: 0,
    agreed: 0,
    phaseCompared: 0,
  });
  t.like(mergeWindow(snapshots, 3, T0 + 3000, WINDOW), { compared: 50, agreed: 0, phaseCompared: 50 });
});

test('p99 from the histogram is within one bucket above the true nearest-rank p99 (1..1000 ms)', (t) => {
  const { signals, summary } = setup();
  // Shuffled order: the histogram does not care.
  const values = Array.from({ length: 1000 }, (_, i) => i + 1).sort((a, b) => ((a * 7919) % 1000) - ((b * 7919) % 1000));
  for (const ms of values) signals.recordCall('iris', '2', true, ms);
  const truth = 990; // nearest rank: the ceil(0.99 × 1000) = 990th smallest
  const p99 = summary().candidate.p99Ms!;
  t.true(p99 >= truth, `${p99} ≥ ${truth}`);
  t.true(p99 <= truth * 2 ** (1 / 16), `${p99} within one bucket (≈4.4 %) of ${truth}`);
  // The reported value is the upper bound of the bucket holding the 990th sample, rounded to the µs.
  t.is(p99, Math.round(latencyOfIndex(latencyIndex(truth)) * 1000) / 1000);
});

test('p99 of other distributions: one sample, a slow tail of exactly 1 %, and more than 1 %', (t) => {
  const p99Of = (samples: number[]) => {
    const { signals, summary } = setup();
    for (const ms of samples) signals.recordCall('iris', '1', true, ms);
    return summary().stable.p99Ms;
  };
  const bound = (ms: number) => Math.round(latencyOfIndex(latencyIndex(ms)) * 1000) / 1000;
  t.is(p99Of([7]), bound(7));
  // 99 fast, 1 slow: the 99th of 100 is fast.
  t.is(p99Of([...Array<number>(99).fill(2), 500]), bound(2));
  // 98 fast, 2 slow: the 99th is slow.
  t.is(p99Of([...Array<number>(98).fill(2), 500, 500]), bound(500));
  for (const ms of [0.05, 1, 3.3, 42, 250, 1234.5, 60_000]) {
    const p = p99Of([ms]);
    t.true(p! >= ms && p! <= ms * 2 ** (1 / 16), `${ms} → ${p}`);
  }
});

test('a call without ms counts (and errs) but is no latency sample', (t) => {
  const { signals, summary } = setup();
  signals.recordCall('iris', '2', false);
  signals.recordCall('iris', '2', false);
  t.deepEqual(summary().candidate, { calls: 2, errors: 2, timed: 0, p99Ms: null, p99LowerBoundMs: null });
  signals.recordCall('iris', '2', true, 3);
  t.deepEqual(summary().candidate, { calls: 3, errors: 2, timed: 1, p99Ms: Math.round(latencyOfIndex(latencyIndex(3)) * 1000) / 1000, p99LowerBoundMs: 0 });
  const latency = signals.snapshot('iris')!.buckets[0]!.candidate.latency;
  t.deepEqual(latency, { [latencyIndex(3)]: 1 });
  // A failed call with a duration is both an error and a latency sample.
  signals.recordCall('iris', '1', false, 8);
  t.deepEqual(summary().stable, { calls: 1, errors: 1, timed: 1, p99Ms: Math.round(latencyOfIndex(latencyIndex(8)) * 1000) / 1000, p99LowerBoundMs: 0 });
});

test('a mirrored copy counts for the error rate but is never a latency sample, however slow', (t) => {
  const { signals, summary } = setup();
  for (let i = 0; i < 200; i++) signals.recordCopy('iris', '2', i % 50 !== 0);
  signals.recordCall('iris', '2', true, 3);
  const c = summary().candidate;
  t.like(c, { calls: 201, errors: 4, timed: 1, p99Ms: Math.round(latencyOfIndex(latencyIndex(3)) * 1000) / 1000 });
  t.deepEqual(signals.snapshot('iris')!.buckets[0]!.candidate.latency, { [latencyIndex(3)]: 1 });
});

test('p99Exceedances: how many of n samples may lie above the true p99 at 99.9 % confidence (binomial, exact)', (t) => {
  // Checked against the binomial CDF of Bin(n, 0.01): the smallest j with P(X ≤ j) ≥ 0.999.
  t.is(p99Exceedances(1), 1); // P(X ≤ 0) = 0.99: one sample bounds nothing
  t.is(p99Exceedances(100), 5); // P(X ≤ 4) = 0.99657, P(X ≤ 5) = 0.99947
  t.is(p99Exceedances(1000), 21); // mean 10: P(X ≤ 20) = 0.99841, P(X ≤ 21) = 0.99930
  // Large n, where (0.99)^n underflows a double, still works (normal approximation: 1000 + 3.09 × 31.5 ≈ 1097).
  const big = p99Exceedances(100_000);
  t.true(big > 1090 && big < 1105, String(big));
  t.is(p99Exceedances(100, 0.5), 1);
});

test('the p99 lower bound: 5 slow calls of 100 are noise (bound fast), 6 are evidence (bound slow)', (t) => {
  const summarise = (slow: number) => {
    const { signals, summary } = setup();
    for (let i = 0; i < 100; i++) signals.recordCall('iris', '2', true, i < slow ? 500 : 2);
    return summary().candidate;
  };
  const below = (ms: number) => Math.round(latencyOfIndex(latencyIndex(ms) - 1) * 1000) / 1000;
  const bound = (ms: number) => Math.round(latencyOfIndex(latencyIndex(ms)) * 1000) / 1000;
  // 2 slow calls: the nearest-rank p99 (the 99th of 100) is slow; the bound (the 95th) is fast.
  t.like(summarise(2), { timed: 100, p99Ms: bound(500), p99LowerBoundMs: below(2) });
  t.like(summarise(5), { p99Ms: bound(500), p99LowerBoundMs: below(2) });
  t.like(summarise(6), { p99Ms: bound(500), p99LowerBoundMs: below(500) });
  // The bound is the lower edge of its bucket: never above the sample it stands for.
  t.true(summarise(6).p99LowerBoundMs! <= 500);
});

test('latencyIndex is monotonic and latencyOfIndex(latencyIndex(x)) ≥ x, within one bucket', (t) => {
  const xs: number[] = [];
  for (let k = 1; k <= 200_000; k++) xs.push(k / 1000); // 1 µs .. 200 ms at µs resolution
  for (let x = 200; x < 3_600_000; x *= 1.0007) xs.push(x); // up to an hour, geometric
  let previous = -1;
  let bad = 0;
  for (const x of xs) {
    const i = latencyIndex(x);
    const bound = latencyOfIndex(i);
    if (i < previous || bound < x || (x > 0.01 && bound > x * 2 ** (1 / 16) * (1 + 1e-12))) {
      bad++;
      if (bad <= 5) t.log(`x=${x} index=${i} bound=${bound} previous=${previous}`);
    }
    previous = i;
  }
  t.is(bad, 0);
  // Below the histogram's floor everything is bucket 0 (0.01 ms); garbage too.
  for (const x of [0, 0.001, 0.01, -5, Number.NaN]) t.is(latencyIndex(x), 0, String(x));
  t.is(latencyOfIndex(0), 0.01);
  t.is(latencyOfIndex(16), 0.02);
  t.is(latencyIndex(0.02), 16);
  // The top bucket is capped.
  t.is(latencyIndex(Number.POSITIVE_INFINITY), 600);
  t.is(latencyIndex(1e12), 600);
  t.true(latencyOfIndex(600) > 24 * 3_600_000);
});

test('watch() with a different stable/candidate pair forgets the old samples', (t) => {
  const { signals, summary } = setup();
  signals.recordCall('iris', '1', true, 5);
  signals.recordCall('iris', '2', true, 5);
  signals.recordComparison('iris', '1', '2', true);
  signals.watch('iris', { stable: '2', candidate: '3', windowMs: WINDOW, phaseId: 1 });
  t.deepEqual(signals.snapshot('iris'), { phaseId: 1, phaseCompared: 0, buckets: [] });
  // Version 2 is now the stable one, 1 is not watched any more.
  signals.recordCall('iris', '1', true, 5);
  signals.recordCall('iris', '2', true, 5);
  signals.recordComparison('iris', '1', '2', true);
  signals.recordComparison('iris', '2', '3', false);
  t.like(summary(), { stable: { calls: 1 }, candidate: { calls: 0 }, compared: 1, agreed: 0, phaseCompared: 1 });
  // Another window length starts afresh too.
  signals.watch('iris', { stable: '2', candidate: '3', windowMs: 2 * WINDOW, phaseId: 1 });
  t.deepEqual(signals.snapshot('iris'), { phaseId: 1, phaseCompared: 0, buckets: [] });
});

test('unwatch stops recording and forgets the model', (t) => {
  const { signals } = setup();
  signals.recordCall('iris', '1', true, 5);
  signals.unwatch('iris');
  t.false(signals.watching('iris'));
  t.is(signals.snapshot('iris'), undefined);
  t.notThrows(() => {
    signals.recordCall('iris', '1', true, 5);
    signals.recordComparison('iris', '1', '2', true);
  });
  t.is(signals.snapshot('iris'), undefined);
  signals.watch('iris', { stable: '1', candidate: '2', windowMs: WINDOW, phaseId: 1 });
  t.true(signals.watching('iris'));
  t.deepEqual(signals.snapshot('iris'), { phaseId: 1, phaseCompared: 0, buckets: [] });
  signals.unwatch('never-watched');
});

test('a snapshot is a deep copy: neither later calls nor edits to it leak', (t) => {
  const { signals } = setup();
  signals.recordCall('iris', '2', true, 5);
  signals.recordComparison('iris', '1', '2', true);
  const first = signals.snapshot('iris')!;
  const frozen = structuredClone(first);
  signals.recordCall('iris', '2', false, 9);
  signals.recordComparison('iris', '1', '2', false);
  t.deepEqual(first, frozen);
  first.buckets[0]!.candidate.calls = 1000;
  first.buckets[0]!.candidate.latency[1] = 77;
  first.buckets[0]!.compared = 1000;
  first.buckets.push(bucket(T0, 1));
  const second = signals.snapshot('iris')!;
  t.is(second.buckets.length, 1);
  t.like(second.buckets[0], { compared: 2, agreed: 1 });
  t.is(second.buckets[0]!.candidate.calls, 2);
  t.is(second.buckets[0]!.candidate.latency[1], undefined);
  t.is(second.phaseCompared, 2);
  // Snapshots are plain data: they survive JSON (how replicas publish them).
  t.deepEqual(JSON.parse(JSON.stringify(second)), second);
});

test('binomialUpperTail: exact tails, and tiny ones without underflow', (t) => {
  t.true(Math.abs(binomialUpperTail(10, 0.5, 10) - 1 / 1024) < 1e-15);
  t.is(binomialUpperTail(10, 0.5, 0), 1);
  t.is(binomialUpperTail(10, 0.5, 11), 0);
  t.true(Math.abs(binomialUpperTail(10, 0.5, 8) - 56 / 1024) < 1e-12);
  // 2 of 21 slow calls at a 5 % share: quite likely by chance.
  const chance = binomialUpperTail(21, 0.05, 2);
  t.true(Math.abs(chance - (1 - 0.95 ** 21 - 21 * 0.05 * 0.95 ** 20)) < 1e-12, String(chance));
  // Thousands of trials far in the tail: small but not 0, and never NaN.
  const tail = binomialUpperTail(5000, 0.01, 200);
  t.true(tail > 0 && tail < 1e-40, String(tail));
});

test('countSlowerThan counts only the buckets wholly above the limit', (t) => {
  const h = { [latencyIndex(5)]: 3, [latencyIndex(10)]: 2, [latencyIndex(100)]: 1 };
  t.is(countSlowerThan(h, 50), 1);
  t.is(countSlowerThan(h, 6), 3);
  // The limit inside a bucket: that bucket's samples may be below it, so they do not count.
  t.is(countSlowerThan(h, 9.9), 1);
  t.is(countSlowerThan(h, 1000), 0);
});
