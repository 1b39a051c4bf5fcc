// The bench's targets (direct nginx, gateway ×2, fastify, http-proxy, nginx proxy): their configs and how each is started.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startBackend, startProxy } from './nginx.js';
import { freePort, processTree, start, stop, TARGET_CORE, waitFor, type Proc } from './proc.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'dist/src/cli.js');
export const JWKS = path.join(ROOT, 'examples/dev-keys/jwks.json');
const GC_PROBE = path.join(ROOT, 'dist/bench/gc-probe.js');

/** The backend's two model versions, as two distinct paths. */
export const PATH_A = '/v2/models/iris-a/infer';
export const PATH_B = '/v2/models/iris-b/infer';
/** What the split targets are asked for. */
export const PATH_SPLIT = '/v2/models/iris/infer';

export const TARGET_NAMES = ['direct', 'gateway-all', 'gateway-noauth', 'fastify', 'http-proxy', 'nginx-proxy'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export const DESCRIPTIONS: Record<TargetName, string> = {
  direct: 'the nginx backend itself (fixed OIP answers), no proxy',
  'gateway-all': 'model-gateway: JWT ES256 (token cache on), scope check, per-sub rate limit (never triggers), breakers, 90/10 split, metrics',
  'gateway-noauth': 'model-gateway: auth and rate limits off; breakers, 90/10 split, metrics',
  fastify: 'fastify + @fastify/jwt (ES256, verify cache on) + scope check + @fastify/rate-limit + @fastify/reply-from, 90/10 split',
  'http-proxy': 'http-proxy with a keep-alive agent, no checks, one path',
  'nginx-proxy': 'nginx reverse proxy, upstream keep-alive 64, one path',
};

/** The gateway's logging in the bench (stated in the report). */
export const GATEWAY_LOGGING = { level: 'warn' } as const;
export const GATEWAY_LOGGING_NOTE =
  'logging.level: warn; logging.accessLog left at its defaults (enabled, sampleRate 1) — access lines are info-level, so at warn they are dropped before serialisation; tracing: no OTLP endpoint (no spans)';

export interface RunningTarget {
  name: TargetName;
  /** node or nginx: GC figures exist only for node. */
  kind: 'node' | 'nginx';
  url: string;
  /** The path the drivers send to. */
  path: string;
  /** Backend paths it must reach, with the expected share of each. */
  expect: Record<string, number>;
  /** Every pid whose CPU and memory count (nginx: master and workers). */
  pids(): number[];
  /** The GC probe's report file (node targets). */
  gcFile?: string;
  gcPid?: number;
  /** Time from spawn to ready, ms. */
  readyMs: number;
  /** Admin URL (gateway), for the metrics check. */
  adminUrl?: string;
  stop(): Promise<void>;
}

export interface TargetContext {
  nginx: string;
  work: string;
  /** The shared backend (counts per-path hits) the proxies talk to. */
  backend: string;
  round: number;
  adminToken: string;
  /** Extra Node/V8 flags for the gateway targets (`--gateway-node-options`), e.g. a smaller young generation. */
  gatewayNodeOptions?: string;
}

/** The gateway's config for the bench (pure). `auth`: JWT, scope and rate limit on; else both off. */
export function gatewayConfig(o: { port: number; backend: string; auth: boolean; jwks: string; adminToken: string }): Record<string, unknown> {
  // 64 upstream connections per version, as the peers get (the default is 32); everything else at its default.
  const version = (model: string): Record<string, unknown> => ({ backend: { kind: 'http', url: o.backend, model, validate: 'remote', connections: 64 } });
  return {
    server: { host: '127.0.0.1', port: o.port, drainDelayMs: 0, grpc: { enabled: false } },
    logging: GATEWAY_LOGGING,
    admin: { host: '127.0.0.1', port: 0, token: o.adminToken },
    telemetry: { metrics: { enabled: true } },
    ...(o.auth
      ? {
          auth: { realm: 'bench', issuers: [{ issuer: 'model-gateway-dev', audiences: ['model-gateway'], algorithms: ['ES256'], jwks: { file: o.jwks } }] },
          rateLimits: { rules: [{ name: 'per-caller', key: { claim: 'sub' }, ratePerSecond: 1_000_000, burst: 1_000_000 }] },
        }
      : {}),
    models: {
      iris: {
        ...(o.auth ? { auth: { infer: { scopes: ['iris:infer'] } } } : {}),
        versions: { a: version('iris-a'), b: version('iris-b') },
        weights: { a: 90, b: 10 },
      },
    },
  };
}

/** NODE_OPTIONS for a node target: the GC probe preloaded (and `nodeOptions`); the bench's own env otherwise, minus OTLP variables. */
export function nodeEnv(gcFile: string, extra: Record<string, string> = {}, nodeOptions = ''): NodeJS.ProcessEnv {
  const probe = `--import=${new URL(`file://${GC_PROBE}`).href}`;
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, BENCH_GC_FILE: gcFile, NODE_OPTIONS: nodeOptions ? `${probe} ${nodeOptions}` : probe };
  for (const k of Object.keys(env)) if (k.startsWith('OTEL_')) delete env[k];
  delete env.MODEL_GATEWAY_ADMIN_TOKEN;
  return env;
}

async function nodeTarget(
  name: TargetName,
  args: string[],
  ready: RegExp,
  ctx: TargetContext,
  p: { path: string; expect: Record<string, number> },
  extraEnv: Record<string, string> = {},
  nodeOptions = '',
): Promise<RunningTarget> {
  const gcFile = path.join(ctx.work, `gc-${name}-${ctx.round}-${Date.now()}.json`);
  const t0 = performance.now();
  const proc = start(name, process.execPath, args, { core: TARGET_CORE, env: nodeEnv(gcFile, extraEnv, nodeOptions) });
  const m = await waitFor(proc, ready);
  const readyMs = performance.now() - t0;
  const admin = /admin API on (\S+)/.exec(proc.output())?.[1];
  return {
    name,
    kind: 'node',
    url: m[1]!,
    path: p.path,
    expect: p.expect,
    pids: () => [proc.pid],
    gcFile,
    gcPid: proc.pid,
    readyMs,
    ...(admin ? { adminUrl: admin } : {}),
    // SIGINT: the gateway stops without its SIGTERM drain delay.
    stop: () => stop(proc, 'SIGINT'),
  };
}

function nginxTarget(name: TargetName, proc: Proc, url: string, readyMs: number, p: { path: string; expect: Record<string, number> }): RunningTarget {
  return { name, kind: 'nginx', url, path: p.path, expect: p.expect, pids: () => processTree(proc.pid), readyMs, stop: () => stop(proc, 'SIGTERM') };
}

const split = { path: PATH_SPLIT, expect: { [PATH_A]: 0.9, [PATH_B]: 0.1 } };
const single = { path: PATH_A, expect: { [PATH_A]: 1 } };

export async function startTarget(name: TargetName, ctx: TargetContext): Promise<RunningTarget> {
  switch (name) {
    case 'direct': {
      const t0 = performance.now();
      const n = await startBackend(ctx.nginx, 'direct', path.join(ctx.work, `direct-${ctx.round}`), { core: TARGET_CORE });
      // Nothing reaches the shared backend: its hits are its own (access log off to keep it fast).
      return nginxTarget(name, n.proc, n.url, performance.now() - t0, { path: PATH_A, expect: {} });
    }
    case 'gateway-all':
    case 'gateway-noauth': {
      const file = path.join(ctx.work, `${name}.yaml`);
      const config = gatewayConfig({ port: await freePort(), backend: ctx.backend, auth: name === 'gateway-all', jwks: JWKS, adminToken: ctx.adminToken });
      // JSON is YAML: the config loader reads it as is.
      await writeFile(file, JSON.stringify(config, null, 2));
      return nodeTarget(
        name,
        [CLI, 'start', '--config', file],
        /model-gateway ready on (\S+)[\s\S]*?(?:admin API on \S+|admin API off)/,
        ctx,
        split,
        {},
        ctx.gatewayNodeOptions,
      );
    }
    case 'fastify':
      return nodeTarget(
        name,
        [path.join(ROOT, 'dist/bench/peers/fastify.js'), String(await freePort()), ctx.backend, JWKS, PATH_A, PATH_B],
        /ready (\S+)/,
        ctx,
        split,
      );
    case 'http-proxy':
      return nodeTarget(name, [path.join(ROOT, 'dist/bench/peers/http-proxy.js'), String(await freePort()), ctx.backend], /ready (\S+)/, ctx, single);
    case 'nginx-proxy': {
      const t0 = performance.now();
      const n = await startProxy(ctx.nginx, 'nginx-proxy', path.join(ctx.work, `nginx-proxy-${ctx.round}`), ctx.backend, TARGET_CORE);
      return nginxTarget(name, n.proc, n.url, performance.now() - t0, single);
    }
  }
}
