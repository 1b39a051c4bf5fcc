// Rollout failover: a candidate chosen by weight that fails is answered by stable (x-model-fallback) and counted
// against the candidate; pinned requests, 4xx answers, the shadow phase and an aborted rollout are never diverted.
// First through a real in-process gateway (ONNX iris, v2 failing on purpose), then the upstream stage on its own.

import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import type { Backend } from '../../src/backends/backend.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { RunningGateway } from '../../src/app/gateway.js';
import type { BackendFactory } from '../../src/models/catalog.js';
import type { Reply } from '../../src/pipeline/stage.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../../src/protocol/oip.js';
import { RolloutSignals } from '../../src/rollout/signals.js';
import { createLogger } from '../../src/telemetry/log.js';
import { faultInjectingFactory, type FaultyBackend } from '../helpers/fault-backend.js';
import { MODELS, gatewayConfig, irisRequest, postJson, startTestGateway } from '../helpers/gateway.js';
import { replyJson, answer, upstreamUnit } from '../helpers/upstream-unit.js';
import { TEST_ROLLOUT } from '../helpers/rollout.js';
import { ManualClock } from '../helpers/manual-clock.js';

const log = createLogger('silent');

const ROLLOUT = TEST_ROLLOUT;

/** Route and shadow dice: 0 picks stable at 95/5, 0.999 picks the candidate (r = 99 ≥ 95); both mirror stable. */
const STABLE = 0;
const CANDIDATE = 0.999;

/** Passes calls through to the wrapped backend, or refuses them with a 400 (a candidate that rejects the input). */
class RefusingBackend implements Backend {
  readonly kind: string;
  refused = 0;
  /** While true the backend says it is not ready, and calls fail as an unloaded ONNX backend's do (503). */
  notReady = false;
  constructor(
    readonly inner: Backend,
    readonly refusing: { on: boolean },
  ) {
    this.kind = inner.kind;
  }
  start(): Promise<void> {
    return this.inner.start();
  }
  metadata(): BackendMetadata {
    return this.inner.metadata();
  }
  ready(): boolean {
    return !this.notReady && this.inner.ready();
  }
  infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
    if (this.notReady) return Promise.reject(new GatewayError('GW_ERR_MODEL_NOT_READY', 'the candidate has no running worker'));
    if (this.refusing.on) {
      this.refused++;
      return Promise.reject(new GatewayError('GW_ERR_INVALID_REQUEST', 'the candidate does not take this input'));
    }
    return this.inner.infer(request, signal);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Setup {
  gw: RunningGateway;
  clock: ManualClock;
  dice: { value: number };
  refusing: { on: boolean };
  /** The live backend of a version (the FaultyBackend the factory made last). */
  backend(version: '1' | '2'): FaultyBackend;
  refuser(): RefusingBackend;
}

async function start(t: ExecutionContext, options: { gates?: Record<string, unknown>; v2?: Record<string, unknown> } = {}): Promise<Setup> {
  const raw = gatewayConfig({
    models: {
      iris: {
        versions: {
          '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
          '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') }, ...options.v2 },
        },
        override: { enabled: true },
        rollout: { ...ROLLOUT, gates: { ...ROLLOUT.gates, ...options.gates } },
      },
    },
  });
  const faults = faultInjectingFactory({ 'iris/2': { fail: true } }, log);
  const refusing = { on: false };
  const refusers: RefusingBackend[] = [];
  const factory: BackendFactory = (model, version, config) => {
    const backend = faults.factory(model, version, config);
    if (version !== '2') return backend;
    const refuser = new RefusingBackend(backend, refusing);
    refusers.push(refuser);
    return refuser;
  };
  const clock = new ManualClock();
  const dice = { value: STABLE };
  const gw = await startTestGateway(raw, { backendFactory: factory, rolloutClock: clock, rng: () => dice.value });
  t.teardown(() => gw.stop());
  return { gw, clock, dice, refusing, backend: (v) => faults.made.get(`iris/${v}`)!.at(-1)!, refuser: () => refusers.at(-1)! };
}

const infer = (gw: RunningGateway, suffix = '/v2/models/iris/infer', body: unknown = irisRequest(), headers: Record<string, string> = {}) =>
  postJson(`${gw.url}${suffix}`, body, headers);

/** The candidate's (or stable's) samples this replica holds for the rollout: calls, errors and timed calls. */
async function samples(gw: RunningGateway, side: 'candidate' | 'stable' = 'candidate'): Promise<{ calls: number; errors: number; timed: number }> {
  await gw.controller.shadow.idle();
  const snap = gw.controller.shadow.signals!.snapshot('iris');
  const out = { calls: 0, errors: 0, timed: 0 };
  for (const b of snap?.buckets ?? []) {
    out.calls += b[side].calls;
    out.errors += b[side].errors;
    out.timed += Object.values(b[side].latency).reduce((n, c) => n + c, 0);
  }
  return out;
}

async function tick(s: Setup, ms = ROLLOUT.evaluationIntervalMs): Promise<void> {
  s.clock.advance(ms);
  await s.gw.rollouts.idle();
}

test('a failing candidate chosen by weight is answered by stable with x-model-fallback, and counted against it', async (t) => {
  const s = await start(t, { gates: { minSamples: 3 } });
  const { gw } = s;
  t.like(await gw.rollouts.act('iris', 'promote'), { phase: 'step', step: 1, weights: { '1': 95, '2': 5 }, failover: true });
  s.dice.value = CANDIDATE;
  for (let i = 0; i < 3; i++) {
    const res = await infer(gw);
    t.is(res.status, 200, JSON.stringify(res.body));
    t.is(res.headers.get('x-model-version'), '1');
    t.is(res.headers.get('x-model-fallback'), '2');
    t.is(res.body.model_version, '1');
  }
  t.is(s.backend('2').calls, 3, 'the candidate was tried every time');
  t.is(s.backend('2').shadowCalls, 0, 'a request served by the candidate is not mirrored to it');
  t.is(s.backend('1').calls, 3, 'stable answered each of them');
  t.deepEqual(await samples(gw), { calls: 3, errors: 3, timed: 3 });
  t.deepEqual(await samples(gw, 'stable'), { calls: 0, errors: 0, timed: 0 }, 'the stable retry is not a stable sample');

  // The next evaluation sees the failures: the error-rate gate fails and the rollout rolls back.
  await tick(s);
  const view = gw.rollouts.view('iris');
  t.like(view, { status: 'rolled-back', weights: { '1': 100, '2': 0 }, failover: false });
  t.like(
    view.gates?.find((g) => g.gate === 'errorRate'),
    { status: 'fail', value: 1, samples: 3 },
  );
  t.regex(view.lastDecision.reason, /candidate error rate 100\.00%/);

  // Rolled back: the same dice now land on stable, with no failover involved.
  const after = await infer(gw);
  t.is(after.status, 200);
  t.is(after.headers.get('x-model-version'), '1');
  t.is(after.headers.get('x-model-fallback'), null);
  t.is(s.backend('2').calls, 3);
});

test('requests pinned to the candidate (path or x-model-version header) are not failed over: the client gets the error', async (t) => {
  const s = await start(t);
  const { gw } = s;
  await gw.rollouts.act('iris', 'promote');
  s.dice.value = CANDIDATE;

  const byPath = await infer(gw, '/v2/models/iris/versions/2/infer');
  t.is(byPath.status, 500, JSON.stringify(byPath.body));
  t.deepEqual(byPath.body, { error: 'injected failure' });
  t.is(byPath.headers.get('x-model-version'), '2');
  t.is(byPath.headers.get('x-model-fallback'), null);

  const byHeader = await infer(gw, '/v2/models/iris/infer', irisRequest(), { 'x-model-version': '2' });
  t.is(byHeader.status, 500, JSON.stringify(byHeader.body));
  t.is(byHeader.headers.get('x-model-version'), '2');
  t.is(byHeader.headers.get('x-model-fallback'), null);
  t.is(s.backend('1').calls, 0, 'stable never answered a pinned request');
  t.is(s.backend('2').calls, 2);

  // The same request without the pin, landing on the candidate by weight, is failed over.
  const weighted = await infer(gw);
  t.is(weighted.status, 200);
  t.is(weighted.headers.get('x-model-fallback'), '2');
});

test('a 4xx from the candidate (bad input) is not failed over and not counted as a candidate error', async (t) => {
  const s = await start(t);
  const { gw } = s;
  await gw.rollouts.act('iris', 'promote');
  s.dice.value = CANDIDATE;

  // Input the model cannot take: refused by validation against the candidate's metadata.
  const bad = await infer(gw, '/v2/models/iris/infer', { inputs: [{ name: 'input', shape: [1, 3], datatype: 'FP32', data: [[1, 2, 3]] }] });
  t.is(bad.status, 400, JSON.stringify(bad.body));
  t.is(bad.headers.get('x-model-version'), '2');
  t.is(bad.headers.get('x-model-fallback'), null);

  // Input the candidate's backend itself refuses with a 4xx.
  s.refusing.on = true;
  for (let i = 0; i < 2; i++) {
    const refused = await infer(gw);
    t.is(refused.status, 400, JSON.stringify(refused.body));
    t.deepEqual(refused.body, { error: 'the candidate does not take this input' });
    t.is(refused.headers.get('x-model-version'), '2');
    t.is(refused.headers.get('x-model-fallback'), null);
  }
  t.is(s.refuser().refused, 2);
  t.is(s.backend('1').calls, 0, 'stable answered none of them');
  t.deepEqual(await samples(gw), { calls: 0, errors: 0, timed: 0 }, 'a 4xx says nothing about the candidate');

  // A real failure next to them does count.
  s.refusing.on = false;
  const failed = await infer(gw);
  t.is(failed.status, 200);
  t.is(failed.headers.get('x-model-fallback'), '2');
  t.deepEqual(await samples(gw), { calls: 1, errors: 1, timed: 1 });

  await tick(s);
  t.like(
    gw.rollouts.view('iris').gates?.find((g) => g.gate === 'errorRate'),
    { status: 'waiting', value: 1, samples: 1 },
  );
});

test('no failover in the shadow phase (candidate weight 0) nor after an abort', async (t) => {
  const s = await start(t);
  const { gw } = s;
  t.like(gw.rollouts.view('iris'), { phase: 'shadow', candidateWeight: 0, failover: false });
  s.dice.value = CANDIDATE;
  for (let i = 0; i < 3; i++) {
    const res = await infer(gw);
    t.is(res.status, 200);
    t.is(res.headers.get('x-model-version'), '1', 'the candidate gets no real traffic in the shadow phase');
    t.is(res.headers.get('x-model-fallback'), null);
  }
  await gw.controller.shadow.idle();
  t.is(s.backend('2').calls, 3);
  t.is(s.backend('2').shadowCalls, 3, 'only mirrored copies reached the candidate');
  const pinned = await infer(gw, '/v2/models/iris/versions/2/infer');
  t.is(pinned.status, 500);
  t.is(pinned.headers.get('x-model-fallback'), null);

  await gw.rollouts.act('iris', 'promote');
  t.is((await infer(gw)).headers.get('x-model-fallback'), '2', 'in a step the same request is failed over');

  t.like(await gw.rollouts.act('iris', 'abort'), { status: 'aborted', weights: { '1': 100, '2': 0 }, shadowPercent: 0, failover: false });
  const callsBefore = s.backend('2').calls;
  for (let i = 0; i < 3; i++) {
    const res = await infer(gw);
    t.is(res.status, 200);
    t.is(res.headers.get('x-model-version'), '1');
    t.is(res.headers.get('x-model-fallback'), null);
  }
  await gw.controller.shadow.idle();
  t.is(s.backend('2').calls, callsBefore, 'aborted: neither real traffic nor copies reach the candidate');
  const pinnedAfter = await infer(gw, '/v2/models/iris/versions/2/infer');
  t.is(pinnedAfter.status, 500);
  t.is(pinnedAfter.headers.get('x-model-fallback'), null);
  t.false(gw.controller.shadow.signals!.watching('iris'), 'an aborted rollout records no samples');
});

test("a paused step keeps failover on; calls refused by the candidate's open breaker are failed over and counted without latency", async (t) => {
  const s = await start(t, { v2: { breaker: { volumeThreshold: 2, resetTimeoutMs: 60_000 } } });
  const { gw } = s;
  await gw.rollouts.act('iris', 'promote');
  t.like(await gw.rollouts.act('iris', 'pause'), { status: 'paused', failover: true });
  s.dice.value = CANDIDATE;
  for (let i = 0; i < 4; i++) {
    const res = await infer(gw);
    t.is(res.status, 200, JSON.stringify(res.body));
    t.is(res.headers.get('x-model-version'), '1');
    t.is(res.headers.get('x-model-fallback'), '2');
  }
  t.is(gw.guards.get('iris', '2')!.snapshot().breaker.state, 'open');
  t.is(s.backend('2').calls, 2, 'the open breaker refused the last two before the backend');
  t.deepEqual(await samples(gw), { calls: 4, errors: 4, timed: 2 });
});

test('a candidate that is not ready: the weighted request is decoded for stable and answered by it; a pinned one gets 503', async (t) => {
  const s = await start(t);
  const { gw } = s;
  await gw.rollouts.act('iris', 'promote');
  s.backend('2').faults.fail = false;
  s.refuser().notReady = true;
  s.dice.value = CANDIDATE;
  const res = await infer(gw);
  t.is(res.status, 200, JSON.stringify(res.body));
  t.is(res.headers.get('x-model-version'), '1');
  t.is(res.headers.get('x-model-fallback'), '2');
  t.is(res.body.model_version, '1');
  t.deepEqual(await samples(gw), { calls: 1, errors: 1, timed: 1 });
  const pinned = await infer(gw, '/v2/models/iris/versions/2/infer');
  t.is(pinned.status, 503);
  t.is(pinned.headers.get('x-model-fallback'), null);
  t.is(s.backend('2').calls, 0, 'the candidate never ran');

  // Ready again: it answers its own share.
  s.refuser().notReady = false;
  const healthy = await infer(gw);
  t.is(healthy.status, 200);
  t.is(healthy.headers.get('x-model-version'), '2');
  t.is(healthy.headers.get('x-model-fallback'), null);
});

// ---- The upstream stage on its own: which failures divert, which count ----

async function unit(t: ExecutionContext) {
  const signals = new RolloutSignals(new ManualClock());
  signals.watch('iris', { stable: '1', candidate: '2', windowMs: 10_000, phaseId: 1 });
  const u = await upstreamUnit(t, { signals, breaker: { enabled: false } });
  const candidate = () => {
    const snap = signals.snapshot('iris')!;
    return {
      calls: snap.buckets.reduce((n, b) => n + b.candidate.calls, 0),
      errors: snap.buckets.reduce((n, b) => n + b.candidate.errors, 0),
      timed: snap.buckets.reduce((n, b) => n + Object.values(b.candidate.latency).reduce((a, c) => a + c, 0), 0),
    };
  };
  /** A request routed to the candidate by weight (failover: stable), unless `pinned`. */
  const ctx = (o: { pinned?: boolean } = {}) => u.ctx({ ...o, failover: !o.pinned });
  return { ...u, ctx, candidate };
}

const stableAnswered = (t: ExecutionContext, reply: Reply) => {
  t.is(reply.status, 200);
  t.like(replyJson(reply.body), { model_name: 'iris', model_version: '1' });
};

test('upstream stage: a 5xx reply from the candidate is re-served from stable, decoded for stable, and counted', async (t) => {
  const u = await unit(t);
  const c = u.ctx();
  u.scriptV2(async () => answer(502, { error: 'bad gateway upstream' }));
  stableAnswered(t, await u.run(c));
  t.deepEqual(u.served, ['2', '1']);
  t.is(c.target, u.version('1'));
  t.is(c.failover, undefined, 'one failover only');
  t.like(c.responseHeaders, { 'x-model-version': '1', 'x-model-fallback': '2' });
  t.deepEqual(c.inference?.inputs[0]?.shape, [1, 4]);
  t.deepEqual(u.candidate(), { calls: 1, errors: 1, timed: 1 });
});

test('upstream stage: a thrown 5xx and an unexpected error of the candidate are both re-served from stable; only the 5xx counts against it (a bug is no backend failure)', async (t) => {
  const u = await unit(t);
  for (const err of [new GatewayError('GW_ERR_BACKEND_UNAVAILABLE'), new TypeError('backend bug')]) {
    const c = u.ctx();
    u.served.length = 0;
    u.scriptV2(() => Promise.reject(err));
    stableAnswered(t, await u.run(c));
    t.deepEqual(u.served, ['2', '1']);
    t.is(c.responseHeaders['x-model-fallback'], '2');
  }
  t.deepEqual(u.candidate(), { calls: 1, errors: 1, timed: 1 });
});

test('upstream stage: a 4xx reply or thrown 4xx from the candidate is the answer and counts for nothing', async (t) => {
  const u = await unit(t);
  const c1 = u.ctx();
  u.scriptV2(async () => answer(422, { error: 'remote says no' }));
  t.deepEqual(await u.run(c1), { status: 422, body: { error: 'remote says no' }, headers: {} });
  t.is(c1.responseHeaders['x-model-fallback'], undefined);

  const c2 = u.ctx();
  u.scriptV2(() => Promise.reject(new GatewayError('GW_ERR_INVALID_REQUEST', 'bad input')));
  const err = await t.throwsAsync(u.run(c2), { instanceOf: GatewayError });
  t.is(err!.code, 'GW_ERR_INVALID_REQUEST');
  t.deepEqual(u.served, ['2', '2']);
  t.deepEqual(u.candidate(), { calls: 0, errors: 0, timed: 0 });
});

test('upstream stage: deadline exceeded is counted but not failed over; shutdown and a departed client are neither', async (t) => {
  const u = await unit(t);
  // The deadline stage aborts the signal with GW_ERR_DEADLINE_EXCEEDED: too late to answer from stable.
  const c1 = u.ctx();
  u.scriptV2(() => {
    const err = new GatewayError('GW_ERR_DEADLINE_EXCEEDED');
    c1.abort(err);
    return Promise.reject(err);
  });
  t.is((await t.throwsAsync(u.run(c1), { instanceOf: GatewayError }))!.code, 'GW_ERR_DEADLINE_EXCEEDED');
  t.deepEqual(u.candidate(), { calls: 1, errors: 1, timed: 1 });

  const c2 = u.ctx();
  u.scriptV2(() => Promise.reject(new GatewayError('GW_ERR_SHUTTING_DOWN')));
  t.is((await t.throwsAsync(u.run(c2), { instanceOf: GatewayError }))!.code, 'GW_ERR_SHUTTING_DOWN');

  const c3 = u.ctx();
  u.scriptV2(() => {
    c3.abort(new GatewayError('GW_ERR_CLIENT_CLOSED'));
    return Promise.reject(new GatewayError('GW_ERR_BACKEND_FAILED', 'aborted'));
  });
  t.is((await t.throwsAsync(u.run(c3), { instanceOf: GatewayError }))!.code, 'GW_ERR_BACKEND_FAILED');
  t.deepEqual(u.served, ['2', '2', '2'], 'never answered from stable');
  t.is(c3.responseHeaders['x-model-fallback'], undefined);
  t.deepEqual(u.candidate(), { calls: 1, errors: 1, timed: 1 }, 'only the deadline counted');
});

test('upstream stage: without ctx.failover (a pinned candidate) a failed call is the answer, still counted', async (t) => {
  const u = await unit(t);
  const c1 = u.ctx({ pinned: true });
  u.scriptV2(async () => answer(503, { error: 'down' }));
  t.deepEqual(await u.run(c1), { status: 503, body: { error: 'down' }, headers: {} });
  const c2 = u.ctx({ pinned: true });
  u.scriptV2(() => Promise.reject(new GatewayError('GW_ERR_BACKEND_FAILED')));
  t.is((await t.throwsAsync(u.run(c2), { instanceOf: GatewayError }))!.code, 'GW_ERR_BACKEND_FAILED');
  t.deepEqual(u.served, ['2', '2']);
  t.is(c1.responseHeaders['x-model-fallback'], undefined);
  t.deepEqual(u.candidate(), { calls: 2, errors: 2, timed: 2 });
});
