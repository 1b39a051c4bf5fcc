// wrk, the closed-loop max-throughput driver: the pure Lua script builder and output parser, and the pinned runner.

import { writeFile } from 'node:fs/promises';
import { DRIVER_CORE, run } from './proc.js';

/** A Lua long-bracket string that cannot be closed early by `text`. */
export function luaLongString(text: string): string {
  let level = 0;
  while (text.includes(`]${'='.repeat(level)}]`)) level++;
  const eq = '='.repeat(level);
  // A newline right after the opening bracket is dropped by Lua; add one so a leading newline in text survives.
  return `[${eq}[\n${text}]${eq}]`;
}

/** The wrk script: every request is `method path` with the body and headers; done() prints one JSON line. */
export function wrkScript(request: { method: string; path: string; body?: string; headers: Record<string, string> }): string {
  const lines = [`wrk.method = "${request.method}"`, `wrk.path = ${luaLongString(request.path)}`];
  if (request.body !== undefined) lines.push(`wrk.body = ${luaLongString(request.body)}`);
  for (const [k, v] of Object.entries(request.headers)) lines.push(`wrk.headers[ ${luaLongString(k)} ] = ${luaLongString(v)}`);
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format(\'\\n{"requests":%d,"durationUs":%d,"bytes":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d}\\n\',',
    '    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,',
    '    latency:percentile(50), latency:percentile(99), latency.max))',
    'end',
  );
  return `${lines.join('\n')}\n`;
}

export interface WrkResult {
  requests: number;
  durationUs: number;
  bytes: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  /** Answers that were not 2xx/3xx. */
  statusErrors: number;
  timeouts: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/** The JSON line done() printed, out of wrk's stdout; throws when missing. */
export function parseWrk(stdout: string): WrkResult {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{"requests"'));
  if (!line) throw new Error(`no wrk summary in its output:\n${stdout}`);
  return JSON.parse(line) as WrkResult;
}

/** Completed 2xx answers per second. */
export const okRps = (r: WrkResult): number => (r.requests - r.statusErrors) / (r.durationUs / 1e6);
export const errorCount = (r: WrkResult): number => r.statusErrors + r.connectErrors + r.readErrors + r.writeErrors + r.timeouts;

export async function writeWrkScript(file: string, request: Parameters<typeof wrkScript>[0]): Promise<string> {
  await writeFile(file, wrkScript(request));
  return file;
}

export interface WrkSpec {
  url: string;
  script: string;
  connections: number;
  threads: number;
  durationS: number;
}

/** One wrk run, pinned to the driver core. */
export async function runWrk(spec: WrkSpec): Promise<WrkResult> {
  const args = ['-t', String(spec.threads), '-c', String(spec.connections), '-d', `${spec.durationS}s`, '--timeout', '5s', '-s', spec.script, spec.url];
  return parseWrk(await run('wrk', 'wrk', args, { core: DRIVER_CORE }));
}
