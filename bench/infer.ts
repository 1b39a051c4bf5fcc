// Foundation benchmark: starts the real gateway on the example config and measures OIP inference latency and throughput.
// Usage: npm run bench:infer [-- --requests N]   (loopback only, bounded: a few thousand requests per scenario)

import { spawn } from 'node:child_process';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(import.meta.dirname, '../..');
const { values } = parseArgs({ options: { requests: { type: 'string', default: '4000' } } });
const REQUESTS = Number(values.requests);

interface Scenario {
  name: string;
  path: string;
  body: string;
  concurrency: number;
}

const irisBody = JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] });
const mlpBody = JSON.stringify({
  inputs: [{ name: 'input', shape: [1, 512], datatype: 'FP32', data: Array.from({ length: 512 }, (_, i) => Math.round(Math.sin(i) * 1e4) / 1e4) }],
});

const scenarios: Scenario[] = [
  { name: 'iris, 1 row, concurrency 1', path: '/v2/models/iris/versions/1/infer', body: irisBody, concurrency: 1 },
  { name: 'iris, 1 row, concurrency 16', path: '/v2/models/iris/versions/1/infer', body: irisBody, concurrency: 16 },
  { name: 'mlp-large (~1M MAC), 1 row, concurrency 8', path: '/v2/models/mlp-large/infer', body: mlpBody, concurrency: 8 },
];

function startGateway(): Promise<{ url: string; pid: number; stop: () => void }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli.js'), 'start', '--config', path.join(ROOT, 'examples/gateway.yaml'), '--port', '0', '--host', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /model-gateway ready on (\S+)/.exec(err);
      if (m) resolve({ url: m[1]!, pid: child.pid!, stop: () => child.kill('SIGTERM') });
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}): ${err}`)));
  });
}

async function run(url: string, s: Scenario, count: number): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: s.concurrency });
  const target = new URL(s.path, url);
  const latencies: number[] = [];
  let errors = 0;
  let issued = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const start = process.hrtime.bigint();
      const req = http.request(target, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s.body) } }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) errors++;
          latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(s.body);
    });
  const worker = async () => {
    while (issued < count) {
      issued++;
      await one();
    }
  };
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: s.concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!;
  return { rps: count / seconds, p50: pct(50), p99: pct(99), errors };
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

const gw = await startGateway();
try {
  console.log(`model-gateway benchmark — ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}`);
  console.log(`load generator: Node http keep-alive client in a separate process on the same machine, ${REQUESTS} requests per scenario\n`);
  console.log('| scenario | req/s | p50 ms | p99 ms | errors |');
  console.log('|---|---:|---:|---:|---:|');
  for (const s of scenarios) {
    await run(gw.url, s, Math.min(500, REQUESTS)); // warm-up
    const r = await run(gw.url, s, REQUESTS);
    console.log(`| ${s.name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} |`);
  }
  console.log(`\ngateway peak RSS: ${peakRssMb(gw.pid).toFixed(0)} MB`);
} finally {
  gw.stop();
}
