// Soak and fault run: a real gateway process under steady load for N seconds while its dependencies fail and recover,
// ending with SIGTERM under load; prints a report (statuses, unanswered requests, resets, p99, RSS) and fails on regressions.
//
//   npm run soak -- [--seconds 60] [--concurrency 4]

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { remoteModels, startRecordingBackend } from '../test/e2e/hardening-recorder.js';
import { MODELS, irisRequest, spawnGateway, writeConfigFile } from '../test/helpers/gateway.js';
import { closedPort, ecKey, switchableJwks, tokenFor } from '../test/helpers/jwt.js';
import { percentile, startLoad, type Sample } from '../test/helpers/load.js';
import { startRedis, REDIS_BIN, type RedisServer } from '../test/helpers/redis.js';
import { spawnServeModel, type ServeModelProcess } from '../test/helpers/serve-model.js';
import { writeFile } from 'node:fs/promises';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, concurrency: { type: 'string', default: '4' } }, strict: true });
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
if (!Number.isFinite(SECONDS) || SECONDS < 10 || !Number.isInteger(CONCURRENCY) || CONCURRENCY < 1 || CONCURRENCY > 64) {
  process.stderr.write('usage: soak [--seconds N (>= 10)] [--concurrency 1..64]\n');
  process.exit(2);
}
const DRAIN_DELAY_MS = 2_000;
const SHUTDOWN_TIMEOUT_MS = 15_000;
/** The emulated mesh stops routing to the gateway this long after its readiness fails. */
const PROPAGATION_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const ISS = 'https://soak-idp.example';
const AUD = 'model-gateway';
const key = ecKey('soak-1');
const token = () => {
  const now = Math.floor(Date.now() / 1000);
  return tokenFor(key, { iss: ISS, aud: AUD, sub: 'soak', scope: 'iris:infer', iat: now, exp: now + 3600 });
};

interface Event {
  atS: number;
  what: string;
}

async function main(): Promise<number> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const events: Event[] = [];
  const t0 = performance.now();
  const mark = (what: string) => {
    events.push({ atS: (performance.now() - t0) / 1000, what });
    process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${what}\n`);
  };
  try {
    const redis: RedisServer | undefined = REDIS_BIN ? await startRedis() : undefined;
    if (redis) cleanups.push(() => redis.stop());
    const jwks = switchableJwks(await closedPort(), [key.jwk]);
    cleanups.push(() => jwks.down());
    const runtimePort = await closedPort();
    const runtimeArgs = ['--model-dir', MODELS, '--port', String(runtimePort), '--log-level', 'warn'];
    let runtime: ServeModelProcess = await spawnServeModel(runtimeArgs);
    cleanups.push(() => runtime.stop('SIGKILL'));
    const shadow = await startRecordingBackend();
    cleanups.push(() => shadow.close());
    shadow.setDelay(600_000); // metadata answers, inference hangs: a hung shadow

    const models = remoteModels({ '1': runtime.url, '3': shadow.url });
    const iris = models.iris as { versions: Record<string, unknown> };
    const config = (weights: Record<string, number>) => ({
      server: { host: '127.0.0.1', port: 0, drainDelayMs: DRAIN_DELAY_MS, shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS },
      // On for its /metrics (V8 heap figures for the report).
      admin: { host: '127.0.0.1', port: 0, token: 'soak-admin-token-0123456789abcdef' },
      logging: { level: 'error', accessLog: { enabled: false } },
      auth: { issuers: [{ issuer: ISS, audiences: [AUD], algorithms: ['ES256'], jwks: { url: jwks.url, cooldownMs: 1_000, timeoutMs: 500 } }] },
      rateLimits: {
        ...(redis ? { store: { kind: 'redis', url: redis.url } } : {}),
        rules: [{ name: 'per-tenant', key: { header: 'x-tenant' }, ratePerSecond: 100_000, burst: 100_000, failureMode: 'open' }],
      },
      models: {
        iris: {
          defaultVersion: '1',
          versions: { '1': iris.versions['1'], '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } }, '3': iris.versions['3'] },
          weights,
          fallback: '2',
          shadow: { targets: [{ version: '3', percent: 20 }], timeoutMs: 500, maxConcurrent: 4 },
          auth: { infer: { scopes: ['iris:infer'] } },
        },
      },
    });
    const file = await writeConfigFile(config({ '1': 50, '2': 50 }));
    mark('JWKS endpoint down at start');
    const gw = await spawnGateway(file);
    cleanups.push(() => gw.stop('SIGKILL'));
    const pid = gw.child.pid!;
    const rssAtStart = rssMiB(pid);
    mark(`gateway pid ${pid} ready at ${gw.url}`);

    let issued = 0;
    const boundaries: { index: number; what: string }[] = [];
    const phase = (what: string) => {
      boundaries.push({ index: issued, what });
      mark(what);
    };
    const bearer = `Bearer ${token()}`;
    const body = JSON.stringify(irisRequest());
    const load = startLoad({
      url: `${gw.url}/v2/models/iris/infer`,
      body: (i) => {
        issued = i + 1;
        return body;
      },
      headers: (i) => ({ authorization: bearer, 'x-tenant': `t${i % 8}` }),
      concurrency: CONCURRENCY,
      maxRequests: 10_000_000,
    });
    phase('load started (JWKS down: requests fail closed with 401)');

    const loadStarted = performance.now();
    const rssSeries: number[] = [];
    const heapSeries: number[] = [];
    const adminUrl = /admin API on (http:\/\/\S+)/.exec(gw.stderr())?.[1];
    const heapMiB = async (): Promise<number> => {
      if (adminUrl === undefined) return NaN;
      const text = await fetch(`${adminUrl}/metrics`).then((r) => r.text(), () => '');
      const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
      return m ? Number(m[1]) / 2 ** 20 : NaN;
    };
    const sampler = setInterval(() => {
      rssSeries.push(rssMiB(pid));
      void heapMiB().then((h) => heapSeries.push(h));
    }, 5_000);
    cleanups.push(async () => clearInterval(sampler));
    // The run is two identical fault cycles. The first warms every path (JIT, the fallback's ONNX arenas, Redis
    // reconnection, the local buckets); RSS is then compared across the second, where a leak would show.
    const cycleMs = (SECONDS * 1000) / 2;
    const cycle = async (n: number) => {
      const begun = performance.now();
      const at = (fraction: number) => sleep(begun + fraction * cycleMs - performance.now());
      if (n === 1) {
        await at(0.1);
        await jwks.up();
        phase('JWKS endpoint up');
      }
      await at(0.15);
      await writeFile(file, stringify(config({ '1': 80, '2': 20 })));
      phase(`cycle ${n}: config reload, weights 80/20`);
      await at(0.2);
      await runtime.stop('SIGKILL');
      phase(`cycle ${n}: remote runtime killed (SIGKILL)`);
      await at(0.35);
      runtime = await spawnServeModel(runtimeArgs);
      phase(`cycle ${n}: remote runtime restarted`);
      await at(0.45);
      await writeFile(file, stringify(config({ '1': 20, '2': 80 })));
      phase(`cycle ${n}: config reload, weights 20/80`);
      if (redis) {
        await at(0.5);
        await redis.stop();
        phase(`cycle ${n}: Redis stopped`);
        await at(0.6);
        await redis.start();
        phase(`cycle ${n}: Redis restarted`);
      }
      await at(0.65);
      // No reload during this outage: a reload builds a new auth stage whose key source starts empty (see README).
      await jwks.down();
      phase(`cycle ${n}: JWKS endpoint down (cached keys keep serving)`);
      await at(0.8);
      await jwks.up();
      phase(`cycle ${n}: JWKS endpoint up again`);
      await at(0.85);
      await writeFile(file, stringify(config({ '1': 50, '2': 50 })));
      phase(`cycle ${n}: config reload, weights 50/50`);
      await at(1);
    };
    await cycle(1);
    const rssAfterWarmup = rssMiB(pid);
    const warmupSamples = rssSeries.length;
    mark(`RSS after the warm-up cycle ${rssAfterWarmup.toFixed(1)} MiB`);
    await cycle(2);
    const rssAtEnd = rssMiB(pid);
    clearInterval(sampler);
    mark(`RSS at end ${rssAtEnd.toFixed(1)} MiB`);

    // SIGTERM under load, with the mesh emulated: routing stops PROPAGATION_MS after readiness fails.
    phase('SIGTERM under load');
    const signalled = performance.now();
    gw.child.kill('SIGTERM');
    let notReadyMs = NaN;
    while (performance.now() - signalled < 3_000) {
      const ready = await fetch(`${gw.url}/v2/health/ready`).then((r) => r.status, () => 0);
      if (ready === 503) {
        notReadyMs = performance.now() - signalled;
        break;
      }
      await sleep(50);
    }
    await sleep(notReadyMs + PROPAGATION_MS - (performance.now() - signalled));
    const result = await load.stop();
    const code = await gw.exited;
    const exitMs = performance.now() - signalled;
    mark(`gateway exited with ${code} after ${Math.round(exitMs)} ms`);

    const report = summarise(result.samples, boundaries, {
      seconds: SECONDS,
      concurrency: CONCURRENCY,
      rssAtStart,
      rssAfterWarmup,
      rssAtEnd,
      notReadyMs,
      exitMs,
      exitCode: code,
      redis: redis !== undefined,
      shadowsHung: shadow.infers.length,
      rssSeries,
      heapSeries,
      warmupSamples,
    });
    process.stdout.write(report.text);
    return report.ok ? 0 : 1;
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

const RESET = /ECONNRESET|UND_ERR_SOCKET|other side closed|socket hang up|EPIPE/;

function tally(samples: readonly Sample[]): string {
  const counts: Record<string, number> = {};
  for (const s of samples) counts[String(s.status)] = (counts[String(s.status)] ?? 0) + 1;
  return Object.entries(counts)
    .map(([k, v]) => `${k === '0' ? 'none' : k}: ${v}`)
    .join(', ');
}

function summarise(
  samples: Sample[],
  boundaries: { index: number; what: string }[],
  facts: { seconds: number; concurrency: number; rssAtStart: number; rssAfterWarmup: number; rssAtEnd: number; notReadyMs: number; exitMs: number; exitCode: number | null; redis: boolean; shadowsHung: number; rssSeries: number[]; heapSeries: number[]; warmupSamples: number },
): { ok: boolean; text: string } {
  const byIndex = [...samples].sort((a, b) => a.index - b.index);
  const unanswered = samples.filter((s) => s.status === 0);
  const resets = unanswered.filter((s) => RESET.test(s.body));
  const ms = samples.map((s) => s.ms);
  // One RSS reading lands anywhere in V8's GC sawtooth (heap used swings by tens of MiB within seconds), so the pass
  // criterion compares the peaks of the two cycles: a leak raises the second cycle's peak over the first's.
  const peak1 = Math.max(...facts.rssSeries.slice(0, facts.warmupSamples), facts.rssAfterWarmup);
  const peak2 = Math.max(...facts.rssSeries.slice(facts.warmupSamples), facts.rssAtEnd);
  const growth = (peak2 - peak1) / peak1;
  const pointGrowth = (facts.rssAtEnd - facts.rssAfterWarmup) / facts.rssAfterWarmup;
  const lines = [
    `## Soak report (${new Date().toISOString().slice(0, 10)}, ${facts.seconds} s, concurrency ${facts.concurrency}, Node ${process.version})`,
    '',
    '| figure | value |',
    '|---|---|',
    `| requests sent | ${samples.length} |`,
    `| responses by status | ${tally(samples)} |`,
    `| requests without any response | ${unanswered.length} |`,
    `| connection resets | ${resets.length} |`,
    `| latency p50 / p99 / max | ${percentile(ms, 0.5).toFixed(1)} / ${percentile(ms, 0.99).toFixed(1)} / ${ms.reduce((a, b) => (b > a ? b : a), 0).toFixed(1)} ms |`,
    `| RSS at start / after the first (warm-up) cycle / at end | ${facts.rssAtStart.toFixed(1)} / ${facts.rssAfterWarmup.toFixed(1)} / ${facts.rssAtEnd.toFixed(1)} MiB |`,
    `| RSS peak of cycle 1 / cycle 2, growth | ${peak1.toFixed(1)} / ${peak2.toFixed(1)} MiB, ${(growth * 100).toFixed(1)}% |`,
    `| RSS end of cycle 1 → end of cycle 2 (single readings) | ${(pointGrowth * 100).toFixed(1)}% |`,
    `| RSS every 5 s of load | ${facts.rssSeries.map((r) => r.toFixed(0)).join(', ')} MiB |`,
    `| V8 heap used every 5 s | ${facts.heapSeries.map((r) => r.toFixed(0)).join(', ')} MiB |`,
    `| SIGTERM: readiness 503 after / exit after / exit code | ${Math.round(facts.notReadyMs)} ms / ${Math.round(facts.exitMs)} ms / ${facts.exitCode} |`,
    `| shadow calls sent to the hung shadow (each cut at 500 ms) | ${facts.shadowsHung} |`,
    '',
    '| phase | requests | statuses | p99 |',
    '|---|---|---|---|',
  ];
  for (let i = 0; i < boundaries.length; i++) {
    const from = boundaries[i]!.index;
    const to = boundaries[i + 1]?.index ?? Infinity;
    const inPhase = byIndex.filter((s) => s.index >= from && s.index < to);
    if (inPhase.length === 0) continue;
    lines.push(`| ${boundaries[i]!.what} | ${inPhase.length} | ${tally(inPhase)} | ${percentile(inPhase.map((s) => s.ms), 0.99).toFixed(1)} ms |`);
  }
  if (!facts.redis) lines.push('', 'Redis scenario skipped: redis-server not found.');
  const failures: string[] = [];
  if (unanswered.length > 0) failures.push(`${unanswered.length} requests without a response (first: ${unanswered[0]!.body.slice(0, 200)})`);
  if (resets.length > 0) failures.push(`${resets.length} connection resets`);
  if (!(growth < 0.1)) failures.push(`RSS peak grew ${(growth * 100).toFixed(1)}% from cycle 1 to cycle 2 (limit 10%)`);
  if (!(facts.notReadyMs <= 1_000)) failures.push(`readiness failed after ${facts.notReadyMs} ms (limit 1000)`);
  if (facts.exitCode !== 0 || !(facts.exitMs < SHUTDOWN_TIMEOUT_MS)) failures.push(`exit ${facts.exitCode} after ${Math.round(facts.exitMs)} ms (deadline ${SHUTDOWN_TIMEOUT_MS})`);
  lines.push('', failures.length === 0 ? 'PASS' : `FAIL:\n- ${failures.join('\n- ')}`, '');
  return { ok: failures.length === 0, text: lines.join('\n') };
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
