// A bounded load generator for tests: N requests (or until stopped) at a fixed concurrency over keep-alive connections;
// and the figures every fault scenario reports (requests, statuses, unanswered, resets, p99, RSS at start and end).

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ExecutionContext } from 'ava';
import { Agent, request } from 'undici';

export interface LoadOptions {
  url: string;
  /** Request body (JSON text) or a function of the request index. */
  body: string | ((i: number) => string);
  headers?: Record<string, string> | ((i: number) => Record<string, string>);
  concurrency: number;
  /** Stop after this many requests; without it the load runs until stop() (still bounded by maxRequests). */
  total?: number;
  /** Hard cap for open-ended runs. */
  maxRequests?: number;
}

export interface Sample {
  index: number;
  status: number;
  version: string | undefined;
  ms: number;
  body: string;
}

export interface LoadResult {
  samples: Sample[];
  statuses: Record<number, number>;
  versions: Record<string, number>;
  /** Samples whose status was not 2xx, for assertion messages. */
  failures: Sample[];
}

function summarise(samples: Sample[]): LoadResult {
  const statuses: Record<number, number> = {};
  const versions: Record<string, number> = {};
  for (const s of samples) {
    statuses[s.status] = (statuses[s.status] ?? 0) + 1;
    if (s.version !== undefined) versions[s.version] = (versions[s.version] ?? 0) + 1;
  }
  return { samples, statuses, versions, failures: samples.filter((s) => s.status < 200 || s.status > 299) };
}

export interface RunningLoad {
  /** Resolves after `n` more requests have completed. */
  completed(n: number): Promise<void>;
  /** Stops issuing requests and resolves once those in flight have finished. */
  stop(): Promise<LoadResult>;
  readonly done: Promise<LoadResult>;
}

export function startLoad(options: LoadOptions): RunningLoad {
  const agent = new Agent({ connections: options.concurrency, pipelining: 1 });
  const limit = options.total ?? options.maxRequests ?? 100_000;
  const samples: Sample[] = [];
  const waiters: { at: number; resolve: () => void }[] = [];
  let next = 0;
  let stopped = false;

  async function one(index: number): Promise<void> {
    const body = typeof options.body === 'string' ? options.body : options.body(index);
    const headers = typeof options.headers === 'function' ? options.headers(index) : (options.headers ?? {});
    const started = performance.now();
    let status = 0;
    let version: string | undefined;
    let text: string;
    try {
      const res = await request(options.url, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json', ...headers }, body });
      text = await res.body.text();
      status = res.statusCode;
      const v = res.headers['x-model-version'];
      version = Array.isArray(v) ? v[0] : v;
    } catch (err) {
      text = String(err);
    }
    samples.push({ index, status, version, ms: performance.now() - started, body: text });
    for (const w of waiters.filter((w) => samples.length >= w.at)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  }

  async function worker(): Promise<void> {
    while (!stopped && next < limit) await one(next++);
  }

  const done = Promise.all(Array.from({ length: options.concurrency }, worker)).then(async () => {
    await agent.close();
    for (const w of waiters.splice(0)) w.resolve();
    return summarise(samples);
  });

  return {
    done,
    completed(n) {
      const at = samples.length + n;
      return new Promise((resolve) => waiters.push({ at, resolve }));
    },
    stop() {
      stopped = true;
      return done;
    },
  };
}

/** Runs exactly `total` requests at the given concurrency. */
export function runLoad(options: LoadOptions & { total: number }): Promise<LoadResult> {
  return startLoad(options).done;
}

/** Nearest-rank percentile of the values (q in 0–1). */
export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

/**
 * Measures several endpoints under the same conditions: in each round every endpoint in turn (rotating the order)
 * gets `perTurn` concurrent requests over its own keep-alive connections, and the next turn starts when they are
 * answered. Bursts of machine noise therefore spread evenly over the endpoints, while a cost that one endpoint's
 * requests pay — a reply that waits for a shadow, event-loop time spent on its path — shows in its latencies only.
 */
export async function inTurns(urls: Record<string, string>, body: string, rounds: number, perTurn: number): Promise<Record<string, Sample[]>> {
  const names = Object.keys(urls);
  const agents = Object.fromEntries(names.map((n) => [n, new Agent({ connections: perTurn, pipelining: 1 })]));
  const samples: Record<string, Sample[]> = Object.fromEntries(names.map((n) => [n, []]));
  const one = async (name: string, index: number): Promise<Sample> => {
    const started = performance.now();
    try {
      const res = await request(urls[name]!, { method: 'POST', dispatcher: agents[name]!, headers: { 'content-type': 'application/json' }, body });
      const text = await res.body.text();
      const v = res.headers['x-model-version'];
      return { index, status: res.statusCode, version: Array.isArray(v) ? v[0] : v, ms: performance.now() - started, body: text };
    } catch (err) {
      return { index, status: 0, version: undefined, ms: performance.now() - started, body: String(err) };
    }
  };
  try {
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(round + k) % names.length]!;
        samples[name]!.push(...(await Promise.all(Array.from({ length: perTurn }, (_, i) => one(name, round * perTurn + i)))));
      }
    }
  } finally {
    await Promise.all(Object.values(agents).map((a) => a.close()));
  }
  return samples;
}

/** What the figures need of one request: its status (0 when no response came), latency, and the error text when status is 0. */
export type Outcome = Pick<Sample, 'status' | 'ms' | 'body'>;

/**
 * Error texts that mean the connection was reset or closed under a request, as undici, fetch and node:http word it.
 * Such a request also has no response; resets are counted apart because a drain must never cause one.
 */
export const RESET = /ECONNRESET|UND_ERR_SOCKET|other side closed|socket hang up|EPIPE/;

/** An error's text with its cause (fetch wraps the socket error: "TypeError: fetch failed" says nothing on its own). */
export function errorText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e !== undefined && parts.length < 4; e = e instanceof Error ? e.cause : undefined) {
    const code = (e as { code?: unknown }).code;
    parts.push(typeof code === 'string' ? `${String(e)} [${code}]` : String(e));
  }
  return parts.join(' <- ');
}

/** Sends one request through `send`, appends its outcome to `into` and returns the reply; a failure is recorded, then rethrown. */
export async function timed<R extends { status: number }>(into: Outcome[], send: () => Promise<R>): Promise<R> {
  const started = performance.now();
  try {
    const reply = await send();
    into.push({ status: reply.status, ms: performance.now() - started, body: '' });
    return reply;
  } catch (err) {
    into.push({ status: 0, ms: performance.now() - started, body: errorText(err) });
    throw err;
  }
}

/**
 * Resident set size in MiB: of a spawned process (VmRSS from /proc/<pid>/status; NaN once it has exited), or without
 * a pid of this process — which an in-process gateway shares with the test, its load, and any test of the same file
 * running beside it (ava runs a file's non-serial tests concurrently), so read it as the whole test process's figure.
 */
export function rssMiB(pid?: number): number {
  if (pid === undefined) return process.memoryUsage().rss / 2 ** 20;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** "200: 86, 503: 2, none: 1" — statuses in ascending order, `none` for requests without a response. */
export function formatStatuses(outcomes: readonly Pick<Outcome, 'status'>[]): string {
  const counts = new Map<number, number>();
  for (const o of outcomes) counts.set(o.status, (counts.get(o.status) ?? 0) + 1);
  return [...counts]
    .sort(([a], [b]) => (a === 0 ? 1 : b === 0 ? -1 : a - b))
    .map(([status, n]) => `${status === 0 ? 'none' : status}: ${n}`)
    .join(', ');
}

export interface LoadFigures {
  sent: number;
  /** Responses by status, e.g. "200: 86, 503: 2"; `none` counts requests without a response. */
  statuses: string;
  /** Requests without any HTTP response (resets included). */
  unanswered: number;
  /** Of those, the ones cut by a reset or closed connection (RESET). */
  resets: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  rss: { startMiB: number; endMiB: number; of: string };
}

/** The figures for a fault scenario, from every request it sent and the RSS read before and after. */
export function loadFigures(outcomes: readonly Outcome[], rss: LoadFigures['rss']): LoadFigures {
  const unanswered = outcomes.filter((o) => o.status === 0);
  const ms = outcomes.map((o) => o.ms);
  const at = (q: number) => (ms.length === 0 ? NaN : percentile(ms, q));
  return {
    sent: outcomes.length,
    statuses: formatStatuses(outcomes),
    unanswered: unanswered.length,
    resets: unanswered.filter((o) => RESET.test(o.body)).length,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: at(1),
    rss,
  };
}

/** Logs a scenario's figures as one line of the test's output (`npx ava --verbose` shows it) and returns them. */
export function reportLoad(t: Pick<ExecutionContext, 'log'>, scenario: string, f: LoadFigures): LoadFigures {
  const growth = ((f.rss.endMiB - f.rss.startMiB) / f.rss.startMiB) * 100;
  t.log(
    `${scenario}: sent ${f.sent}; responses ${f.statuses || '-'}; without a response ${f.unanswered}; connection resets ${f.resets}; ` +
      `p50 / p99 / max ${f.p50Ms.toFixed(1)} / ${f.p99Ms.toFixed(1)} / ${f.maxMs.toFixed(1)} ms; ` +
      `RSS of ${f.rss.of} ${f.rss.startMiB.toFixed(1)} → ${f.rss.endMiB.toFixed(1)} MiB (${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%)`,
  );
  return f;
}
