// `npm run bench`: the gateway (all features on) against a direct backend and peer proxies — nginx, http-proxy and a
// fastify stack — plus dynamic batching on/off and JSON vs binary tensors. Loopback only, a few minutes, one run.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { buildIdentityModel } from '../scripts/onnx-graph.js';
import { mintToken } from '../src/commands/token.js';
import type { LoadResult, LoadSpec } from './driver.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/src/cli.js');
const JWKS = path.join(ROOT, 'examples/dev-keys/jwks.json');
const MODELS = path.join(ROOT, 'examples/models');
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Processes

interface Target {
  name: string;
  url: string;
  child: ChildProcess;
  /** Every pid whose CPU and memory count as this target's (nginx: master and workers). */
  pids(): number[];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

const children = new Set<ChildProcess>();
function stopAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
}
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Spawns a process and resolves once `ready` matches its output (stdout or stderr). */
function spawnReady(
  name: string,
  cmd: string,
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  children.add(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready in 60 s:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before ready:\n${out}`));
    });
  });
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** utime + stime of the pids, seconds. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process is gone: nothing to add
    }
  }
  return ticks / CLK_TCK;
}

/** Peak resident set (VmHWM) summed over the pids, MB. */
function peakRssMb(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      kb += Number(m?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return kb / 1024;
}

function ensureNginx(): string | undefined {
  const which = (): string | undefined => {
    for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) if (existsSync(path.join(dir, 'nginx'))) return path.join(dir, 'nginx');
    return undefined;
  };
  const found = which();
  if (found) return found;
  if (process.getuid?.() === 0) {
    log('nginx not found; installing the Debian package (apt-get install -y nginx)');
    try {
      execFileSync('apt-get', ['install', '-y', 'nginx'], { stdio: 'ignore' });
    } catch {
      execFileSync('apt-get', ['update'], { stdio: 'ignore' });
      execFileSync('apt-get', ['install', '-y', 'nginx'], { stdio: 'ignore' });
    }
    return which();
  }
  log('nginx not found and not root: run `sudo apt-get install -y nginx` to add the nginx column; skipping it');
  return undefined;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port}`);
}

async function startNginx(bin: string, work: string, upstream: string): Promise<Target> {
  const port = await freePort();
  const prefix = path.join(work, 'nginx');
  await mkdir(prefix, { recursive: true, mode: 0o777 });
  const up = new URL(upstream);
  // One worker: the Node peers are single-threaded too. Keep-alive to the upstream, no logs, no buffering to disk.
  const conf = `
worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fcgi; uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
  client_max_body_size 16m;
  client_body_buffer_size 16m;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  upstream backend { server ${up.hostname}:${up.port}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}`;
  const file = path.join(prefix, 'nginx.conf');
  await writeFile(file, conf);
  const child = spawn(bin, ['-p', prefix, '-c', file], { stdio: 'ignore' });
  children.add(child);
  await waitForPort(port);
  return { name: 'nginx', url: `http://127.0.0.1:${port}`, child, pids: () => [child.pid!, ...childPids(child.pid!)] };
}

// ---------------------------------------------------------------------------------------------------------------
// Load

async function drive(spec: LoadSpec): Promise<LoadResult> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/bench/driver.js'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`driver exited ${code}`);
  return JSON.parse(out) as LoadResult;
}

interface ProxyFigures {
  name: string;
  maxRps: number;
  maxErrors: number;
  cpuPer1k: number;
  at1k: LoadResult;
  at5k: LoadResult;
  peakRssMb: number;
}

async function measureProxy(t: Target, path_: string, bodyFile: string, headers: Record<string, string>): Promise<ProxyFigures> {
  const base = { url: t.url, path: path_, bodyFile, headers, connections: 64 };
  log(`${t.name}: warm-up`);
  await drive({ ...base, mode: 'rate', rate: 300, durationMs: 1000 });
  log(`${t.name}: max throughput (closed loop, 32 in flight, 3 s)`);
  const cpu0 = cpuSeconds(t.pids());
  const max = await drive({ ...base, mode: 'max', concurrency: 32, durationMs: 3000 });
  const cpu = cpuSeconds(t.pids()) - cpu0;
  log(`${t.name}: ${max.rps.toFixed(0)} req/s, ${max.errors} errors; open loop at 1k rps (3 s)`);
  const at1k = await drive({ ...base, mode: 'rate', rate: 1000, durationMs: 3000 });
  log(`${t.name}: open loop at 5k rps (2 s)`);
  const at5k = await drive({ ...base, mode: 'rate', rate: 5000, durationMs: 2000 });
  return {
    name: t.name,
    maxRps: max.rps,
    maxErrors: max.errors,
    cpuPer1k: max.ok > 0 ? (cpu / max.ok) * 1000 : NaN,
    at1k,
    at5k,
    peakRssMb: peakRssMb(t.pids()),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

async function prepareModels(work: string): Promise<{ dir: string; image: string }> {
  const dir = path.join(work, 'models');
  await mkdir(dir, { recursive: true });
  await copyFile(path.join(MODELS, 'iris-v1.onnx'), path.join(dir, 'iris-v1.onnx'));
  await copyFile(path.join(MODELS, 'mlp-large.onnx'), path.join(dir, 'mlp-large-v1.onnx'));
  const image = path.join(work, 'image.onnx');
  await writeFile(image, buildIdentityModel([{ name: 'pixels', outputName: 'pixels_out', elemType: 'FP32', shape: ['batch', 3, 224, 224] }]));
  return { dir, image };
}

/** The gateway with every feature on: cached JWT verification, a rate limit that never triggers, breakers, a 90/10 split. */
function gatewayConfig(port: number, direct: string): Record<string, unknown> {
  const remote = { kind: 'http', url: direct, model: 'iris', version: '1' };
  return {
    server: { host: '127.0.0.1', port },
    logging: { level: 'warn' },
    admin: { enabled: false },
    reload: { watch: false },
    auth: { realm: 'bench', issuers: [{ issuer: 'model-gateway-dev', audiences: ['model-gateway'], algorithms: ['ES256'], jwks: { file: JWKS } }] },
    rateLimits: { rules: [{ name: 'per-caller', key: { claim: 'sub' }, ratePerSecond: 1_000_000, burst: 1_000_000 }] },
    models: {
      iris: { versions: { a: { backend: remote }, b: { backend: remote } }, weights: { a: 90, b: 10 } },
    },
  };
}

/** A second gateway for the tensor-encoding figures: the image model in-process, so the gateway decodes and encodes. */
function imageGatewayConfig(port: number, image: string): Record<string, unknown> {
  return {
    server: { host: '127.0.0.1', port },
    logging: { level: 'warn' },
    admin: { enabled: false },
    reload: { watch: false },
    models: { image: { versions: { '1': { backend: { kind: 'onnx', path: image } } } } },
  };
}

interface BatchingFigures {
  batching: 'off' | 'on';
  rps: number;
  p99Us: number;
  loopP99Ms: number;
  loopMaxMs: number;
}

async function measureBatching(dir: string, bodyFile: string, on: boolean): Promise<BatchingFigures> {
  const port = await freePort();
  const args = [path.join(ROOT, 'dist/bench/loop-probe.js'), dir, String(port), ...(on ? ['32', '500'] : [])];
  const { child, match } = await spawnReady(`serve-model (batching ${on ? 'on' : 'off'})`, process.execPath, args, /ready (\S+)/);
  const url = match[1]!;
  const base: LoadSpec = {
    url,
    path: '/v2/models/mlp-large/versions/1/infer',
    bodyFile,
    headers: { 'content-type': 'application/json' },
    connections: 32,
    mode: 'max',
    concurrency: 32,
    durationMs: 1000,
  };
  await drive(base);
  const report = (): Promise<{ p99Ms: number; maxMs: number }> =>
    new Promise((resolve) => {
      let buf = '';
      const onData = (d: Buffer) => {
        buf += d.toString();
        const line = buf.split('\n').find((l) => l.startsWith('{'));
        if (line) {
          child.stdout!.off('data', onData);
          resolve(JSON.parse(line) as { p99Ms: number; maxMs: number });
        }
      };
      child.stdout!.on('data', onData);
      child.stdin!.write('report\n');
    });
  await report();
  log(`mlp-large, batching ${on ? 'on' : 'off'}: closed loop, 32 in flight, 4 s`);
  const load = await drive({ ...base, durationMs: 4000 });
  const loop = await report();
  child.kill('SIGTERM');
  return { batching: on ? 'on' : 'off', rps: load.rps, p99Us: load.p99Us, loopP99Ms: loop.p99Ms, loopMaxMs: loop.maxMs };
}

interface BinaryFigures {
  encoding: 'JSON' | 'binary';
  requestBytes: number;
  responseBytes: number;
  gatewayCpuMsPerRequest: number;
}

async function measureEncoding(gateway: Target, binary: boolean): Promise<BinaryFigures> {
  const n = 3 * 224 * 224;
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = Math.round(((i * 7919) % 2000) - 1000) / 1000;
  const url = `${gateway.url}/v2/models/image/infer`;
  let body: Buffer;
  const headers: Record<string, string> = {};
  if (binary) {
    const raw = Buffer.from(values.buffer);
    const head = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'pixels', shape: [1, 3, 224, 224], datatype: 'FP32', parameters: { binary_data_size: raw.length } }],
        parameters: { binary_data_output: true },
      }),
    );
    body = Buffer.concat([head, raw]);
    headers['inference-header-content-length'] = String(head.length);
    headers['content-type'] = 'application/octet-stream';
  } else {
    body = Buffer.from(JSON.stringify({ inputs: [{ name: 'pixels', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(values) }] }));
    headers['content-type'] = 'application/json';
  }
  const once = async (): Promise<number> => {
    const res = await fetch(url, { method: 'POST', body, headers });
    const bytes = (await res.arrayBuffer()).byteLength;
    if (res.status !== 200) throw new Error(`image ${binary ? 'binary' : 'JSON'}: status ${res.status}`);
    return bytes;
  };
  for (let i = 0; i < 3; i++) await once();
  // At least 20 requests and 2 s: CPU time comes in clock ticks (10 ms), so a fast encoding needs many requests for
  // its per-request figure to mean anything.
  const cpu0 = cpuSeconds(gateway.pids());
  const started = Date.now();
  let responseBytes = 0;
  let rounds = 0;
  while (rounds < 20 || Date.now() - started < 2_000) {
    responseBytes = await once();
    rounds++;
  }
  const cpu = cpuSeconds(gateway.pids()) - cpu0;
  return { encoding: binary ? 'binary' : 'JSON', requestBytes: body.length, responseBytes, gatewayCpuMsPerRequest: (cpu / rounds) * 1000 };
}

// ---------------------------------------------------------------------------------------------------------------
// Report

const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const ms = (us: number): string => f(us / 1000, 2);

function markdown(meta: Record<string, string>, proxies: ProxyFigures[], batching: BatchingFigures[], encodings: BinaryFigures[]): string {
  const direct = proxies.find((p) => p.name === 'direct')!;
  const fastify = proxies.find((p) => p.name === 'fastify');
  const lines = [
    `Run ${meta.date} on ${meta.machine}; ${meta.node}; load avg at start ${meta.load}. Loopback, one driver process, every process on the same cores — figures are noisy.`,
    '',
    '| target | max req/s | × direct | Δp50 @1k | Δp99 @1k | Δp50 @5k | Δp99 @5k | errors (max/1k/5k) | CPU-s / 1k req | peak RSS MB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of proxies) {
    const self = p.name === 'direct';
    lines.push(
      `| ${p.name} | ${f(p.maxRps)} | ${f(p.maxRps / direct.maxRps, 2)} | ${self ? ms(p.at1k.p50Us) : ms(p.at1k.p50Us - direct.at1k.p50Us)} | ${self ? ms(p.at1k.p99Us) : ms(p.at1k.p99Us - direct.at1k.p99Us)} | ${self ? ms(p.at5k.p50Us) : ms(p.at5k.p50Us - direct.at5k.p50Us)} | ${self ? ms(p.at5k.p99Us) : ms(p.at5k.p99Us - direct.at5k.p99Us)} | ${p.maxErrors}/${p.at1k.errors}/${p.at5k.errors} | ${f(p.cpuPer1k, 3)} | ${f(p.peakRssMb)} |`,
    );
  }
  lines.push(
    '',
    'Latency columns are ms; for `direct` they are its own p50/p99, for the others the added latency over direct (open loop, measured from the intended send time).',
  );
  const gw = proxies.find((p) => p.name === 'gateway');
  if (gw) {
    lines.push('', '| target (gateway) | figure | goal |', '|---|---:|---|');
    lines.push(`| Δp99 at 1k rps | ${ms(gw.at1k.p99Us - direct.at1k.p99Us)} ms | ≤ 1 ms |`);
    lines.push(`| max RPS vs direct | ${f(gw.maxRps / direct.maxRps, 2)}× | ≥ 0.45× |`);
    if (fastify) lines.push(`| max RPS vs fastify | ${f(gw.maxRps / fastify.maxRps, 2)}× | ≥ 1.5× |`);
    lines.push(`| CPU per 1k requests | ${f(gw.cpuPer1k, 3)} s | ≤ 0.12 s |`, `| peak RSS | ${f(gw.peakRssMb)} MB | ≤ 150 MB |`);
  }
  if (batching.length === 2) {
    const [off, on] = batching as [BatchingFigures, BatchingFigures];
    lines.push('', '| mlp-large, 1 row, 32 in flight, 1 worker | req/s | p99 ms | event-loop p99 ms | event-loop max ms |', '|---|---:|---:|---:|---:|');
    for (const b of batching) lines.push(`| batching ${b.batching} | ${f(b.rps)} | ${ms(b.p99Us)} | ${f(b.loopP99Ms, 2)} | ${f(b.loopMaxMs, 2)} |`);
    lines.push(`| on / off | ${f(on.rps / off.rps, 2)}× (goal ≥ 2.5×) | | (goal < 5 ms) | |`);
  }
  if (encodings.length === 2) {
    const [json, bin] = encodings as [BinaryFigures, BinaryFigures];
    lines.push(
      '',
      '| 1×3×224×224 FP32 through the gateway (in-process identity) | request bytes | response bytes | gateway CPU ms / request |',
      '|---|---:|---:|---:|',
    );
    for (const e of encodings) lines.push(`| ${e.encoding} | ${e.requestBytes} | ${e.responseBytes} | ${f(e.gatewayCpuMsPerRequest, 2)} |`);
    lines.push(
      `| JSON / binary | ${f((json.requestBytes + json.responseBytes) / (bin.requestBytes + bin.responseBytes), 1)}× bytes (goal ≥ 4×) | | ${f(json.gatewayCpuMsPerRequest / bin.gatewayCpuMsPerRequest, 1)}× CPU (goal ≥ 20×) |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadAtStart = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const work = await mkdtemp(path.join(os.tmpdir(), 'mg-bench-'));
  const { dir, image } = await prepareModels(work);
  const token = await mintToken(['--scope', 'iris:infer', '--ttl', '1h', '--sub', 'bench']);
  const irisBody = path.join(work, 'iris.json');
  await writeFile(irisBody, JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] }));
  const mlpBody = path.join(work, 'mlp.json');
  await writeFile(
    mlpBody,
    JSON.stringify({
      inputs: [{ name: 'input', shape: [1, 512], datatype: 'FP32', data: Array.from({ length: 512 }, (_, i) => Math.round(Math.sin(i) * 1e4) / 1e4) }],
    }),
  );

  log('starting the direct backend (serve-model)');
  const directPort = await freePort();
  const d = await spawnReady(
    'serve-model',
    process.execPath,
    [CLI, 'serve-model', '--model-dir', dir, '--port', String(directPort), '--log-level', 'warn'],
    /serve-model ready on (\S+)/,
  );
  const direct: Target = { name: 'direct', url: d.match[1]!, child: d.child, pids: () => [d.child.pid!] };

  log('starting the gateway');
  const gwConfig = path.join(work, 'gateway.yaml');
  await writeFile(gwConfig, JSON.stringify(gatewayConfig(await freePort(), direct.url)));
  const g = await spawnReady('gateway', process.execPath, [CLI, 'start', '--config', gwConfig], /model-gateway ready on (\S+)/);
  const gateway: Target = { name: 'gateway', url: g.match[1]!, child: g.child, pids: () => [g.child.pid!] };

  const peers: Target[] = [];
  const nginxBin = ensureNginx();
  if (nginxBin) peers.push(await startNginx(nginxBin, work, direct.url));
  const hp = await spawnReady(
    'http-proxy',
    process.execPath,
    [path.join(ROOT, 'dist/bench/peers/http-proxy.js'), String(await freePort()), direct.url],
    /ready (\S+)/,
  );
  peers.push({ name: 'http-proxy', url: hp.match[1]!, child: hp.child, pids: () => [hp.child.pid!] });
  const irisPath = '/v2/models/iris/versions/1/infer';
  const fy = await spawnReady(
    'fastify',
    process.execPath,
    [path.join(ROOT, 'dist/bench/peers/fastify.js'), String(await freePort()), direct.url, JWKS, irisPath, irisPath],
    /ready (\S+)/,
  );
  peers.push({ name: 'fastify', url: fy.match[1]!, child: fy.child, pids: () => [fy.child.pid!] });

  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  const proxies: ProxyFigures[] = [];
  proxies.push(await measureProxy(direct, irisPath, irisBody, headers));
  proxies.push(await measureProxy(gateway, '/v2/models/iris/infer', irisBody, headers));
  for (const p of peers) proxies.push(await measureProxy(p, p.name === 'fastify' ? '/v2/models/iris/infer' : irisPath, irisBody, headers));
  for (const p of peers) p.child.kill('SIGTERM');

  gateway.child.kill('SIGTERM');
  direct.child.kill('SIGTERM');

  log('JSON vs binary tensors through a gateway serving an identity model in-process');
  const imageConfig = path.join(work, 'image-gateway.yaml');
  await writeFile(imageConfig, JSON.stringify(imageGatewayConfig(await freePort(), image)));
  const ig = await spawnReady('image gateway', process.execPath, [CLI, 'start', '--config', imageConfig], /model-gateway ready on (\S+)/);
  const imageGateway: Target = { name: 'image gateway', url: ig.match[1]!, child: ig.child, pids: () => [ig.child.pid!] };
  const encodings = [await measureEncoding(imageGateway, false), await measureEncoding(imageGateway, true)];
  imageGateway.child.kill('SIGTERM');

  const batching = [await measureBatching(dir, mlpBody, false), await measureBatching(dir, mlpBody, true)];

  const cpus = os.cpus();
  const meta = {
    date: new Date().toISOString(),
    machine: `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${os.platform()} ${os.release()}`,
    node: `Node ${process.version}`,
    load: loadAtStart,
    durationS: ((Date.now() - started) / 1000).toFixed(0),
  };
  const report = markdown(meta, proxies, batching, encodings);
  const outDir = path.join(ROOT, 'bench/results');
  await mkdir(outDir, { recursive: true });
  const stamp = meta.date.replace(/[:.]/g, '-');
  await writeFile(path.join(outDir, `bench-${stamp}.json`), `${JSON.stringify({ meta, proxies, batching, encodings }, null, 2)}\n`);
  await writeFile(path.join(outDir, `bench-${stamp}.md`), report);
  process.stdout.write(`\n${report}\nwritten to bench/results/bench-${stamp}.{json,md} (${meta.durationS} s)\n`);
}

main().then(
  () => stopAll(),
  (err: unknown) => {
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    stopAll();
    process.exitCode = 1;
  },
);
