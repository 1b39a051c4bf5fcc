// The open-loop (or closed-loop) Node load driver: latency from each request's intended send time, no coordinated omission.

import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { percentile } from './stats.js';

export interface LoadSpec {
  url: string;
  path: string;
  /** Request body file (read once), unless `body` is given. */
  bodyFile?: string;
  body?: string | Buffer;
  headers: Record<string, string>;
  mode: 'max' | 'rate';
  /** max: requests kept in flight. */
  concurrency?: number;
  /** rate: requests per second, scheduled open-loop (a slow answer never delays the next send). */
  rate?: number;
  durationMs: number;
  connections: number;
  /**
   * rate: run the same schedule this long before the measured window and drop those samples, so the window's
   * requests do not pay for opening connections.
   */
  warmupMs?: number;
}

export interface LoadResult {
  sent: number;
  ok: number;
  errors: number;
  elapsedS: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** How late the driver sent its requests against the schedule (rate mode), p99 and max, µs. */
  sendLagP99Us: number;
  sendLagMaxUs: number;
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const body = spec.body !== undefined ? Buffer.from(spec.body) : readFileSync(spec.bodyFile ?? '');
  const pool = new Pool(spec.url, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const headers = { ...spec.headers, 'content-length': String(body.length) };
  const latencies: number[] = [];
  const lags: number[] = [];
  let sent = 0;
  let ok = 0;
  let errors = 0;

  const one = async (intendedUs: number, counted: boolean): Promise<void> => {
    if (counted) lags.push(nowUs() - intendedUs);
    let good: boolean;
    try {
      const res = await pool.request({ origin: spec.url, path: spec.path, method: 'POST', headers, body });
      await res.body.dump({ limit: Infinity });
      good = res.statusCode === 200;
    } catch {
      good = false;
    }
    if (!counted) return;
    sent++;
    if (good) ok++;
    else errors++;
    latencies.push(nowUs() - intendedUs);
  };

  let start = nowUs();
  let measuredFrom = start;
  if (spec.mode === 'max') {
    const end = start + spec.durationMs * 1000;
    const loop = async (): Promise<void> => {
      while (nowUs() < end) await one(nowUs(), true);
    };
    await Promise.all(Array.from({ length: spec.concurrency ?? 32 }, loop));
  } else {
    const rate = spec.rate ?? 1000;
    const warmupUs = (spec.warmupMs ?? 0) * 1000;
    start = nowUs();
    measuredFrom = start + warmupUs;
    const total = Math.floor(((warmupUs + spec.durationMs * 1000) * rate) / 1e6);
    const end = start + warmupUs + spec.durationMs * 1000;
    const inFlight = new Set<Promise<void>>();
    let issued = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = nowUs();
        // Request k is due at start + k / rate: by `now`, requests 0 … floor(elapsed · rate) are.
        const due = Math.min(Math.floor(((Math.min(now, end) - start) * rate) / 1e6) + 1, total);
        while (issued < due) {
          // Each request's latency counts from when it should have been sent (no coordinated omission).
          const intended = start + Math.floor((issued * 1e6) / rate);
          issued++;
          const p = one(intended, intended >= measuredFrom).finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        if (now >= end) return resolve();
        // Timers have 1 ms granularity: sleep when the next send is that far away, else poll once per loop turn
        // (which costs the driver CPU, but keeps sends within µs of their schedule).
        const nextUs = start + Math.floor((issued * 1e6) / rate) - nowUs();
        if (nextUs >= 1500) setTimeout(tick, Math.floor(nextUs / 1000) - 1);
        else setImmediate(tick);
      };
      tick();
    });
    await Promise.all(inFlight);
  }
  const elapsedS = (nowUs() - measuredFrom) / 1e6;
  await pool.close();
  const sorted = Float64Array.from(latencies).sort();
  const lagSorted = Float64Array.from(lags).sort();
  return {
    sent,
    ok,
    errors,
    elapsedS,
    rps: ok / elapsedS,
    p50Us: percentile(sorted, 0.5),
    p99Us: percentile(sorted, 0.99),
    maxUs: percentile(sorted, 1),
    sendLagP99Us: percentile(lagSorted, 0.99),
    sendLagMaxUs: percentile(lagSorted, 1),
  };
}
