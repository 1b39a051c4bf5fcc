// The load driver every benchmark uses: closed-loop max throughput or open-loop fixed rate, latency in µs from the
// intended send time (no coordinated omission). Run it in its own process (bench/driver.ts) or import runLoad().

import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

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
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const body = spec.body !== undefined ? Buffer.from(spec.body) : readFileSync(spec.bodyFile ?? '');
  const pool = new Pool(spec.url, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const headers = { ...spec.headers, 'content-length': String(body.length) };
  const latencies: number[] = [];
  let sent = 0;
  let ok = 0;
  let errors = 0;

  const one = async (intendedUs: number): Promise<void> => {
    sent++;
    try {
      const res = await pool.request({ origin: spec.url, path: spec.path, method: 'POST', headers, body });
      await res.body.dump({ limit: Infinity });
      if (res.statusCode === 200) ok++;
      else errors++;
    } catch {
      errors++;
    }
    latencies.push(nowUs() - intendedUs);
  };

  const start = nowUs();
  const end = start + spec.durationMs * 1000;
  if (spec.mode === 'max') {
    const loop = async () => {
      while (nowUs() < end) await one(nowUs());
    };
    await Promise.all(Array.from({ length: spec.concurrency ?? 32 }, loop));
  } else {
    const rate = spec.rate ?? 1000;
    const inFlight = new Set<Promise<void>>();
    let issued = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = nowUs();
        const due = Math.min(Math.floor(((Math.min(now, end) - start) * rate) / 1e6), Math.floor((spec.durationMs * rate) / 1000));
        while (issued < due) {
          // Each request's latency counts from when it should have been sent (no coordinated omission).
          const intended = start + Math.floor((issued * 1e6) / rate);
          issued++;
          const p = one(intended).finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        if (now >= end) return resolve();
        // Timers have 1 ms granularity: sleep when the next send is that far away, else poll once per loop turn
        // (which costs the driver CPU at high rates, but keeps sends within µs of their schedule).
        const nextUs = start + Math.floor((issued * 1e6) / rate) - nowUs();
        if (nextUs >= 1500) setTimeout(tick, Math.floor(nextUs / 1000) - 1);
        else setImmediate(tick);
      };
      tick();
    });
    await Promise.all(inFlight);
  }
  const elapsedS = (nowUs() - start) / 1e6;
  await pool.close();
  const sorted = Float64Array.from(latencies).sort();
  return { sent, ok, errors, elapsedS, rps: ok / elapsedS, p50Us: percentile(sorted, 0.5), p99Us: percentile(sorted, 0.99), maxUs: percentile(sorted, 1) };
}
