// Live per-version traffic figures for the console without Prometheus and without hot-path cost: once a second the
// gateway's own request-duration histogram (prom-client) is read into a bounded ring (15 minutes), and req/s, error
// rate and p50/p99 are derived from the differences between two readings — p50/p99 from bucket deltas, as
// Prometheus's histogram_quantile does.

import type { GatewayMetrics } from '../telemetry/metrics.js';

/** Cumulative counts of one version at one reading: requests, 5xx answers, and the duration histogram's buckets. */
export interface Cumulative {
  count: number;
  errors: number;
  /** Cumulative bucket counts, one per finite bound then +Inf (so the last one equals `count`). */
  buckets: number[];
}

export interface Reading {
  /** Epoch ms. */
  t: number;
  /** `model\0version` → counts. */
  byVersion: Map<string, Cumulative>;
}

export interface VersionLive {
  /** Inference requests answered per second over the window. */
  rps: number;
  /** Share of them answered 5xx (null without requests). */
  errorRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  requests: number;
  /** The window the figures cover, s (a minute, or less just after start). */
  windowS: number;
}

/** One chart point per version: req/s, 5xx/s and p99 over the CHART_STEP_S seconds before it. */
export interface ChartPoint {
  rps: number;
  errors: number;
  p99Ms: number | null;
}

export interface ChartHistory {
  /** Epoch seconds of each point. */
  t: number[];
  /** `model/version` → one value per point (null where the version had no reading yet). */
  series: Record<string, { rps: (number | null)[]; errors: (number | null)[]; p99Ms: (number | null)[] }>;
}

export const LIVE_WINDOW_S = 60;
export const HISTORY_S = 15 * 60;
/** Chart points smooth over this many seconds of readings. */
export const CHART_STEP_S = 5;

const key = (model: string, version: string) => `${model}\u0000${version}`;
export const seriesName = (k: string) => k.replace('\u0000', '/');

/**
 * The q-quantile (0–1) of the observations counted by cumulative `buckets` (one per bound, then +Inf), interpolated
 * linearly inside its bucket; a quantile in the +Inf bucket is the highest finite bound. Null without observations.
 */
export function quantile(bounds: readonly number[], buckets: readonly number[], q: number): number | null {
  const total = buckets[buckets.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < buckets.length; i++) {
    if (buckets[i]! < rank) continue;
    if (i >= bounds.length) return bounds[bounds.length - 1] ?? null;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    const below = i === 0 ? 0 : buckets[i - 1]!;
    const inside = buckets[i]! - below;
    return inside <= 0 ? bounds[i]! : lower + ((bounds[i]! - lower) * (rank - below)) / inside;
  }
  return bounds[bounds.length - 1] ?? null;
}

/** What happened between two readings of one version; a missing older reading (a new version) counts from zero. */
export function difference(older: Cumulative | undefined, newer: Cumulative | undefined): Cumulative | undefined {
  if (!newer) return undefined;
  // A counter that went down was reset (a new registry): count from zero.
  if (!older || newer.count < older.count) return newer;
  return { count: newer.count - older.count, errors: newer.errors - older.errors, buckets: newer.buckets.map((b, i) => b - (older.buckets[i] ?? 0)) };
}

export function liveFigures(bounds: readonly number[], d: Cumulative | undefined, windowS: number): VersionLive {
  const requests = d?.count ?? 0;
  return {
    rps: windowS > 0 ? requests / windowS : 0,
    errorRate: requests > 0 ? d!.errors / requests : null,
    p50Ms: d ? toMs(quantile(bounds, d.buckets, 0.5)) : null,
    p99Ms: d ? toMs(quantile(bounds, d.buckets, 0.99)) : null,
    requests,
    windowS,
  };
}

const toMs = (seconds: number | null) => (seconds === null ? null : Math.round(seconds * 1e6) / 1e3);

export interface LiveStatsOptions {
  intervalMs?: number;
  now?: () => number;
}

export class LiveStats {
  readonly #metrics: GatewayMetrics;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #readings: Reading[] = [];
  #bounds: number[] = [];
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;
  readonly #listeners = new Set<() => void>();

  constructor(metrics: GatewayMetrics, options: LiveStatsOptions = {}) {
    this.#metrics = metrics;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Reads now, then every interval until stop(). */
  start(): void {
    if (this.#timer) return;
    void this.read();
    this.#timer = setInterval(() => void this.read(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Calls `listener` after every reading. */
  onReading(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Takes one reading of the histogram (one at a time). */
  read(): Promise<void> {
    this.#reading ??= this.#read().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  async #read(): Promise<void> {
    const data = await this.#metrics.requestDuration.get();
    const t = this.#now();
    const perBound = new Map<string, Map<number, number>>();
    const errors = new Map<string, number>();
    const bounds = new Set<number>();
    for (const v of data.values) {
      const labels = v.labels as Record<string, string | number | undefined>;
      if (!v.metricName?.endsWith('_bucket') || labels.operation !== 'infer' || !labels.version) continue;
      const k = key(String(labels.model), String(labels.version));
      const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
      if (Number.isFinite(le)) bounds.add(le);
      let m = perBound.get(k);
      if (!m) perBound.set(k, (m = new Map()));
      m.set(le, (m.get(le) ?? 0) + v.value);
      if (le === Infinity && labels.status_class === '5xx') errors.set(k, (errors.get(k) ?? 0) + v.value);
    }
    if (bounds.size > 0) this.#bounds = [...bounds].sort((a, b) => a - b);
    const byVersion = new Map<string, Cumulative>();
    for (const [k, m] of perBound) {
      const buckets = [...this.#bounds.map((b) => m.get(b) ?? 0), m.get(Infinity) ?? 0];
      byVersion.set(k, { count: buckets[buckets.length - 1]!, errors: errors.get(k) ?? 0, buckets });
    }
    this.#readings.push({ t, byVersion });
    const keep = Math.ceil((HISTORY_S * 1000) / this.#intervalMs) + CHART_STEP_S + 1;
    if (this.#readings.length > keep) this.#readings.splice(0, this.#readings.length - keep);
    for (const listener of this.#listeners) listener();
  }

  /** Figures of one version over the last minute (fewer seconds just after start); null before two readings. */
  live(model: string, version: string): VersionLive | null {
    const n = this.#readings.length;
    if (n < 2) return null;
    const newer = this.#readings[n - 1]!;
    const older = this.#readings[Math.max(0, n - 1 - Math.round((LIVE_WINDOW_S * 1000) / this.#intervalMs))]!;
    const k = key(model, version);
    return liveFigures(this.#bounds, difference(older.byVersion.get(k), newer.byVersion.get(k)), (newer.t - older.t) / 1000);
  }

  /** The chart point of the newest reading, per `model/version`; null before enough readings. */
  latestPoint(): { t: number; points: Record<string, ChartPoint> } | null {
    const n = this.#readings.length;
    if (n < 2) return null;
    return { t: Math.round(this.#readings[n - 1]!.t / 1000), points: this.#pointsAt(n - 1) };
  }

  /** Every chart point kept (up to 15 minutes), for a console that just connected. */
  history(): ChartHistory {
    const t: number[] = [];
    const series: ChartHistory['series'] = {};
    for (let i = 1; i < this.#readings.length; i++) {
      const points = this.#pointsAt(i);
      for (const name of Object.keys(points)) series[name] ??= { rps: t.map(() => null), errors: t.map(() => null), p99Ms: t.map(() => null) };
      t.push(Math.round(this.#readings[i]!.t / 1000));
      for (const [name, s] of Object.entries(series)) {
        const p = points[name];
        s.rps.push(p ? p.rps : null);
        s.errors.push(p ? p.errors : null);
        s.p99Ms.push(p ? p.p99Ms : null);
      }
    }
    return { t, series };
  }

  #pointsAt(i: number): Record<string, ChartPoint> {
    const newer = this.#readings[i]!;
    const older = this.#readings[Math.max(0, i - Math.round((CHART_STEP_S * 1000) / this.#intervalMs))]!;
    const seconds = (newer.t - older.t) / 1000;
    const points: Record<string, ChartPoint> = {};
    for (const k of newer.byVersion.keys()) {
      const f = liveFigures(this.#bounds, difference(older.byVersion.get(k), newer.byVersion.get(k)), seconds);
      points[seriesName(k)] = { rps: round(f.rps), errors: round(f.errorRate === null ? 0 : f.errorRate * f.rps), p99Ms: f.p99Ms };
    }
    return points;
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
