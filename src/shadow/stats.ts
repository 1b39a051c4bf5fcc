// Shadow statistics per (model, primary version, shadow version): counts, agreement per output, latency of each side.

import type { Comparison, OutputComparison } from './compare.js';

/** Latency percentiles are computed over this many most recent samples per side. */
export const LATENCY_WINDOW = 2048;

export interface LatencySummary {
  /** Samples since the statistics started; mean and max are over all of them. */
  count: number;
  meanMs: number | null;
  /** Percentiles over the most recent LATENCY_WINDOW samples. */
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

/** Keeps a running count/mean/max and a ring of recent samples for percentiles. */
export class LatencyRecorder {
  readonly #ring = new Float64Array(LATENCY_WINDOW);
  #count = 0;
  #total = 0;
  #max = 0;

  record(ms: number): void {
    this.#ring[this.#count % LATENCY_WINDOW] = ms;
    this.#count++;
    this.#total += ms;
    if (ms > this.#max) this.#max = ms;
  }

  summary(): LatencySummary {
    if (this.#count === 0) return { count: 0, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, maxMs: null };
    const recent = this.#ring.slice(0, Math.min(this.#count, LATENCY_WINDOW)).sort();
    // Nearest-rank percentile: the smallest sample with at least q of the samples at or below it.
    const at = (q: number) => round(recent[Math.max(0, Math.ceil(q * recent.length) - 1)]!);
    return { count: this.#count, meanMs: round(this.#total / this.#count), p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), maxMs: round(this.#max) };
  }
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function rate(part: number, whole: number): number | null {
  return whole === 0 ? null : round(part / whole, 4);
}

export interface OutputSummary {
  mode: OutputComparison['mode'];
  /** Rows compared (first dimension of the output, summed over requests). */
  rows: number;
  rowsAgreed: number;
  agreementRate: number | null;
  /** Requests whose output could not be compared element-wise (missing, different datatype or shape). */
  mismatches: number;
  /** Regression: the per-request largest absolute difference, averaged and at its worst. */
  maxAbsDiff?: { mean: number | null; max: number | null };
  /** Regression: the per-request relative L2 error, averaged and at its worst. */
  relL2?: { mean: number | null; max: number | null };
}

class OutputStats {
  readonly mode: OutputComparison['mode'];
  rows = 0;
  rowsAgreed = 0;
  mismatches = 0;
  numeric = 0;
  sumMaxAbs = 0;
  maxMaxAbs = 0;
  sumRelL2 = 0;
  maxRelL2 = 0;

  constructor(mode: OutputComparison['mode']) {
    this.mode = mode;
  }

  add(o: OutputComparison): void {
    this.rows += o.rows;
    this.rowsAgreed += o.rowsAgreed;
    if (o.mismatch !== undefined) this.mismatches++;
    if (o.maxAbsDiff !== undefined && o.relL2 !== undefined) {
      this.numeric++;
      this.sumMaxAbs += o.maxAbsDiff;
      this.maxMaxAbs = Math.max(this.maxMaxAbs, o.maxAbsDiff);
      this.sumRelL2 += o.relL2;
      this.maxRelL2 = Math.max(this.maxRelL2, o.relL2);
    }
  }

  summary(): OutputSummary {
    const out: OutputSummary = {
      mode: this.mode,
      rows: this.rows,
      rowsAgreed: this.rowsAgreed,
      agreementRate: rate(this.rowsAgreed, this.rows),
      mismatches: this.mismatches,
    };
    if (this.mode === 'regression') {
      // JSON has no Infinity: a relative error against an all-zero primary is reported as null ("unbounded").
      const finite = (x: number) => (Number.isFinite(x) ? round(x, 6) : null);
      const n = this.numeric;
      out.maxAbsDiff = { mean: n === 0 ? null : finite(this.sumMaxAbs / n), max: n === 0 ? null : finite(this.maxMaxAbs) };
      out.relL2 = { mean: n === 0 ? null : finite(this.sumRelL2 / n), max: n === 0 ? null : finite(this.maxRelL2) };
    }
    return out;
  }
}

export interface PairSummary {
  model: string;
  primaryVersion: string;
  shadowVersion: string;
  /** When these statistics started (gateway start, the pair's first request, or the last reset). */
  since: string;
  /** Requests chosen for mirroring (including dropped ones). */
  mirrored: number;
  /** Mirror copies dropped because the model's shadow concurrency cap was reached. */
  dropped: number;
  /** Requests where both sides answered and were compared. */
  compared: number;
  /** Compared requests on which every compared output agreed on every row. */
  agreed: number;
  agreementRate: number | null;
  errors: { primary: number; shadow: number; shadowTimeouts: number };
  latencyMs: { primary: LatencySummary; shadow: LatencySummary };
  outputs: Record<string, OutputSummary>;
}

/** What the shadow stage reports about one mirrored request: its start (or drop), then how it settled. */
export type MirrorOutcome =
  | { kind: 'started' }
  | { kind: 'dropped' }
  | {
      kind: 'settled';
      primary: { ok: boolean; ms: number };
      shadow: { ok: true; ms: number } | { ok: false; ms: number; timedOut: boolean };
      comparison?: Comparison;
    };

class PairStats {
  readonly since = new Date();
  mirrored = 0;
  dropped = 0;
  compared = 0;
  agreed = 0;
  primaryErrors = 0;
  shadowErrors = 0;
  shadowTimeouts = 0;
  readonly primaryLatency = new LatencyRecorder();
  readonly shadowLatency = new LatencyRecorder();
  readonly outputs = new Map<string, OutputStats>();

  add(outcome: MirrorOutcome): void {
    // Counted when chosen, not when settled, so copies still in flight show up at once.
    if (outcome.kind === 'started') {
      this.mirrored++;
      return;
    }
    if (outcome.kind === 'dropped') {
      this.mirrored++;
      this.dropped++;
      return;
    }
    const { primary, shadow, comparison } = outcome;
    // Failed calls have no meaningful latency for this comparison; only answers are timed.
    if (primary.ok) this.primaryLatency.record(primary.ms);
    else this.primaryErrors++;
    if (shadow.ok) this.shadowLatency.record(shadow.ms);
    else if (shadow.timedOut) this.shadowTimeouts++;
    else this.shadowErrors++;
    if (!comparison) return;
    this.compared++;
    if (comparison.agreed) this.agreed++;
    for (const o of comparison.outputs) {
      let stats = this.outputs.get(o.name);
      if (!stats) this.outputs.set(o.name, (stats = new OutputStats(o.mode)));
      stats.add(o);
    }
  }

  summary(model: string, primaryVersion: string, shadowVersion: string): PairSummary {
    return {
      model,
      primaryVersion,
      shadowVersion,
      since: this.since.toISOString(),
      mirrored: this.mirrored,
      dropped: this.dropped,
      compared: this.compared,
      agreed: this.agreed,
      agreementRate: rate(this.agreed, this.compared),
      errors: { primary: this.primaryErrors, shadow: this.shadowErrors, shadowTimeouts: this.shadowTimeouts },
      latencyMs: { primary: this.primaryLatency.summary(), shadow: this.shadowLatency.summary() },
      outputs: Object.fromEntries([...this.outputs].map(([name, s]) => [name, s.summary()])),
    };
  }
}

/** Receives every outcome as it is recorded (Prometheus counters count from these: resets never reach them). */
export type MirrorOutcomeListener = (model: string, primaryVersion: string, shadowVersion: string, outcome: MirrorOutcome) => void;

/**
 * All pairs' statistics. Outlives config generations: a weight shift does not reset them; a reload drops the pairs of
 * versions it removed, and an operator may reset a model's (listeners see every outcome regardless).
 */
export class ShadowStats {
  readonly #pairs = new Map<string, { model: string; primary: string; shadow: string; stats: PairStats }>();
  readonly #listeners: MirrorOutcomeListener[] = [];

  record(model: string, primaryVersion: string, shadowVersion: string, outcome: MirrorOutcome): void {
    const key = `${model}\0${primaryVersion}\0${shadowVersion}`;
    let entry = this.#pairs.get(key);
    if (!entry) this.#pairs.set(key, (entry = { model, primary: primaryVersion, shadow: shadowVersion, stats: new PairStats() }));
    entry.stats.add(outcome);
    for (const listener of this.#listeners) listener(model, primaryVersion, shadowVersion, outcome);
  }

  /** Adds a listener of every outcome recorded from now on. */
  onRecord(listener: MirrorOutcomeListener): void {
    this.#listeners.push(listener);
  }

  /** The model's pairs, ordered by primary then shadow version. */
  forModel(model: string, order: (a: string, b: string) => number = (a, b) => (a < b ? -1 : a > b ? 1 : 0)): PairSummary[] {
    return [...this.#pairs.values()]
      .filter((e) => e.model === model)
      .sort((a, b) => order(a.primary, b.primary) || order(a.shadow, b.shadow))
      .map((e) => e.stats.summary(e.model, e.primary, e.shadow));
  }

  /** Forgets a model's statistics (after a reset request, or when the model or a version left the config). */
  reset(model: string, keep: (primary: string, shadow: string) => boolean = () => false): void {
    for (const [key, e] of this.#pairs) if (e.model === model && !keep(e.primary, e.shadow)) this.#pairs.delete(key);
  }

  models(): string[] {
    return [...new Set([...this.#pairs.values()].map((e) => e.model))];
  }
}
