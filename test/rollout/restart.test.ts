// A gateway without Redis restarted for real (`model-gateway start` as a child process, stopped with SIGTERM or killed
// with SIGKILL, then started again on the same config): its rollouts resume from the state file where they were, and a
// state file it cannot use is reported without stopping it.

import test, { type ExecutionContext } from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RolloutView } from '../../src/rollout/view.js';
import { irisRequest, postJson, spawnGateway, type GatewayProcess } from '../helpers/gateway.js';
import { TEST_ROLLOUT } from '../helpers/rollout.js';
import { redisTestsEnabled, startRedis } from '../helpers/redis.js';
import { ADMIN_TOKEN, fileConfig, irisVersion, tempDir, writeConfig } from '../helpers/traffic.js';

/** Operators drive the rollout; the controller's first evaluation is an hour away, so nothing moves by itself here. */
const ROLLOUT = { ...TEST_ROLLOUT, evaluationIntervalMs: 3_600_000 };

async function configFile(extra: Record<string, unknown> = {}): Promise<string> {
  const file = path.join(await tempDir('mg-rollout-restart-'), 'gateway.yaml');
  await writeConfig(
    file,
    fileConfig(
      { iris: { versions: { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') }, rollout: ROLLOUT } },
      { logging: { level: 'info', accessLog: { enabled: false } }, ...extra },
    ),
  );
  return file;
}

interface Running {
  proc: GatewayProcess;
  admin: string;
}

async function start(t: ExecutionContext, file: string): Promise<Running> {
  const proc = await spawnGateway(file);
  t.teardown(() => proc.stop('SIGKILL'));
  const admin = /admin API on (\S+)/.exec(proc.stderr())?.[1];
  if (!admin) throw new Error(`no admin URL in:\n${proc.stderr()}`);
  return { proc, admin };
}

async function call<T>(gw: Running, method: string, route: string, body?: unknown): Promise<T> {
  const res = await fetch(`${gw.admin}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (res.status !== 200) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const rollout = (gw: Running) => call<RolloutView>(gw, 'GET', '/admin/models/iris/rollout');
const model = (gw: Running) => call<{ weights: Record<string, number>; weightsSource: string }>(gw, 'GET', '/admin/models/iris');

test('a rollout resumes where it was after SIGTERM and after SIGKILL: same step, same weights, same decisions', async (t) => {
  const file = await configFile();
  const first = await start(t, file);
  await call(first, 'POST', '/admin/models/iris/rollout/promote');
  await call(first, 'POST', '/admin/models/iris/rollout/promote');
  const before = await rollout(first);
  t.like(before, { status: 'running', position: 'step 2/4 (25%)', revision: 3, coordination: { kept: 'file', stateFile: `${file}.rollout-state.json` } });
  t.is(await first.proc.stop('SIGTERM'), 0);

  const second = await start(t, file);
  const resumed = await rollout(second);
  for (const k of ['status', 'position', 'revision', 'weights', 'shadowPercent', 'failover', 'startedAt', 'phaseStartedAt', 'lastDecision'] as const)
    t.deepEqual(resumed[k], before[k], k);
  t.deepEqual(await model(second), { ...(await model(second)), weights: { '1': 75, '2': 25 }, weightsSource: 'rollout' });
  t.regex(second.proc.stdout(), /"event":"rollout.resumed","model":"iris"/);

  // Completed, acknowledged, then the process is killed outright: the answer came after the write, so it is kept.
  t.like(await call<RolloutView>(second, 'POST', '/admin/models/iris/rollout/promote', { full: true }), { status: 'complete' });
  await second.proc.stop('SIGKILL');

  const third = await start(t, file);
  t.like(await rollout(third), { status: 'complete', weights: { '1': 0, '2': 100 }, lastDecision: { decision: 'promote' } });
  for (let i = 0; i < 10; i++) {
    const res = await postJson(`${third.proc.url}/v2/models/iris/infer`, irisRequest());
    t.is(res.headers.get('x-model-version'), '2', 'a completed rollout never sends traffic back to stable on restart');
  }
});

test('a state file the gateway cannot use is reported and left untouched; the gateway serves, its rollout starts afresh', async (t) => {
  const file = await configFile();
  const stateFile = `${file}.rollout-state.json`;
  const garbage = '{"format": "model-gateway/rollout-state", "version": 1, "rollouts": {"iris:';
  await writeFile(stateFile, garbage);
  const gw = await start(t, file);
  t.regex(gw.proc.stdout(), /"level":50[^\n]*"event":"rollout.state-file"[^\n]*is left untouched/);
  const view = await rollout(gw);
  t.like(view, { status: 'running', phase: 'shadow', revision: 1, coordination: { kept: 'memory', stateFile } });
  t.regex(view.coordination.stateFileError!, /^not valid JSON/);
  t.is((await postJson(`${gw.proc.url}/v2/models/iris/infer`, irisRequest())).status, 200);
  await call(gw, 'POST', '/admin/models/iris/rollout/promote');
  t.is(await readFile(stateFile, 'utf8'), garbage);
});

const redisTest = redisTestsEnabled ? test : test.skip;

redisTest('with Redis the same restart resumes from the shared state, and no state file is written', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const file = await configFile({ coordination: { redis: { url: redis.url, keyPrefix: 'mg-restart:', syncIntervalMs: 100 } } });
  const first = await start(t, file);
  await call(first, 'POST', '/admin/models/iris/rollout/promote');
  t.like(await rollout(first), { position: 'step 1/4 (5%)', coordination: { mode: 'redis', kept: 'redis', stateFile: null } });
  await first.proc.stop('SIGKILL');

  const second = await start(t, file);
  t.like(await rollout(second), { position: 'step 1/4 (5%)', revision: 2, lastDecision: { decision: 'promote' } });
  t.deepEqual((await model(second)).weights, { '1': 95, '2': 5 });
  await t.throwsAsync(readFile(`${file}.rollout-state.json`), { code: 'ENOENT' });
});
