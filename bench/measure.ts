// Measures one target in one round: warm-up to steady, wrk max throughput + CPU µs/req, open-loop latency, GC, RSS, checks.

import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { coreBusy, coreTimes, cpuReading, cpuSeconds, DRIVER_CORE, foreignPct, log, peakRssMb, run, sleep } from './proc.js';
import type { LoadResult, LoadSpec } from './load.js';
import { relativeDiff, type DurationSummary } from './stats.js';
import { ROOT, type RunningTarget } from './targets.js';
import { errorCount, okRps, runWrk } from './wrk.js';

export interface Timings {
  rounds: number;
  /** Warm-up windows, s (wrk runs until two consecutive ones agree within `steadyTolerance`). */
  warmWindowS: number;
  warmMaxS: number;
  steadyTolerance: number;
  maxS: number;
  connections: number;
  threads: number;
  rate: number;
  latencyS: number;
  latencyWarmupS: number;
}

// Three rounds of six targets must fit in about six minutes on two cores: 14 s of warm-up at most (the goal is steady
// within 10 s, so "not steady by 14 s" still answers it), 4 s at max throughput, 6 s (1800 requests) at 300 req/s.
export const DEFAULT_TIMINGS: Timings = {
  rounds: 3,
  warmWindowS: 2,
  warmMaxS: 14,
  steadyTolerance: 0.05,
  maxS: 4,
  connections: 64,
  threads: 1,
  rate: 300,
  latencyS: 6,
  latencyWarmupS: 0.5,
};
export const QUICK_TIMINGS: Timings = { ...DEFAULT_TIMINGS, rounds: 1, warmWindowS: 1, warmMaxS: 6, maxS: 2, latencyS: 3 };

/** CPU other processes use (% of one core) above which a round counts as disturbed. */
export const DISTURBED_PCT = 15;

export interface GcWindow {
  gc: DurationSummary;
  loop?: { p99Ms: number; maxMs: number };
}

export interface RoundFigures {
  target: string;
  round: number;
  readyMs: number;
  /** req/s of each warm-up window, the first starting at ready. */
  warmup: number[];
  /** From ready to the end of the first window that agrees with the next one; NaN: not steady within warmMaxS. */
  steadyMs: number;
  /** readyMs + steadyMs: from spawn. */
  steadyFromStartMs: number;
  first2sRps: number;
  steadyRps: number;
  maxRps: number;
  maxErrors: number;
  maxP99Us: number;
  cpuUsPerReq: number;
  /** Busy % of the driver's and the target's core during the max window. */
  coreBusy: Record<string, number>;
  /** The target's processes' CPU over the max window, % of one core. */
  targetCpuPct: number;
  /** CPU other processes on the machine used, % of one core: the worse of the two windows, the max and the latency one. */
  foreignPct: number;
  foreignMaxPct: number;
  foreignRatePct: number;
  /** 1-min load average after the target's windows. */
  loadAvg1: number;
  latency: { p50Us: number; p99Us: number; maxUs: number; sent: number; errors: number; rps: number; sendLagP99Us: number; sendLagMaxUs: number };
  gcMax?: GcWindow;
  gcRate?: GcWindow;
  peakRssMb: number;
  checks: string[];
  failures: string[];
  /** Backend hits (POST 2xx) per path during this target's session, and their non-2xx count. */
  backendHits: Record<string, number>;
  backendNon2xx: number;
  /** Requests the drivers got a 2xx for during the session. */
  driverOk: number;
  /** 1 for the first measurement of this target and round, 2 when a disturbed one was repeated. */
  attempt: number;
  /** The machine before the target started: how long the bench waited for it to be quiet, and others' CPU %. */
  quietBefore: { waitedMs: number; foreignPct: number };
  /** Requests a driver may have sent without counting them (wrk stops with a request in flight per connection). */
  uncountedMax: number;
}

const seqs = new Map<string, number>();

/** Asks the GC probe for its window (and starts a new one); resolves with what it wrote. */
export async function gcReport(t: { name: string; gcFile?: string; gcPid?: number }): Promise<GcWindow | undefined> {
  if (!t.gcFile || t.gcPid === undefined) return undefined;
  const key = `${t.gcFile}:${t.gcPid}`;
  const before = seqs.get(key) ?? 0;
  try {
    process.kill(t.gcPid, 'SIGUSR2');
  } catch {
    return undefined;
  }
  for (let i = 0; i < 200; i++) {
    if (existsSync(t.gcFile)) {
      const body = JSON.parse(readFileSync(t.gcFile, 'utf8')) as GcWindow & { seq: number; pid: number };
      if (body.pid === t.gcPid && body.seq > before) {
        seqs.set(key, body.seq);
        return { gc: body.gc, ...(body.loop ? { loop: body.loop } : {}) };
      }
    }
    await sleep(10);
  }
  log(`${t.name}: the GC probe did not answer`);
  return undefined;
}

/** The open-loop Node driver in its own process, pinned to the driver core. */
export async function drive(spec: LoadSpec): Promise<LoadResult> {
  const out = await run('driver', process.execPath, [path.join(ROOT, 'dist/bench/driver.js'), JSON.stringify(spec)], { core: DRIVER_CORE });
  return JSON.parse(out) as LoadResult;
}

export interface Request {
  script: string;
  body: string;
  headers: Record<string, string>;
  /** Scripts per path (wrk.path is in the script). */
  scripts: Record<string, string>;
}

/** Functional checks on a warm target: an answer with outputs; with auth, 401 without a token; metrics served. */
async function check(t: RunningTarget, req: Request): Promise<{ checks: string[]; failures: string[] }> {
  const checks: string[] = [];
  const failures: string[] = [];
  const res = await fetch(`${t.url}${t.path}`, { method: 'POST', body: req.body, headers: req.headers });
  const answer = (await res.json().catch(() => ({}))) as { outputs?: { name: string; datatype: string }[] };
  const outputs = (answer.outputs ?? []).map((o) => `${o.name}:${o.datatype}`).join(',');
  if (res.status === 200 && outputs === 'probabilities:FP32,label:INT64') checks.push('infer 200 with both outputs');
  else failures.push(`infer answered ${res.status} with outputs [${outputs}]`);
  if (t.name === 'gateway-all' || t.name === 'fastify') {
    const { authorization: _drop, ...anonymous } = req.headers;
    const anon = await fetch(`${t.url}${t.path}`, { method: 'POST', body: req.body, headers: anonymous });
    await anon.arrayBuffer();
    if (anon.status === 401) checks.push('no token → 401');
    else failures.push(`no token answered ${anon.status}, not 401`);
  }
  if (t.adminUrl) {
    const metrics = await fetch(`${t.adminUrl}/metrics`);
    const text = await metrics.text();
    if (metrics.status === 200 && text.includes('# TYPE')) checks.push('metrics served');
    else failures.push(`/metrics answered ${metrics.status}`);
  }
  return { checks, failures };
}

export async function measure(
  t: RunningTarget,
  round: number,
  req: Request,
  tm: Timings,
): Promise<Omit<RoundFigures, 'backendHits' | 'backendNon2xx' | 'attempt' | 'quietBefore'>> {
  const script = req.scripts[t.path];
  if (!script) throw new Error(`no wrk script for ${t.path}`);
  let wrkRuns = 0;
  const wrk = (durationS: number): ReturnType<typeof runWrk> => {
    wrkRuns++;
    return runWrk({ url: t.url, script, connections: tm.connections, threads: tm.threads, durationS });
  };
  let driverOk = 0;

  // Warm-up from ready: windows until two in a row agree.
  const ready = performance.now();
  const warmup: number[] = [];
  let steadyMs = NaN;
  const windowEnds: number[] = [];
  const maxWindows = Math.max(2, Math.floor(tm.warmMaxS / tm.warmWindowS));
  while (warmup.length < maxWindows) {
    const r = await wrk(tm.warmWindowS);
    driverOk += r.requests - r.statusErrors;
    warmup.push(okRps(r));
    windowEnds.push(performance.now() - ready);
    const n = warmup.length;
    if (n >= 2 && warmup[n - 2]! > 0 && relativeDiff(warmup[n - 1]!, warmup[n - 2]!) <= tm.steadyTolerance) {
      steadyMs = windowEnds[n - 2]!;
      break;
    }
  }
  const steadyRps = warmup[warmup.length - 1] ?? NaN;
  log(
    `${t.name}: warm-up ${warmup.map((x) => x.toFixed(0)).join(' → ')} req/s; ${Number.isFinite(steadyMs) ? `steady after ${(steadyMs / 1000).toFixed(1)} s` : `not steady in ${tm.warmMaxS} s`}`,
  );

  // Max throughput, with the target's CPU and the cores' load over the same window.
  await gcReport(t);
  const cores0 = coreTimes();
  const reading0 = cpuReading();
  const cpu0 = cpuSeconds(t.pids());
  const max = await wrk(tm.maxS);
  const cpu = cpuSeconds(t.pids()) - cpu0;
  const reading1 = cpuReading();
  const targetCpuPct = (100 * cpu) / ((reading1.at - reading0.at) / 1000);
  const busy = coreBusy(cores0, coreTimes());
  // CPU time of the machine that none of the bench's processes account for is someone else's: the round is suspect.
  const foreignMax = foreignPct(reading0, reading1);
  const gcMax = await gcReport(t);
  const ok = max.requests - max.statusErrors;
  driverOk += ok;
  const cpuUsPerReq = ok > 0 ? (cpu * 1e6) / ok : NaN;
  log(
    `${t.name}: max ${okRps(max).toFixed(0)} req/s (${errorCount(max)} errors), ${cpuUsPerReq.toFixed(1)} CPU µs/req, target ${targetCpuPct.toFixed(0)} % CPU, cores ${Object.entries(
      busy,
    )
      .map(([c, b]) => `${c}:${b.toFixed(0)}%`)
      .join(' ')}`,
  );

  // Latency at a fixed rate well below saturation, open loop.
  await gcReport(t);
  const reading2 = cpuReading();
  const lat = await drive({
    url: t.url,
    path: t.path,
    body: req.body,
    headers: req.headers,
    mode: 'rate',
    rate: tm.rate,
    durationMs: tm.latencyS * 1000,
    warmupMs: tm.latencyWarmupS * 1000,
    connections: tm.connections,
  });
  const foreignRate = foreignPct(reading2, cpuReading());
  const gcRate = await gcReport(t);
  // The latency warm-up's requests reached the backend too.
  driverOk += lat.ok + Math.round(tm.rate * tm.latencyWarmupS);
  log(
    `${t.name}: at ${tm.rate} req/s p50 ${(lat.p50Us / 1000).toFixed(2)} ms, p99 ${(lat.p99Us / 1000).toFixed(2)} ms (${lat.errors} errors)${gcMax ? `; GC p99 ${gcMax.gc.p99.toFixed(2)} ms under max load` : ''}`,
  );

  const { checks, failures } = await check(t, req);
  driverOk += 1;
  if (max.statusErrors + lat.errors > 0) failures.push(`${max.statusErrors} non-2xx at max, ${lat.errors} errors at ${tm.rate} req/s`);
  if (foreignMax > DISTURBED_PCT) failures.push(`disturbed: other processes used ${foreignMax.toFixed(0)} % of a core during the max window`);
  if (foreignRate > DISTURBED_PCT) failures.push(`disturbed: other processes used ${foreignRate.toFixed(0)} % of a core during the latency window`);
  return {
    target: t.name,
    round,
    readyMs: t.readyMs,
    warmup,
    steadyMs,
    steadyFromStartMs: t.readyMs + steadyMs,
    first2sRps: warmup[0] ?? NaN,
    steadyRps,
    maxRps: okRps(max),
    maxErrors: errorCount(max),
    maxP99Us: max.p99Us,
    cpuUsPerReq,
    coreBusy: busy,
    targetCpuPct,
    foreignPct: Math.max(foreignMax, foreignRate),
    foreignMaxPct: foreignMax,
    foreignRatePct: foreignRate,
    loadAvg1: os.loadavg()[0] ?? NaN,
    latency: {
      p50Us: lat.p50Us,
      p99Us: lat.p99Us,
      maxUs: lat.maxUs,
      sent: lat.sent,
      errors: lat.errors,
      rps: lat.rps,
      sendLagP99Us: lat.sendLagP99Us,
      sendLagMaxUs: lat.sendLagMaxUs,
    },
    ...(gcMax ? { gcMax } : {}),
    ...(gcRate ? { gcRate } : {}),
    peakRssMb: peakRssMb(t.pids()),
    checks,
    failures,
    driverOk,
    uncountedMax: wrkRuns * tm.connections,
  };
}
