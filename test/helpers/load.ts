// A bounded load generator for tests: N requests (or until stopped) at a fixed concurrency over keep-alive connections.

import { performance } from 'node:perf_hooks';
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
    let text = '';
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
