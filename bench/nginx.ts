// nginx for the bench: the fixed OIP backend ("direct") and the reverse-proxy peer — pure config builders, starters, hit counts.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort, processTree, start, waitForPort, type Proc } from './proc.js';

/** The backend's fixed answers: an iris-like classifier, FP32 [1,3] probabilities and an INT64 [1] label. */
export const INFER_RESPONSE = (model: string): string =>
  JSON.stringify({
    model_name: model,
    model_version: '1',
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [1, 3], data: [0.9147, 0.0792, 0.0061] },
      { name: 'label', datatype: 'INT64', shape: [1], data: [0] },
    ],
  });

export const MODEL_METADATA = (model: string): string =>
  JSON.stringify({
    name: model,
    versions: ['1'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
      { name: 'label', datatype: 'INT64', shape: [-1] },
    ],
  });

export interface NginxCommon {
  prefix: string;
  port: number;
  workers: number;
  /** Master runs as root: keep workers as root too so they can write the prefix dir. */
  root: boolean;
}

function head(c: NginxCommon): string {
  return `worker_processes ${c.workers};
daemon off;
master_process on;
pid ${c.prefix}/nginx.pid;
error_log ${c.prefix}/error.log warn;
${c.root ? 'user root;' : ''}
events { worker_connections 4096; }
http {
  client_body_temp_path ${c.prefix}/body; proxy_temp_path ${c.prefix}/proxy;
  fastcgi_temp_path ${c.prefix}/fcgi; uwsgi_temp_path ${c.prefix}/uwsgi; scgi_temp_path ${c.prefix}/scgi;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_max_body_size 16m;`;
}

/** nginx's single-quoted string: backslash and quote escaped. */
const q = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * The backend: OIP REST answered from the config with `return` (nginx refuses POST to static files). `accessLog`: a
 * file of "METHOD URI STATUS" lines (buffered) for per-path counts; unset: access_log off.
 */
export function backendConfig(c: NginxCommon & { accessLog?: string }): string {
  // The model name is a regex capture put into the answer; the JSON around it is fixed text.
  const [inferA, inferB] = INFER_RESPONSE('__M__').split('__M__') as [string, string];
  const [metaA, metaB] = MODEL_METADATA('__M__').split('__M__') as [string, string];
  const model = '(?<m>[A-Za-z0-9_.-]+)';
  const version = '(?:/versions/[A-Za-z0-9_.-]+)?';
  return `${head(c)}
  ${c.accessLog ? `log_format hits '$request_method $uri $status';\n  access_log ${c.accessLog} hits buffer=64k flush=200ms;` : 'access_log off;'}
  default_type application/json;
  server {
    listen 127.0.0.1:${c.port} backlog=4096;
    location = /v2/health/ready { return 200 ''; }
    location = /v2/health/live { return 200 ''; }
    location = /v2 { return 200 ${q(JSON.stringify({ name: 'bench-backend', version: '1', extensions: [] }))}; }
    location ~ ^/v2/models/${model}${version}/infer$ { return 200 ${q(`${inferA}$m${inferB}`)}; }
    location ~ ^/v2/models/${model}${version}/ready$ { return 200 ''; }
    location ~ ^/v2/models/${model}${version}$ { return 200 ${q(`${metaA}$m${metaB}`)}; }
    location / { return 404 '{"error":"not found"}'; }
  }
}
`;
}

/** nginx as a plain reverse proxy with upstream keep-alive. */
export function proxyConfig(c: NginxCommon & { upstream: string; keepalive: number }): string {
  const up = new URL(c.upstream);
  return `${head(c)}
  access_log off;
  upstream backend { server ${up.hostname}:${up.port}; keepalive ${c.keepalive}; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${c.port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
`;
}

export function findNginx(): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/usr/local/nginx/sbin']) {
    const file = path.join(dir, 'nginx');
    if (existsSync(file)) return file;
  }
  return undefined;
}

export function nginxVersion(bin: string): string {
  // nginx -v writes to stderr
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  return `${r.stderr ?? ''}${r.stdout ?? ''}`.trim() || 'unknown';
}

export interface RunningNginx {
  proc: Proc;
  url: string;
  prefix: string;
  pids(): number[];
}

export const NGINX_WORKERS = 1;

async function launch(bin: string, name: string, prefix: string, conf: string, port: number, core: string | undefined): Promise<RunningNginx> {
  await mkdir(prefix, { recursive: true, mode: 0o777 });
  const file = path.join(prefix, 'nginx.conf');
  await writeFile(file, conf);
  execFileSync(bin, ['-t', '-q', '-p', prefix, '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  const proc = start(name, bin, ['-p', prefix, '-c', file], core === undefined ? {} : { core });
  await waitForPort(port);
  // The worker(s) must exist before CPU and memory are read.
  for (let i = 0; i < 100 && processTree(proc.pid).length < 1 + NGINX_WORKERS; i++) await new Promise((r) => setTimeout(r, 10));
  return { proc, url: `http://127.0.0.1:${port}`, prefix, pids: () => processTree(proc.pid) };
}

export async function startBackend(bin: string, name: string, prefix: string, options: { accessLog?: string; core?: string }): Promise<RunningNginx> {
  const port = await freePort();
  const conf = backendConfig({
    prefix,
    port,
    workers: NGINX_WORKERS,
    root: process.getuid?.() === 0,
    ...(options.accessLog ? { accessLog: options.accessLog } : {}),
  });
  return launch(bin, name, prefix, conf, port, options.core);
}

export async function startProxy(bin: string, name: string, prefix: string, upstream: string, core: string | undefined): Promise<RunningNginx> {
  const port = await freePort();
  const conf = proxyConfig({ prefix, port, workers: NGINX_WORKERS, root: process.getuid?.() === 0, upstream, keepalive: 64 });
  return launch(bin, name, prefix, conf, port, core);
}

/** Counts "POST <uri> <status>" lines of an access log from byte `from` on: uri → hits (2xx only) and the new offset. */
export function countHits(file: string, from: number): { hits: Record<string, number>; offset: number; non2xx: number } {
  const size = existsSync(file) ? statSync(file).size : 0;
  if (size <= from) return { hits: {}, offset: size, non2xx: 0 };
  return { ...parseHits(readFileSync(file).subarray(from, size).toString('utf8')), offset: size };
}

/** Pure part of countHits: the access-log text → POST hits per uri, and the count of non-2xx POSTs. */
export function parseHits(text: string): { hits: Record<string, number>; non2xx: number } {
  const hits: Record<string, number> = {};
  let non2xx = 0;
  for (const line of text.split('\n')) {
    const [method, uri, status] = line.split(' ');
    if (method !== 'POST' || uri === undefined) continue;
    if (!status?.startsWith('2')) non2xx++;
    else hits[uri] = (hits[uri] ?? 0) + 1;
  }
  return { hits, non2xx };
}
