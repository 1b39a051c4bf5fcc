// End to end: progressive rollouts with the candidate in a real `serve-model` process, real ONNX models, real Redis,
// and a manual clock driving the controller's evaluations (traffic is real; only the controller's time is injected).

import test, { type ExecutionContext } from 'ava';
import { copyFile, mkdir, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/app/gateway.js';
import { createLogger } from '../../src/telemetry/log.js';
import type { RolloutView } from '../../src/rollout/view.js';
import { MODELS, ROOT, gatewayConfig, irisRequest, startTestGateway } from '../helpers/gateway.js';
import { irisDisagreementRows, IRIS_ROWS } from '../helpers/iris.js';
import { runLoad, startLoad, type LoadResult } from '../helpers/load.js';
import { TEST_ROLLOUT } from '../helpers/rollout.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { redisTestsEnabled, startRedis } from '../helpers/redis.js';
import { spawnServeModel, type ServeModelProcess } from '../helpers/serve-model.js';

const TOKEN = 'rollout-admin-token-0123';

const ROLLOUT = TEST_ROLLOUT;

/** A runtime container serving `file` as iris version 2 (the candidate). */
async function candidateProcess(t: ExecutionContext, file: 'iris-v1.onnx' | 'iris-v2.onnx'): Promise<ServeModelProcess> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-rollout-'));
  await mkdir(path.join(dir, 'iris', '2'), { recursive: true });
  await copyFile(path.join(MODELS, file), path.join(dir, 'iris', '2', 'model.onnx'));
  const proc = await spawnServeModel(['--model-dir', dir, '--port', '0', '--log-level', 'warn']);
  t.teardown(() => proc.stop('SIGKILL'));
  return proc;
}

function rolloutConfig(
  candidate: Record<string, unknown>,
  rollout: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...gatewayConfig({
      admin: { token: TOKEN },
      models: {
        iris: {
          versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } }, '2': candidate },
          rollout: { ...ROLLOUT, ...rollout },
        },
      },
    }),
    ...extra,
  };
}

const remote = (proc: ServeModelProcess) => ({ backend: { kind: 'http', url: proc.url, version: '2' } });

async function start(t: ExecutionContext, raw: Record<string, unknown>, clock: ManualClock, replicaId?: string): Promise<RunningGateway> {
  const gw = await startTestGateway(raw, { rolloutClock: clock, ...(replicaId ? { replicaId } : {}) });
  t.teardown(() => gw.stop());
  return gw;
}

const rowsBody = (rows: readonly number[]) => (i: number) => JSON.stringify(irisRequest([IRIS_ROWS[rows[i % rows.length]!]!]));
const ALL_ROWS = IRIS_ROWS.map((_, i) => i);

/**
 * Requests enough for one evaluation of `view`'s position: the p99 gate needs minSamples real candidate calls in the
 * window, so a 5 % step takes twenty times as many requests as the candidate must answer (copies are not timed).
 */
function enoughFor(view: RolloutView, base = 40): number {
  return view.phase === 'shadow' || view.candidateWeight === 0 ? base : Math.max(base, Math.ceil((ROLLOUT.gates.minSamples * 110) / view.candidateWeight));
}

/** `n` unversioned requests, `concurrency` at a time; waits until their shadow copies are compared. */
async function send(gw: RunningGateway, n: number, concurrency = 4): Promise<LoadResult> {
  const result = await runLoad({ url: `${gw.url}/v2/models/iris/infer`, body: rowsBody(ALL_ROWS), concurrency, total: n });
  await gw.controller.shadow.idle();
  return result;
}

/** Moves the controller's clock and waits for what it set off (evaluations, syncs). */
async function tick(clock: ManualClock, ms: number, ...gateways: RunningGateway[]): Promise<void> {
  clock.advance(ms);
  for (const gw of gateways) await gw.rollouts.idle();
}

async function admin(gw: RunningGateway, method: string, suffix: string, body?: unknown): Promise<{ status: number; body: RolloutView & { error?: string } }> {
  const res = await fetch(`${gw.admin!.url}/admin/models/iris/rollout${suffix}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as RolloutView & { error?: string } };
}

async function metric(gw: RunningGateway, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gw.admin!.url}/metrics`)).text();
  const found = text.split('\n').find((l) => line.test(l));
  return found === undefined ? 0 : Number(found.split(' ').pop());
}

test('a healthy candidate that agrees is promoted step by step to 100%', async (t) => {
  const candidate = await candidateProcess(t, 'iris-v1.onnx'); // the same model: every answer agrees
  const clock = new ManualClock(Date.now());
  const gw = await start(t, rolloutConfig(remote(candidate)), clock);
  const positions = [gw.rollouts.view('iris').position];
  t.deepEqual(gw.controller.model('iris').weights, { '1': 100, '2': 0 });
  t.is(gw.controller.model('iris').weightsSource, 'rollout');

  let realCandidateAnswers = 0;
  for (let round = 0; round < 20 && gw.rollouts.view('iris').status === 'running'; round++) {
    const before = gw.rollouts.view('iris');
    const result = await send(gw, enoughFor(before));
    t.deepEqual(result.failures, []);
    if (before.phase === 'shadow') t.deepEqual(result.versions, { '1': 40 }, 'no real traffic reaches the candidate in the shadow phase');
    realCandidateAnswers += result.versions['2'] ?? 0;
    await tick(clock, ROLLOUT.evaluationIntervalMs, gw);
    const after = gw.rollouts.view('iris');
    if (after.position !== positions[positions.length - 1]) positions.push(after.position);
    t.deepEqual(gw.controller.model('iris').weights, after.weights, 'the data plane routes by the rollout state');
  }
  t.deepEqual(positions, ['shadow phase', 'step 1/4 (5%)', 'step 2/4 (25%)', 'step 3/4 (50%)', 'step 4/4 (100%)', 'complete at 100%']);
  const done = gw.rollouts.view('iris');
  t.like(done, { status: 'complete', candidateWeight: 100, weights: { '1': 0, '2': 100 }, shadowPercent: 0, failover: false, nextEvaluationAt: null });
  t.is(done.lastDecision.decision, 'complete');
  t.true(realCandidateAnswers > 0);
  t.deepEqual((await send(gw, 20)).versions, { '2': 20 });
  t.is(await metric(gw, /^model_gateway_rollout_decisions_total\{model="iris",decision="advance",actor="controller"\}/), 4);
  t.is(await metric(gw, /^model_gateway_rollout_decisions_total\{model="iris",decision="complete",actor="controller"\}/), 1);
  t.true((await metric(gw, /^model_gateway_rollout_decisions_total\{model="iris",decision="hold",actor="controller"\}/)) >= 4, 'each step is held');
  t.is(await metric(gw, /^model_gateway_rollout_candidate_weight_ratio\{model="iris",candidate="2"\}/), 1);
});

test('a candidate that disagrees is stopped in the shadow phase before it gets any real traffic', async (t) => {
  const candidate = await candidateProcess(t, 'iris-v2.onnx'); // disagrees with v1 on 5 of the 150 rows
  const clock = new ManualClock(Date.now());
  const gw = await start(
    t,
    rolloutConfig(remote(candidate), { shadow: { ...ROLLOUT.shadow, requests: 150 }, gates: { ...ROLLOUT.gates, minAgreement: 0.99, minSamples: 100 } }),
    clock,
  );
  // One at a time, so no copy is dropped at the shadow concurrency cap: exactly the 150 rows are compared.
  const result = await send(gw, 150, 1);
  t.deepEqual(result.failures, []);
  t.deepEqual(result.versions, { '1': 150 });
  await tick(clock, ROLLOUT.evaluationIntervalMs, gw);
  const view = gw.rollouts.view('iris');
  t.like(view, { status: 'rolled-back', phase: 'shadow', candidateWeight: 0, weights: { '1': 100, '2': 0 }, shadowPercent: 0 });
  t.is(view.lastDecision.decision, 'rollback');
  t.regex(view.lastDecision.reason, /agreement 96\.67% \(minimum 99\.00%\) over 150 comparisons/);
  t.like(
    view.gates?.find((g) => g.gate === 'agreement'),
    { status: 'fail', samples: 150 },
  );
  t.is(irisDisagreementRows().length, 5);

  // Held: no real traffic and no more copies for the candidate until an operator acts.
  const mirrored = () => gw.controller.shadow.stats.forModel('iris').find((p) => p.shadowVersion === '2')?.mirrored;
  t.is(mirrored(), 150);
  t.deepEqual((await send(gw, 30)).versions, { '1': 30 });
  t.is(mirrored(), 150);
  await tick(clock, ROLLOUT.evaluationIntervalMs * 3, gw);
  t.is(gw.rollouts.view('iris').revision, view.revision, 'a rolled-back rollout is not evaluated again');
  t.is(await metric(gw, /^model_gateway_requests_total\{model="iris",version="2"/), 0);
});

test('a candidate that starts failing at 25% is rolled back within one evaluation interval, and no request is lost', async (t) => {
  const candidate = await candidateProcess(t, 'iris-v1.onnx');
  const clock = new ManualClock(Date.now());
  const gw = await start(t, rolloutConfig(remote(candidate)), clock);
  // Shadow phase, then 5% (held 10 s: two evaluations), then 25%.
  for (let round = 0; round < 6 && gw.rollouts.view('iris').step !== 2; round++) {
    t.deepEqual((await send(gw, enoughFor(gw.rollouts.view('iris')))).failures, []);
    await tick(clock, ROLLOUT.evaluationIntervalMs, gw);
  }
  t.like(gw.rollouts.view('iris'), { status: 'running', step: 2, candidateWeight: 25, failover: true });

  await candidate.stop('SIGKILL'); // the candidate's container dies
  const failedAt = clock.now();
  const load = startLoad({ url: `${gw.url}/v2/models/iris/infer`, body: rowsBody(ALL_ROWS), concurrency: 4, maxRequests: 2_000 });
  await load.completed(160); // ≥ minSamples real candidate calls at 25 % (a step mirrors nothing)
  await gw.controller.shadow.idle();
  await tick(clock, ROLLOUT.evaluationIntervalMs, gw); // the next evaluation, with traffic still flowing
  await load.completed(40);
  const result = await load.stop();

  const view = gw.rollouts.view('iris');
  t.like(view, { status: 'rolled-back', phase: 'step', step: 2, candidateWeight: 0, weights: { '1': 100, '2': 0 }, shadowPercent: 0, failover: false });
  t.is(view.lastDecision.decision, 'rollback');
  t.regex(view.lastDecision.reason, /^rolled back in step 2\/4 \(25%\): candidate error rate/);
  t.true(Date.parse(view.lastDecision.at) - failedAt <= ROLLOUT.evaluationIntervalMs, 'rolled back at the first evaluation after the failure began');
  // Every request was answered: the candidate's failures were answered by stable.
  t.deepEqual(result.failures, [], JSON.stringify(result.statuses));
  t.deepEqual(result.versions, { '1': result.samples.length });
  t.deepEqual((await send(gw, 20)).versions, { '1': 20 });
});

test('pause, resume, promote and abort work under load, and every request is answered', async (t) => {
  const candidate = await candidateProcess(t, 'iris-v1.onnx');
  const clock = new ManualClock(Date.now());
  const gw = await start(t, rolloutConfig(remote(candidate)), clock);
  const load = startLoad({ url: `${gw.url}/v2/models/iris/infer`, body: rowsBody(ALL_ROWS), concurrency: 4, maxRequests: 20_000 });
  t.teardown(() => load.stop());
  /** Lets `n` more requests through, then runs one evaluation. */
  const evaluateAfter = async (n: number) => {
    await load.completed(n);
    await gw.controller.shadow.idle();
    await tick(clock, ROLLOUT.evaluationIntervalMs, gw);
  };

  await evaluateAfter(60);
  t.is(gw.rollouts.view('iris').position, 'step 1/4 (5%)');

  const paused = await admin(gw, 'POST', '/pause');
  t.like(paused, { status: 200, body: { status: 'paused', position: 'step 1/4 (5%)', weights: { '1': 95, '2': 5 } } });
  t.like(await admin(gw, 'POST', '/pause'), { status: 409, body: { error: 'cannot pause: the rollout is paused' } });
  for (let i = 0; i < 3; i++) await evaluateAfter(40);
  t.like(gw.rollouts.view('iris'), { status: 'paused', position: 'step 1/4 (5%)' });
  t.regex(gw.rollouts.view('iris').lastDecision.reason, /^paused by an operator/);

  t.like(await admin(gw, 'POST', '/resume'), { status: 200, body: { status: 'running', position: 'step 1/4 (5%)' } });
  // The step's hold starts again on resume; at 5 % the p99 gate needs ~20 × minSamples requests in the window.
  for (let i = 0; i < 2; i++) await evaluateAfter(enoughFor(gw.rollouts.view('iris')));
  t.is(gw.rollouts.view('iris').position, 'step 2/4 (25%)');

  t.like(await admin(gw, 'POST', '/promote'), {
    status: 200,
    body: { position: 'step 3/4 (50%)', weights: { '1': 50, '2': 50 }, lastDecision: { decision: 'promote', actor: 'operator' } },
  });
  t.like(await admin(gw, 'POST', '/promote', { full: 'yes' }), { status: 400 });

  const aborted = await admin(gw, 'POST', '/abort');
  t.like(aborted, { status: 200, body: { status: 'aborted', weights: { '1': 100, '2': 0 }, shadowPercent: 0 } });
  const abortedAt = (await load.completed(0), gw.rollouts.view('iris').revision);
  await load.completed(80);
  t.like(await admin(gw, 'POST', '/promote'), { status: 409 });
  const result = await load.stop();
  t.deepEqual(result.failures, [], JSON.stringify(result.statuses));
  // Requests issued after the abort landed went to stable only.
  const after = result.samples.slice(-40);
  t.true(
    after.every((s) => s.version === '1'),
    JSON.stringify(after.map((s) => s.version)),
  );
  t.is(gw.rollouts.view('iris').revision, abortedAt);

  // Resuming an aborted rollout starts it again from the shadow phase.
  t.like(await admin(gw, 'POST', '/resume'), {
    status: 200,
    body: { status: 'running', phase: 'shadow', weights: { '1': 100, '2': 0 }, lastDecision: { decision: 'restart' } },
  });
  t.like(await admin(gw, 'POST', '/dance'), { status: 404 });
  t.true((await metric(gw, /^model_gateway_rollout_decisions_total\{model="iris",decision="abort",actor="operator"\}/)) === 1);
});

test('the example rollout (examples/rollout.yaml) passes its shadow phase with iris v2 and starts its first step', async (t) => {
  const { config } = await loadConfig(path.join(ROOT, 'examples/rollout.yaml'), {
    PORT: '0',
    ADMIN_PORT: '0',
    LOG_LEVEL: 'silent',
    PATH: process.env.PATH ?? '',
  });
  const clock = new ManualClock(Date.now());
  const gw = await startGateway(config, createLogger('silent'), { rolloutClock: clock, env: { MODEL_GATEWAY_ADMIN_TOKEN: TOKEN } });
  t.teardown(() => gw.stop());
  const result = await send(gw, 200, 1);
  t.deepEqual(result.versions, { '1': 200 });
  await tick(clock, config.models.iris!.rollout!.evaluationIntervalMs, gw);
  const view = gw.rollouts.view('iris');
  t.is(view.position, 'step 1/3 (10%)', view.lastDecision.reason);
  const agreement = view.gates!.find((g) => g.gate === 'agreement')!;
  t.true(agreement.value! >= 0.95 && agreement.value! < 1, String(agreement.value));
});

const redisTest = redisTestsEnabled ? test : test.skip;

redisTest('two replicas sharing Redis follow one leader, which judges the samples of both', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const clock = new ManualClock(Date.now());
  const coordination = { redis: { url: redis.url, keyPrefix: 'mg-e2e-rollout:', leaseTtlMs: 60_000, syncIntervalMs: 500 } };
  // Each replica alone sees 20 comparisons per round: below minSamples, so only the merged samples can pass a gate.
  const raw = rolloutConfig(
    { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
    { shadow: { ...ROLLOUT.shadow, requests: 40 }, gates: { ...ROLLOUT.gates, minSamples: 30 } },
    { coordination },
  );
  const a = await start(t, raw, clock, 'replica-a');
  const b = await start(t, raw, clock, 'replica-b');
  const both = [a, b];
  const syncs = async (ms: number) => {
    for (let left = ms; left > 0; left -= 500) await tick(clock, 500, ...both);
  };
  t.like(a.rollouts.view('iris'), { coordination: { mode: 'redis', replica: 'replica-a', leader: true, inSync: true } });
  t.like(b.rollouts.view('iris'), { coordination: { mode: 'redis', replica: 'replica-b', leader: false, inSync: true } });
  t.is(b.rollouts.view('iris').revision, a.rollouts.view('iris').revision);

  await Promise.all([send(a, 20), send(b, 20)]);
  await syncs(ROLLOUT.evaluationIntervalMs + 500);
  const leaderView = a.rollouts.view('iris');
  t.is(leaderView.position, 'step 1/4 (5%)', leaderView.lastDecision.reason);
  t.like(
    leaderView.gates?.find((g) => g.gate === 'agreement'),
    { status: 'pass', samples: 40 },
  );
  // The follower took the leader's state: same revision, same weights in its data plane, and it decided nothing.
  t.like(b.rollouts.view('iris'), { position: 'step 1/4 (5%)', revision: leaderView.revision });
  t.deepEqual(b.controller.model('iris').weights, { '1': 95, '2': 5 });
  t.is(await metric(b, /^model_gateway_rollout_decisions_total\{model="iris",decision="advance"/), 0);
  t.is(await metric(a, /^model_gateway_rollout_decisions_total\{model="iris",decision="advance"/), 1);
  t.is(await metric(a, /^model_gateway_rollout_leader /), 1);
  t.is(await metric(b, /^model_gateway_rollout_leader /), 0);

  // An operator may act on any replica: the leader follows.
  t.like(await admin(b, 'POST', '/pause'), { status: 200, body: { status: 'paused' } });
  await syncs(500);
  t.is(a.rollouts.view('iris').status, 'paused');

  // The leader goes away (its lease is released on shutdown): the other replica takes over and carries on.
  await a.stop();
  await syncs(500);
  t.true(b.rollouts.view('iris').coordination.leader);
  t.like(await admin(b, 'POST', '/resume'), { status: 200, body: { status: 'running' } });
  for (let round = 0; round < 4 && b.rollouts.view('iris').step === 1; round++) {
    await send(b, enoughFor(b.rollouts.view('iris')));
    await syncs(ROLLOUT.evaluationIntervalMs);
  }
  t.is(b.rollouts.view('iris').position, 'step 2/4 (25%)');
});
