// What a rollout's gates are judged on: per model, time-bucketed counts of each version's backend calls (with a latency
// histogram) and of stable→candidate shadow comparisons. Buckets are plain data so replicas can share and merge them.

import type { Clock } from '../core/clock.js';
import { countOf, latencyIndex, p99LowerBoundOf, p99Of, type LatencyHistogram } from './latency-stats.js';

export { latencyIndex, latencyOfIndex, p99Exceedances } from './latency-stats.js';

/** One version's calls in a bucket; `latency` maps histogram index → count (sparse). */
export interface VersionSample {
  calls: number;
  errors: number;
  latency: LatencyHistogram;
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
  /** Calls timed for the latency gate: real requests only (mirrored copies count for errors, never for latency). */
  timed: number;
  /** Nearest-rank p99 of the timed calls from the histogram (upper bucket bound), null without any. */
  p99Ms: number | null;
  /**
   * The lowest p99 the timed calls are consistent with at P99_CONFIDENCE (a lower confidence bound): an absolute
   * latency limit fails only when even this is over it. 0 with too few samples to bound anything, null without any.
   */
  p99LowerBoundMs: number | null;
}

/** A side as the gates judge it: the summary and the merged latency histogram it came from (not kept in the state). */
export interface SideSamples extends SideSummary {
  latency: LatencyHistogram;
}

/** Merged samples of every replica inside one window, as kept in the rollout's state and shown. */
export interface WindowSummary {
  stable: SideSummary;
  candidate: SideSummary;
  compared: number;
  agreed: number;
  phaseCompared: number;
}

/** The same window with each side's latency histogram: what the gates are judged on. */
export interface WindowSamples extends WindowSummary {
  stable: SideSamples;
  candidate: SideSamples;
}

/** The window without its histograms, as kept in the state. */
export function summaryOf(w: WindowSummary): WindowSummary {
  const side = ({ calls, errors, timed, p99Ms, p99LowerBoundMs }: SideSummary): SideSummary => ({ calls, errors, timed, p99Ms, p99LowerBoundMs });
  return { stable: side(w.stable), candidate: side(w.candidate), compared: w.compared, agreed: w.agreed, phaseCompared: w.phaseCompared };
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
   * A finished real (not mirrored) backend call of `version` (only the rollout's two versions are kept); without `ms`
   * (a call its guard refused: breaker open, concurrency cap) it counts for the error rate but not for latency.
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

  /**
   * A settled mirrored copy sent to `version`: it counts for the error rate, never for latency. A copy is dispatched
   * after its primary and competes with it (and with the next requests) for the same event loop, cores or remote, so
   * its latency says how mirroring behaves, not how the version would serve that request: only real calls are timed.
   */
  recordCopy(model: string, version: string, ok: boolean): void {
    this.recordCall(model, version, ok);
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

function side(s: VersionSample): SideSamples {
  return {
    calls: s.calls,
    errors: s.errors,
    timed: countOf(s.latency),
    p99Ms: p99Of(s.latency),
    p99LowerBoundMs: p99LowerBoundOf(s.latency),
    latency: s.latency,
  };
}

/**
 * Merges replicas' snapshots into one window: buckets of `phaseId` that overlap (now − windowMs, now]. Snapshots of
 * another phase (a replica that has not caught up yet) count for nothing.
 */
export function mergeWindow(snapshots: readonly SignalSnapshot[], phaseId: number, now: number, windowMs: number): WindowSamples {
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
  return { stable: side(stable), candidate: side(candidate), compared, agreed, phaseCompared };
}

function bucketWidth(windowMs: number): number {
  return Math.max(1, Math.floor(windowMs / BUCKETS_PER_WINDOW));
}
