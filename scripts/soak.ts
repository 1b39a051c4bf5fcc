// Soak and fault run: a real gateway process under steady load while its dependencies fail and recover, ending with
// SIGTERM under load; prints a report (statuses, unanswered requests, resets, p99, RSS) and fails on regressions.
//
//   npm run soak -- [--seconds 60] [--cycles 2] [--warmup S] [--concurrency 4]
//
// The run, in order:
//   warm-up    one fault cycle, not measured (default: as long as one cycle of the window). It warms every path the
//              window uses: the JWKS endpoint down at start and coming up, the fallback's ONNX session taking all of
//              the killed runtime's traffic, Redis reconnection and the local buckets, reloads.
//   window     --seconds (default 60) of --cycles (default 2) identical fault cycles. RSS is read when it starts and
//              when it ends (under the same load, before SIGTERM), each time right after a full garbage collection
//              asked for over the gateway's inspector (loopback); the RSS growth criterion compares these two.
//   SIGTERM    under load, with the mesh emulated; a few seconds (the drain delay, then the exit).
// So the default run takes about 30 + 60 + 3 s, plus start-up.
//
// Flags:
//   --seconds N      length of the measured window, s (>= 10; default 60)
//   --cycles K       fault cycles in the window, each N/K s long (1..10, each >= 5 s; default 2)
//   --warmup S       length of the warm-up cycle, s (>= 5; default N/K)
//   --concurrency C  keep-alive connections sending requests back to back (1..64; default 4)
//
// It fails (exit 1) on any request without a response, any connection reset, RSS growth over the window of 10% or
// more, readiness slower than 1 s after SIGTERM, or an exit after the deadline (or with a non-zero code).

import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { remoteModels, startRecordingBackend } from '../test/e2e/hardening-recorder.js';
import { MODELS, irisRequest, spawnGateway, writeConfigFile } from '../test/helpers/gateway.js';
import { closedPort, ecKey, switchableJwks, tokenFor } from '../test/helpers/jwt.js';
import { formatStatuses, percentile, RESET, rssMiB, startLoad, type Sample } from '../test/helpers/load.js';
import { startRedis, REDIS_BIN, type RedisServer } from '../test/helpers/redis.js';
import { spawnServeModel, type ServeModelProcess } from '../test/helpers/serve-model.js';
import { writeFile } from 'node:fs/promises';
import { WebSocket } from 'undici';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    cycles: { type: 'string', default: '2' },
    warmup: { type: 'string' },
    concurrency: { type: 'string', default: '4' },
  },
  strict: true,
});
const SECONDS = Number(values.seconds);
const CYCLES = Number(values.cycles);
const CYCLE_S = SECONDS / CYCLES;
const WARMUP_S = values.warmup === undefined ? CYCLE_S : Number(values.warmup);
const CONCURRENCY = Number(values.concurrency);
if (
  !Number.isFinite(SECONDS) ||
  SECONDS < 10 ||
  !Number.isInteger(CYCLES) ||
  CYCLES < 1 ||
  CYCLES > 10 ||
  !(CYCLE_S >= 5) ||
  !Number.isFinite(WARMUP_S) ||
  WARMUP_S < 5 ||
  !Number.isInteger(CONCURRENCY) ||
  CONCURRENCY < 1 ||
  CONCURRENCY > 64
) {
  process.stderr.write('usage: soak [--seconds N (>= 10)] [--cycles K (1..10, N/K >= 5)] [--warmup S (>= 5)] [--concurrency 1..64]\n');
  process.exit(2);
}
const DRAIN_DELAY_MS = 2_000;
const SHUTDOWN_TIMEOUT_MS = 15_000;
/** The emulated mesh stops routing to the gateway this long after its readiness fails. */
const PROPAGATION_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

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
      server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, drainDelayMs: DRAIN_DELAY_MS, shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS },
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
    // The inspector (loopback only) lets the RSS readings of the window be taken after a full garbage collection.
    const gw = await spawnGateway(file, [], ['--inspect=127.0.0.1:0']);
    cleanups.push(() => gw.stop('SIGKILL'));
    const pid = gw.child.pid!;
    const rssAtGatewayStart = rssMiB(pid);
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
    phase('warm-up: load started (JWKS down: requests fail closed with 401)');

    const rssSeries: number[] = [];
    const heapSeries: number[] = [];
    const adminUrl = /admin API on (http:\/\/\S+)/.exec(gw.stderr())?.[1];
    const heapMiB = async (): Promise<number> => {
      if (adminUrl === undefined) return NaN;
      const text = await fetch(`${adminUrl}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
      return m ? Number(m[1]) / 2 ** 20 : NaN;
    };
    const sampler = setInterval(() => {
      rssSeries.push(rssMiB(pid));
      void heapMiB().then((h) => heapSeries.push(h));
    }, 5_000);
    cleanups.push(async () => clearInterval(sampler));
    // One fault cycle, `name` in the phase table; the JWKS endpoint is down when the run starts and comes up in the
    // warm-up. Every cycle ends in the same state it started in (weights 50/50, everything up).
    const cycle = async (name: string, lengthMs: number) => {
      const begun = performance.now();
      const at = (fraction: number) => sleep(begun + fraction * lengthMs - performance.now());
      if (name === 'warm-up') {
        await at(0.1);
        await jwks.up();
        phase('warm-up: JWKS endpoint up');
      }
      await at(0.15);
      await writeFile(file, stringify(config({ '1': 80, '2': 20 })));
      phase(`${name}: config reload, weights 80/20`);
      await at(0.2);
      await runtime.stop('SIGKILL');
      phase(`${name}: remote runtime killed (SIGKILL)`);
      await at(0.35);
      runtime = await spawnServeModel(runtimeArgs);
      phase(`${name}: remote runtime restarted`);
      await at(0.45);
      await writeFile(file, stringify(config({ '1': 20, '2': 80 })));
      phase(`${name}: config reload, weights 20/80`);
      if (redis) {
        await at(0.5);
        await redis.stop();
        phase(`${name}: Redis stopped`);
        await at(0.6);
        await redis.start();
        phase(`${name}: Redis restarted`);
      }
      await at(0.65);
      // The JWKS endpoint goes down while its keys are cached: verification keeps serving from the last good key set.
      await jwks.down();
      phase(`${name}: JWKS endpoint down (cached keys keep serving)`);
      await at(0.8);
      await jwks.up();
      phase(`${name}: JWKS endpoint up again`);
      await at(0.85);
      await writeFile(file, stringify(config({ '1': 50, '2': 50 })));
      phase(`${name}: config reload, weights 50/50`);
      await at(1);
    };
    await cycle('warm-up', WARMUP_S * 1000);

    // The measured window: RSS at its start and at its end, both read at the same point of a cycle under the same
    // load, so what the warm-up grew (first use of every path) is not counted and what keeps growing is.
    const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(gw.stderr())?.[1];
    if (!inspector) throw new Error('the gateway did not open its inspector');
    const rssAtWindowStart = await rssAfterGc(inspector, pid);
    const windowSamples = rssSeries.length;
    const windowStart = issued;
    phase(`window: starts (RSS ${rssAtWindowStart.toFixed(1)} MiB)`);
    for (let n = 1; n <= CYCLES; n++) await cycle(`cycle ${n}`, CYCLE_S * 1000);
    const rssAtWindowEnd = await rssAfterGc(inspector, pid);
    clearInterval(sampler);
    mark(`window: ends (RSS ${rssAtWindowEnd.toFixed(1)} MiB)`);
    const sigtermStart = issued;

    // SIGTERM under load, with the mesh emulated: routing stops PROPAGATION_MS after readiness fails.
    phase('SIGTERM under load');
    const signalled = performance.now();
    gw.child.kill('SIGTERM');
    let notReadyMs = NaN;
    while (performance.now() - signalled < 3_000) {
      const ready = await fetch(`${gw.url}/v2/health/ready`).then(
        (r) => r.status,
        () => 0,
      );
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
      rssAtGatewayStart,
      rssAtWindowStart,
      rssAtWindowEnd,
      windowStart,
      sigtermStart,
      notReadyMs,
      exitMs,
      exitCode: code,
      redis: redis !== undefined,
      shadowsHung: shadow.infers.length,
      rssSeries,
      heapSeries,
      windowSamples,
    });
    process.stdout.write(report.text);
    return report.ok ? 0 : 1;
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

interface Facts {
  rssAtGatewayStart: number;
  rssAtWindowStart: number;
  rssAtWindowEnd: number;
  /** Index of the first request of the measured window, and of the SIGTERM phase. */
  windowStart: number;
  sigtermStart: number;
  notReadyMs: number;
  exitMs: number;
  exitCode: number | null;
  redis: boolean;
  shadowsHung: number;
  /** RSS and V8 heap used every 5 s from the start of the load; the window's readings begin at `windowSamples`. */
  rssSeries: number[];
  heapSeries: number[];
  windowSamples: number;
}

function summarise(samples: Sample[], boundaries: { index: number; what: string }[], facts: Facts): { ok: boolean; text: string } {
  const byIndex = [...samples].sort((a, b) => a.index - b.index);
  const unanswered = samples.filter((s) => s.status === 0);
  const resets = unanswered.filter((s) => RESET.test(s.body));
  const ms = samples.map((s) => s.ms);
  const count = (from: number, to: number) => samples.filter((s) => s.index >= from && s.index < to).length;
  // The criterion: RSS at the end of the measured window against its start (both under load, before SIGTERM).
  const growth = (facts.rssAtWindowEnd - facts.rssAtWindowStart) / facts.rssAtWindowStart;
  // For information: single readings land anywhere in V8's GC sawtooth, so the peaks (every 5 s) are printed too.
  const peakWarmup = Math.max(...facts.rssSeries.slice(0, facts.windowSamples), facts.rssAtWindowStart);
  const peakWindow = Math.max(...facts.rssSeries.slice(facts.windowSamples), facts.rssAtWindowEnd);
  const series = (values: number[]) =>
    [values.slice(0, facts.windowSamples), values.slice(facts.windowSamples)].map((part) => part.map((r) => r.toFixed(0)).join(', ')).join(' ‖ ');
  const lines = [
    `## Soak report (${new Date().toISOString().slice(0, 10)}, warm-up ${WARMUP_S} s + window ${SECONDS} s of ${CYCLES} cycle(s), concurrency ${CONCURRENCY}, Node ${process.version})`,
    '',
    '| figure | value |',
    '|---|---|',
    `| requests sent (warm-up / window / SIGTERM phase) | ${samples.length} (${count(0, facts.windowStart)} / ${count(facts.windowStart, facts.sigtermStart)} / ${count(facts.sigtermStart, Infinity)}) |`,
    `| responses by status | ${formatStatuses(samples)} |`,
    `| requests without any response | ${unanswered.length} |`,
    `| connection resets | ${resets.length} |`,
    `| latency p50 / p99 / max | ${percentile(ms, 0.5).toFixed(1)} / ${percentile(ms, 0.99).toFixed(1)} / ${ms.reduce((a, b) => (b > a ? b : a), 0).toFixed(1)} ms |`,
    `| RSS at gateway start / window start / window end (before SIGTERM) | ${facts.rssAtGatewayStart.toFixed(1)} / ${facts.rssAtWindowStart.toFixed(1)} / ${facts.rssAtWindowEnd.toFixed(1)} MiB |`,
    `| **RSS growth over the ${SECONDS} s window** (limit 10%) | ${(growth * 100).toFixed(1)}% |`,
    `| RSS peak, warm-up / window (5 s samples) | ${peakWarmup.toFixed(1)} / ${peakWindow.toFixed(1)} MiB |`,
    `| RSS every 5 s (warm-up ‖ window) | ${series(facts.rssSeries)} MiB |`,
    `| V8 heap used every 5 s (warm-up ‖ window) | ${series(facts.heapSeries)} MiB |`,
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
    lines.push(
      `| ${boundaries[i]!.what} | ${inPhase.length} | ${formatStatuses(inPhase)} | ${percentile(
        inPhase.map((s) => s.ms),
        0.99,
      ).toFixed(1)} ms |`,
    );
  }
  if (!facts.redis) lines.push('', 'Redis scenario skipped: redis-server not found.');
  const failures: string[] = [];
  if (unanswered.length > 0) failures.push(`${unanswered.length} requests without a response (first: ${unanswered[0]!.body.slice(0, 200)})`);
  if (resets.length > 0) failures.push(`${resets.length} connection resets`);
  if (!(growth < 0.1)) failures.push(`RSS grew ${(growth * 100).toFixed(1)}% over the measured window (limit 10%)`);
  if (!(facts.notReadyMs <= 1_000)) failures.push(`readiness failed after ${facts.notReadyMs} ms (limit 1000)`);
  if (facts.exitCode !== 0 || !(facts.exitMs < SHUTDOWN_TIMEOUT_MS))
    failures.push(`exit ${facts.exitCode} after ${Math.round(facts.exitMs)} ms (deadline ${SHUTDOWN_TIMEOUT_MS})`);
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

/**
 * The gateway's RSS after a full garbage collection (asked for over its inspector, the DevTools protocol's
 * HeapProfiler.collectGarbage) and a short settle: a single reading under load lands anywhere in V8's sawtooth — the
 * heap swings by tens of MiB between collections — so without this, start and end compare two random points of it.
 */
async function rssAfterGc(inspectorUrl: string, pid: number): Promise<number> {
  const ws = new WebSocket(inspectorUrl);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot reach the gateway's inspector at ${inspectorUrl}`)), { once: true });
  });
  try {
    for (let id = 1; id <= 2; id++) {
      const done = new Promise<void>((resolve) => {
        const onMessage = (event: { data: unknown }) => {
          if ((JSON.parse(String(event.data)) as { id?: number }).id !== id) return;
          ws.removeEventListener('message', onMessage);
          resolve();
        };
        ws.addEventListener('message', onMessage);
      });
      ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      await done;
    }
  } finally {
    ws.close();
  }
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  return rssMiB(pid);
}
