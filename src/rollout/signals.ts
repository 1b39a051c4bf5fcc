// What a rollout's gates are judged on: per model, time-bucketed counts of each version's backend calls (with a latency
// histogram) and of stable→candidate shadow comparisons. Buckets are plain data so replicas can share and merge them.

import type { Clock } from '../core/clock.js';

/** Latency histogram resolution: bucket i holds samples up to HIST_MIN_MS·2^(i/HIST_STEPS_PER_DOUBLING) ms (≈4.4 % wide). */
const HIST_MIN_MS = 0.01;
const HIST_STEPS_PER_DOUBLING = 16;
const HIST_MAX_INDEX = 600; // ≈ 0.01 ms · 2^37.5: far beyond any deadline

export function latencyIndex(ms: number): number {
  if (!(ms > HIST_MIN_MS)) return 0;
  return Math.min(HIST_MAX_INDEX, Math.ceil(Math.log2(ms / HIST_MIN_MS) * HIST_STEPS_PER_DOUBLING));
}

/** The upper bound of histogram bucket `index`, ms. */
export function latencyOfIndex(index: number): number {
  return HIST_MIN_MS * 2 ** (index / HIST_STEPS_PER_DOUBLING);
}

/** One version's calls in a bucket; `latency` maps histogram index → count (sparse). */
export interface VersionSample {
  calls: number;
  errors: number;
  latency: Record<number, number>;
}

export interface SignalBucket {
  /** Epoch ms the bucket starts at. */
  start: number;
  /** The rollout phase the samples belong to (a phase change starts a new bucket). */
  phaseId: number;
  stable: VersionSample;
  candidate: VersionSample;
  /** stable→candidate shadow comparisons, and how many of them agreed on every output. */
  compared: number;
  agreed: number;
}

/** One replica's samples of one model's rollout, as published to the other replicas. */
export interface SignalSnapshot {
  phaseId: number;
  /** Comparisons since the phase began (not bounded by the window): the shadow phase's request count. */
  phaseCompared: number;
  buckets: SignalBucket[];
}

export interface SideSummary {
  calls: number;
  errors: number;
  /** Nearest-rank p99 from the histogram (upper bucket bound), null without calls. */
  p99Ms: number | null;
}

/** Merged samples of every replica inside one window. */
export interface WindowSummary {
  stable: SideSummary;
  candidate: SideSummary;
  compared: number;
  agreed: number;
  phaseCompared: number;
}

interface Watched {
  stable: string;
  candidate: string;
  bucketMs: number;
  windowMs: number;
  phaseId: number;
  phaseCompared: number;
  buckets: SignalBucket[];
}

const emptySample = (): VersionSample => ({ calls: 0, errors: 0, latency: {} });

/** Buckets per window: the window's edge moves in steps of windowMs / BUCKETS_PER_WINDOW. */
const BUCKETS_PER_WINDOW = 20;

export class RolloutSignals {
  readonly #clock: Pick<Clock, 'now'>;
  readonly #models = new Map<string, Watched>();

  constructor(clock: Pick<Clock, 'now'>) {
    this.#clock = clock;
  }

  /**
   * Starts (or keeps) recording for a model's rollout. A new phaseId starts fresh buckets and a fresh phase count;
   * a different stable/candidate pair forgets everything.
   */
  watch(model: string, w: { stable: string; candidate: string; windowMs: number; phaseId: number }): void {
    const current = this.#models.get(model);
    if (current && current.stable === w.stable && current.candidate === w.candidate && current.windowMs === w.windowMs) {
      if (current.phaseId !== w.phaseId) {
        current.phaseId = w.phaseId;
        current.phaseCompared = 0;
      }
      return;
    }
    const bucketMs = Math.max(1, Math.floor(w.windowMs / BUCKETS_PER_WINDOW));
    this.#models.set(model, { ...w, bucketMs, phaseCompared: 0, buckets: [] });
  }

  unwatch(model: string): void {
    this.#models.delete(model);
  }

  watching(model: string): boolean {
    return this.#models.has(model);
  }

  /**
   * A finished backend call of `version` (only the rollout's two versions are kept); without `ms` (a call its guard
   * refused: breaker open, concurrency cap) it counts for the error rate but not for latency.
   */
  recordCall(model: string, version: string, ok: boolean, ms?: number): void {
    const w = this.#models.get(model);
    if (!w || (version !== w.stable && version !== w.candidate)) return;
    const s = this.#bucket(w)[version === w.stable ? 'stable' : 'candidate'];
    s.calls++;
    if (!ok) s.errors++;
    if (ms === undefined) return;
    const i = latencyIndex(ms);
    s.latency[i] = (s.latency[i] ?? 0) + 1;
  }

  /** A settled stable→candidate comparison (other pairs of the model are not the rollout's business). */
  recordComparison(model: string, primary: string, shadow: string, agreed: boolean): void {
    const w = this.#models.get(model);
    if (!w || primary !== w.stable || shadow !== w.candidate) return;
    const b = this.#bucket(w);
    b.compared++;
    if (agreed) b.agreed++;
    w.phaseCompared++;
  }

  /** This replica's samples for the model, within the window (deep copies: safe to serialise or keep). */
  snapshot(model: string): SignalSnapshot | undefined {
    const w = this.#models.get(model);
    if (!w) return undefined;
    this.#prune(w);
    return { phaseId: w.phaseId, phaseCompared: w.phaseCompared, buckets: structuredClone(w.buckets) };
  }

  #bucket(w: Watched): SignalBucket {
    const now = this.#clock.now();
    const start = now - (now % w.bucketMs);
    const last = w.buckets[w.buckets.length - 1];
    if (last && last.start === start && last.phaseId === w.phaseId) return last;
    this.#prune(w);
    const bucket: SignalBucket = { start, phaseId: w.phaseId, stable: emptySample(), candidate: emptySample(), compared: 0, agreed: 0 };
    w.buckets.push(bucket);
    return bucket;
  }

  #prune(w: Watched): void {
    const oldest = this.#clock.now() - w.windowMs - w.bucketMs;
    let drop = 0;
    while (drop < w.buckets.length && (w.buckets[drop]!.start < oldest || w.buckets[drop]!.phaseId !== w.phaseId)) drop++;
    if (drop > 0) w.buckets.splice(0, drop);
  }
}

function addSample(into: VersionSample, s: VersionSample): void {
  into.calls += s.calls;
  into.errors += s.errors;
  for (const [i, n] of Object.entries(s.latency)) into.latency[Number(i)] = (into.latency[Number(i)] ?? 0) + n;
}

function p99(s: VersionSample): number | null {
  const indices = Object.keys(s.latency)
    .map(Number)
    .sort((a, b) => a - b);
  const timed = indices.reduce((n, i) => n + s.latency[i]!, 0);
  if (timed === 0) return null;
  const rank = Math.ceil(0.99 * timed);
  let seen = 0;
  for (const i of indices) {
    seen += s.latency[i]!;
    if (seen >= rank) return Math.round(latencyOfIndex(i) * 1000) / 1000;
  }
  return null;
}

/**
 * Merges replicas' snapshots into one window: buckets of `phaseId` that overlap (now − windowMs, now]. Snapshots of
 * another phase (a replica that has not caught up yet) count for nothing.
 */
export function mergeWindow(snapshots: readonly SignalSnapshot[], phaseId: number, now: number, windowMs: number): WindowSummary {
  const stable = emptySample();
  const candidate = emptySample();
  let compared = 0;
  let agreed = 0;
  let phaseCompared = 0;
  for (const snap of snapshots) {
    if (snap.phaseId !== phaseId) continue;
    phaseCompared += snap.phaseCompared;
    for (const b of snap.buckets) {
      if (b.phaseId !== phaseId || b.start <= now - windowMs - bucketWidth(windowMs) || b.start > now) continue;
      addSample(stable, b.stable);
      addSample(candidate, b.candidate);
      compared += b.compared;
      agreed += b.agreed;
    }
  }
  const side = (s: VersionSample): SideSummary => ({ calls: s.calls, errors: s.errors, p99Ms: p99(s) });
  return { stable: side(stable), candidate: side(candidate), compared, agreed, phaseCompared };
}

function bucketWidth(windowMs: number): number {
  return Math.max(1, Math.floor(windowMs / BUCKETS_PER_WINDOW));
}
