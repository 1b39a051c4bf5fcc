// What observability costs: the same gateway and load with telemetry off, then on (OTLP traces, metrics, access logs).
// Usage: npm run bench:telemetry [-- --seconds S --concurrency C --rounds R]   (loopback only, bounded in time)

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { runLoad } from './load.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '16' }, rounds: { type: 'string', default: '3' } },
});
const DURATION_MS = Number(values.seconds) * 1000;
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const BODY = JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] });

/** A local OTLP/HTTP sink: accepts every export, counts spans' payload bytes (the exporter's real network cost). */
async function otlpSink(): Promise<{ url: string; bytes: () => number; close: () => void }> {
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, bytes: () => bytes, close: () => server.close() };
}

function configFile(telemetry: boolean, sampleRatio = 1, parts: { metrics?: boolean; accessLog?: boolean } = {}): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-bench-'));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    stringify({
      server: { host: '127.0.0.1', port: 0, grpc: { port: 0 } },
      admin: { host: '127.0.0.1', port: 0 },
      logging: { level: 'info', accessLog: { enabled: parts.accessLog ?? telemetry } },
      telemetry: { metrics: { enabled: parts.metrics ?? telemetry }, tracing: { sampleRatio } },
      models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: path.join(ROOT, 'examples/models/iris-v1.onnx') } } } } },
    }),
  );
  return file;
}

async function startGateway(file: string, env: NodeJS.ProcessEnv): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli.js'), 'start', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'], env });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /model-gateway ready on (\S+)/.exec(err);
      if (m) resolve({ url: m[1]!, stop: () => child.kill('SIGTERM') });
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}): ${err}`)));
  });
}

/** Closed-loop load with the shared driver, in this process (the gateway runs in its own). */
async function load(url: string, durationMs: number): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const r = await runLoad({
    url,
    path: '/v2/models/iris/infer',
    body: BODY,
    headers: { 'content-type': 'application/json' },
    mode: 'max',
    concurrency: CONCURRENCY,
    connections: CONCURRENCY,
    durationMs,
  });
  return { rps: r.rps, p50: r.p50Us / 1000, p99: r.p99Us / 1000, errors: r.errors };
}

const sink = await otlpSink();
const variants = [
  { name: 'telemetry off', file: configFile(false), env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' } },
  {
    name: 'metrics only',
    file: configFile(false, 1, { metrics: true }),
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' },
  },
  {
    name: 'access log only',
    file: configFile(false, 1, { accessLog: true }),
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' },
  },
  { name: 'telemetry on (OTLP traces, metrics, access logs)', file: configFile(true), env: { ...process.env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: sink.url } },
  { name: 'telemetry on, traces sampled at 10 %', file: configFile(true, 0.1), env: { ...process.env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: sink.url } },
];
console.log(`telemetry cost — ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}`);
console.log(
  `iris v1 in-process, 1 row, concurrency ${CONCURRENCY}, ${DURATION_MS / 1000} s × ${ROUNDS} alternating rounds per variant (best round reported)\n`,
);
const best = new Map<string, { rps: number; p50: number; p99: number; errors: number }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const v of variants) {
    const gw = await startGateway(v.file, v.env);
    try {
      await load(gw.url, 500); // warm-up
      const r = await load(gw.url, DURATION_MS);
      const prev = best.get(v.name);
      if (!prev || r.rps > prev.rps) best.set(v.name, r);
      process.stderr.write(`  round ${round + 1} ${v.name}: ${r.rps.toFixed(0)} req/s\n`);
    } finally {
      gw.stop();
    }
  }
}
console.log('| variant | req/s | p50 ms | p99 ms | errors |');
console.log('|---|---:|---:|---:|---:|');
for (const [name, r] of best) console.log(`| ${name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} |`);
const off = best.get(variants[0]!.name)!;
for (const v of variants.slice(1)) console.log(`throughput cost, ${v.name}: ${(100 * (1 - best.get(v.name)!.rps / off.rps)).toFixed(1)} %`);
console.log(`OTLP bytes exported in all: ${sink.bytes()}`);
sink.close();
