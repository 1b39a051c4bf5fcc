// Fault tests with real processes and sockets: a runtime killed under load (breaker, fallback, recovery), a hung backend
// (504 at the deadline, no socket growth), a backend answering 400s (breaker stays closed), and load beyond the cap.

import test from 'ava';

// test.serial throughout: these tests measure timing (deadlines, time to open) on the event loop the in-process
// gateway shares with the test itself, so they must not overlap with each other's load.
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import type { BreakerState } from '../../src/resilience/breaker.js';
import type { VersionGuard } from '../../src/resilience/guard.js';
import { MODELS, gatewayConfig, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { errorText, loadFigures, reportLoad, rssMiB } from '../helpers/load.js';
import { spawnServeModel, type ServeModelProcess } from '../helpers/serve-model.js';
import { startHoldingBackend, startHungServer } from '../helpers/upstreams.js';

const V1 = { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } };
const INFER = JSON.stringify(irisRequest());

/** Resolves on the guard's next change to `state`; rejects after `timeoutMs` (a ref'd timer, so the loop stays alive). */
function nextState(guard: VersionGuard, state: BreakerState, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`breaker did not become ${state} within ${timeoutMs} ms (now ${guard.snapshot().breaker.state})`));
    }, timeoutMs);
    const off = guard.onBreakerStateChange((s) => {
      if (s !== state) return;
      clearTimeout(timer);
      off();
      resolve(performance.now());
    });
  });
}

interface Sample {
  at: number;
  /** Latency of the request, ms. */
  ms: number;
  status: number;
  version: string | null;
  fallback: string | null;
  error?: string;
}

/** Steady closed-loop load: `workers` clients each sending one request after another until stopped (bounded). */
function steadyLoad(url: string, workers: number, maxRequests: number) {
  const samples: Sample[] = [];
  const waiters: { check: () => boolean; resolve: () => void }[] = [];
  let stopped = false;
  let sent = 0;
  const notify = () => {
    for (const w of waiters.filter((w) => w.check())) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const worker = async () => {
    while (!stopped && sent < maxRequests) {
      sent++;
      const started = performance.now();
      try {
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: INFER, signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        const at = performance.now();
        samples.push({ at, ms: at - started, status: res.status, version: res.headers.get('x-model-version'), fallback: res.headers.get('x-model-fallback') });
      } catch (err) {
        const at = performance.now();
        // errorText keeps fetch's cause (the socket error), so a reset is told apart from a timeout.
        samples.push({ at, ms: at - started, status: 0, version: null, fallback: null, error: errorText(err) });
      }
      notify();
    }
  };
  const done = Promise.all(Array.from({ length: workers }, worker));
  return {
    samples,
    /** Resolves once `count` samples after `since` satisfy `match`. */
    until(match: (s: Sample) => boolean, count: number, since = 0, timeoutMs = 15_000): Promise<void> {
      const check = () => samples.filter((s) => s.at >= since && match(s)).length >= count;
      if (check()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`load: fewer than ${count} matching responses within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ check, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    async stop() {
      stopped = true;
      await done;
    },
  };
}

test.serial(
  'the remote is killed under steady load: zero non-2xx answers (calls that got no answer are re-served by the fallback), the breaker opens after consecutive connection failures, and it closes after the restart',
  async (t) => {
    let runtime: ServeModelProcess = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--log-level', 'silent']);
    t.teardown(() => runtime.stop('SIGKILL'));
    const windowMs = 2_000;
    const gw = await startTestGateway(
      gatewayConfig({
        models: {
          iris: {
            fallback: '1',
            timeoutMs: 2_000,
            versions: {
              '1': V1,
              '2': {
                backend: { kind: 'http', url: runtime.url, version: '2', connectTimeoutMs: 500 },
                breaker: { volumeThreshold: 5, errorThresholdPercent: 50, windowMs, windowBuckets: 10, resetTimeoutMs: 500 },
              },
            },
          },
        },
      }),
    );
    t.teardown(() => gw.stop());
    const guard = gw.guards.get('iris', '2')!;
    const rssAtStart = rssMiB(); // in-process gateway: the test process's RSS
    const load = steadyLoad(`${gw.url}/v2/models/iris/versions/2/infer`, 4, 20_000);
    t.teardown(() => load.stop());

    await load.until((s) => s.status === 200 && s.version === '2', 20);
    const opened = nextState(guard, 'open', 10_000);
    const killedAt = performance.now();
    runtime.child.kill('SIGKILL');
    await runtime.exited;
    const openedAt = await opened;
    await load.until((s) => s.fallback === '2', 20, openedAt);

    const closed = nextState(guard, 'closed', 20_000);
    runtime = await spawnServeModel(['--model-dir', MODELS, '--port', String(runtime.port), '--log-level', 'silent']);
    const restartedAt = performance.now();
    const closedAt = await closed;
    await load.until((s) => s.status === 200 && s.version === '2' && s.fallback === null, 20, closedAt);
    await load.stop();

    const samples = load.samples;
    const outcomes = samples.map((s) => ({ status: s.status, ms: s.ms, body: s.error ?? '' }));
    reportLoad(
      t,
      'remote killed and restarted under load',
      loadFigures(outcomes, { startMiB: rssAtStart, endMiB: rssMiB(), of: 'the test process (in-process gateway)' }),
    );
    const unanswered = samples.filter((s) => s.status === 0);
    t.deepEqual(unanswered, [], 'every request got an HTTP response');
    // The calls in flight at the kill and the refused connections before the breaker opened got no answer from the
    // runtime: each was re-served by the fallback, so no client saw the crash.
    const failed = samples.filter((s) => s.status !== 200);
    t.deepEqual(
      failed.map((s) => `${s.status} ${s.error ?? ''}`),
      [],
    );
    const reServed = samples.filter((s) => s.fallback !== null && s.at <= openedAt);
    const fallbacks = samples.filter((s) => s.fallback !== null);
    t.true(
      fallbacks.every((s) => s.fallback === '2' && s.version === '1' && s.status === 200),
      'fallback answers come from version 1 and say so',
    );
    // Consecutive connection failures (5 by default) open it at once, well inside one window.
    t.true(openedAt - killedAt <= windowMs / 2, `breaker opened ${(openedAt - killedAt).toFixed(0)} ms after the kill; the window is ${windowMs} ms`);
    t.like(guard.snapshot().breaker, { state: 'closed' });
    t.true(guard.snapshot().breaker.opened >= 1);
    t.log(
      `${samples.length} requests: ${samples.length - failed.length} × 200 (${fallbacks.length} by the fallback, ${reServed.length} of them re-served calls that got no answer before the breaker opened), ${failed.length} errors ` +
        `(${[...new Set(failed.map((s) => s.status))].join('/')}); breaker open ${(openedAt - killedAt).toFixed(0)} ms after the kill, ` +
        `closed ${(closedAt - restartedAt).toFixed(0)} ms after the restarted runtime was ready (opened ${guard.snapshot().breaker.opened}×)`,
    );
  },
);

test.serial('a hung backend: 504 at the deadline, the sockets are closed again, timeouts count and open the breaker', async (t) => {
  const hung = await startHungServer();
  t.teardown(() => hung.close());
  const deadlineMs = 400;
  const connections = 4;
  const gw = await startTestGateway(
    gatewayConfig({
      models: {
        stuck: {
          timeoutMs: deadlineMs,
          versions: {
            '1': {
              backend: { kind: 'http', url: hung.url, connections, probeTimeoutMs: 100, probeIntervalMs: 60_000, keepAliveTimeoutMs: 500 },
              breaker: { volumeThreshold: 12, resetTimeoutMs: 60_000 },
            },
          },
        },
      },
    }),
  );
  t.teardown(() => gw.stop());
  await hung.whenOpenAtMost(0);
  const elapsed: number[] = [];
  for (let wave = 0; wave < 3; wave++) {
    const replies = await Promise.all(
      Array.from({ length: connections }, async () => {
        const started = performance.now();
        const res = await postJson(`${gw.url}/v2/models/stuck/versions/1/infer`, irisRequest());
        elapsed.push(performance.now() - started);
        return res;
      }),
    );
    for (const r of replies) {
      t.is(r.status, 504);
      t.regex(String(r.body.error), /model 'stuck' did not answer within its deadline of 400 ms/);
    }
    // Every aborted call's socket is destroyed; undici's idle replacement closes after keepAliveTimeoutMs.
    await hung.whenOpenAtMost(0, 5_000);
  }
  t.true(Math.min(...elapsed) >= deadlineMs - 5, `a 504 came before the deadline: ${Math.min(...elapsed)} ms`);
  // The stage races its own timer, so a 504 leaves at the deadline; the allowance is for a busy 2-core CI machine.
  t.true(Math.max(...elapsed) < deadlineMs + 600, `a 504 came long after the deadline: ${Math.max(...elapsed)} ms`);
  t.true(hung.maxOpen() <= connections, `at most ${connections} sockets at once, saw ${hung.maxOpen()}`);
  t.is(hung.requests('POST'), 3 * connections, 'each request sent once: timeouts are never retried');

  const refused = await postJson(`${gw.url}/v2/models/stuck/versions/1/infer`, irisRequest());
  t.is(refused.status, 503);
  t.truthy(refused.headers.get('retry-after'));
  t.regex(String(refused.body.error), /circuit breaker is open/);
  t.is(hung.requests('POST'), 3 * connections, 'an open breaker sends nothing');
  t.log(
    `504 after ${Math.min(...elapsed).toFixed(0)}–${Math.max(...elapsed).toFixed(0)} ms (deadline ${deadlineMs} ms); ${hung.accepted()} connections accepted, at most ${hung.maxOpen()} open at once, 0 left open`,
  );
});

test.serial('a backend answering 400s never opens the breaker (as the admin API shows)', async (t) => {
  const runtime = await spawnServeModel(['--model-dir', MODELS, '--port', '0', '--log-level', 'silent']);
  t.teardown(() => runtime.stop('SIGKILL'));
  const token = 'fault-test-admin-token';
  const gw = await startTestGateway(
    gatewayConfig({
      admin: { token },
      models: {
        iris: {
          fallback: '1',
          versions: { '1': V1, '2': { backend: { kind: 'http', url: runtime.url, version: '2' }, breaker: { volumeThreshold: 5, errorThresholdPercent: 1 } } },
        },
      },
    }),
  );
  t.teardown(() => gw.stop());
  const bad = { inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] };
  for (let round = 0; round < 10; round++) {
    const replies = await Promise.all(Array.from({ length: 4 }, () => postJson(`${gw.url}/v2/models/iris/versions/2/infer`, bad)));
    for (const r of replies) {
      t.is(r.status, 400);
      t.is(r.headers.get('x-model-fallback'), null);
      t.regex(String(r.body.error), /shape \[1,3\] does not match the model's \[-1,4\]/);
    }
  }
  const admin = await fetch(`${gw.admin!.url}/admin/models`, { headers: { authorization: `Bearer ${token}` } });
  t.is(admin.status, 200);
  const view = (await admin.json()) as { resilience: Record<string, Record<string, { breaker: unknown; limits: unknown }>> };
  t.like(view.resilience.iris!['2']!, { breaker: { state: 'closed', opened: 0, window: { requests: 40, failures: 0 } }, limits: { inFlight: 0, shed: 0 } });
  t.like(view.resilience.iris!['1']!, { breaker: { state: 'closed' } });
  t.like(await postJson(`${gw.url}/v2/models/iris/versions/2/infer`, irisRequest()), { status: 200, body: { model_version: '2' } });
});

test.serial('an in-process ONNX version past its deadline: 504 for the running call (abandoned) and the queued one (dropped), slots freed', async (t) => {
  const gw = await startTestGateway(
    gatewayConfig({ models: { mlp: { timeoutMs: 5, versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'mlp-large.onnx') } } } } } }),
  );
  t.teardown(() => gw.stop());
  // ~1 GMAC per call: far longer than the 5 ms deadline on any CPU.
  const rows = 1024;
  const big = { inputs: [{ name: 'input', shape: [rows, 512], datatype: 'FP32', data: new Array(rows * 512).fill(0.25) }] };
  const [running, queued] = await Promise.all([postJson(`${gw.url}/v2/models/mlp/infer`, big), postJson(`${gw.url}/v2/models/mlp/infer`, big)]);
  for (const r of [running, queued]) {
    t.is(r.status, 504);
    t.regex(String(r.body.error), /model 'mlp' did not answer within its deadline of 5 ms/);
  }
  t.like(gw.guards.get('mlp', '1')!.snapshot().limits, { inFlight: 0 });
});

/** A promise that resolves once tick() has been called `n` times. */
function countdown(n: number): { tick(): void; reached: Promise<void> } {
  let left = n;
  let resolve!: () => void;
  const reached = new Promise<void>((r) => (resolve = r));
  if (left <= 0) resolve();
  return {
    tick() {
      if (--left === 0) resolve();
    },
    reached,
  };
}

const beyondCap = test.macro({
  async exec(t, maxQueue: number) {
    const backend = await startHoldingBackend();
    t.teardown(() => backend.close());
    const cap = 4;
    const offered = 12;
    const gw = await startTestGateway(
      gatewayConfig({
        models: {
          held: { versions: { '1': { backend: { kind: 'http', url: backend.url }, limits: { maxConcurrent: cap, maxQueue, maxQueueWaitMs: 60_000 } } } },
        },
      }),
    );
    t.teardown(() => gw.stop());
    const refusedCount = offered - cap - maxQueue;
    const answered: Awaited<ReturnType<typeof postJson>>[] = [];
    const refusals = countdown(refusedCount);
    const replies = Array.from({ length: offered }, () =>
      postJson(`${gw.url}/v2/models/held/infer`, irisRequest()).then((r) => {
        answered.push(r);
        refusals.tick();
        return r;
      }),
    );
    await backend.whenHolding(cap);
    await refusals.reached;
    // The refusals came while the admitted requests were still held by the backend: nothing waited for capacity.
    t.is(backend.inFlight(), cap);
    t.is(backend.received(), cap);
    t.is(answered.length, refusedCount);
    for (const r of answered) {
      t.is(r.status, 503);
      t.is(r.headers.get('retry-after'), '1');
      t.regex(String(r.body.error), new RegExp(`model held version 1 is at its limit of ${cap} concurrent requests`));
    }
    t.like(gw.guards.get('held', '1')!.snapshot().limits, { inFlight: cap, queued: maxQueue, shed: refusedCount });
    backend.releaseAll();
    const all = await Promise.all(replies);
    t.is(all.filter((r) => r.status === 200).length, cap + maxQueue);
    t.is(all.filter((r) => r.status === 503).length, refusedCount);
    t.is(backend.maxInFlight(), cap, 'the backend never saw more than the cap');
    t.is(backend.received(), cap + maxQueue);
    t.log(
      `${offered} offered at once, cap ${cap}, queue ${maxQueue}: ${refusedCount} shed with 503 while ${cap} were in flight; backend max in flight ${backend.maxInFlight()}`,
    );
  },
  title: (_ = '', maxQueue: number) =>
    `load beyond the concurrency cap (queue ${maxQueue}): fast 503s with Retry-After, and the backend never sees more than the cap`,
});
test.serial(beyondCap, 0);
test.serial(beyondCap, 2);
