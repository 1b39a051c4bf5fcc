// RolloutManager through a real in-process gateway: one log line and one counter increment per decision, config
// reloads (kept, restarted, removed), weights owned by the rollout, the admin actions' bodies, and restarts.

import test, { type ExecutionContext } from 'ava';
import { Writable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../src/app/gateway.js';
import type { RolloutView } from '../../src/rollout/view.js';
import { createLogger, type Logger } from '../../src/telemetry/log.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { MODELS, ROOT, gatewayConfig, irisRequest, postJson } from '../helpers/gateway.js';
import { testRollout } from '../helpers/rollout.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { tempDir, writeConfig } from '../helpers/traffic.js';

const TOKEN = 'manager-admin-token-0123';

/** Few samples needed: 5 comparisons end the shadow phase, 5 samples judge a gate. */
const ROLLOUT = testRollout(5);

const INFO = 30;
const WARN = 40;

type Line = Record<string, unknown>;

/** A pino destination kept in memory (pino writes to a plain stream synchronously). */
function sink(): { log: Logger; lines: () => Line[]; decisions: () => Line[] } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const lines = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line);
  return { log: createLogger('info', stream), lines, decisions: () => lines().filter((l) => l.event === 'rollout.decision') };
}

function irisWith(rollout: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iris: {
      versions: {
        '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
        '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } },
      },
      ...(rollout ? { rollout } : {}),
      ...extra,
    },
  };
}

/** Admin on with a token; info logs (a reload re-applies `logging.level` to the logger) without access lines. */
function rawConfig(models: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...gatewayConfig({ admin: { token: TOKEN }, models }), logging: { level: 'info', accessLog: { enabled: false } }, ...extra };
}

async function start(t: ExecutionContext, raw: Record<string, unknown>, log: Logger, options: GatewayOptions): Promise<RunningGateway> {
  const config = await parseConfig(raw, { baseDir: ROOT, source: 'test' });
  const gw = await startGateway(config, log, options);
  t.teardown(() => gw.stop());
  return gw;
}

/** A gateway started from a config file it reloads only when asked (POST /admin/reload): no watcher, no polling. */
async function startFromFile(t: ExecutionContext, models: Record<string, unknown>, log: Logger, clock: ManualClock) {
  const file = path.join(await tempDir('mg-rollout-manager-'), 'gateway.yaml');
  const write = (m: Record<string, unknown>) => writeConfig(file, rawConfig(m, { reload: { watch: false, pollIntervalMs: 0 } }));
  await write(models);
  const { config, file: absolute } = await loadConfig(file);
  const gw = await startGateway(config, log, { configFile: absolute, rolloutClock: clock });
  t.teardown(() => gw.stop());
  /** Rewrites the file, reloads it through the admin API and waits for the rollouts to settle. */
  const reload = async (m: Record<string, unknown>) => {
    await write(m);
    const res = await admin(gw, 'POST', '/admin/reload');
    await gw.rollouts.idle();
    return res;
  };
  return { gw, reload };
}

async function admin(
  gw: RunningGateway,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; headers: Headers; body: RolloutView & Record<string, unknown> & { error?: string } }> {
  const res = await fetch(`${gw.admin!.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as RolloutView & Record<string, unknown> };
}

/** `n` unversioned requests, one at a time, each one's shadow copy compared before the next. */
async function send(gw: RunningGateway, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
    if (res.status !== 200) throw new Error(`request ${i}: ${res.status} ${JSON.stringify(res.body)}`);
    await gw.controller.shadow.idle();
  }
}

async function tick(gw: RunningGateway, clock: ManualClock, ms = ROLLOUT.evaluationIntervalMs): Promise<void> {
  clock.advance(ms);
  await gw.rollouts.idle();
}

/** model_gateway_rollout_decisions_total as `decision/actor` → count, for iris. */
async function decisionCounter(gw: RunningGateway): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await gw.metrics!.rolloutDecisions.get()).values) {
    if (v.labels.model === 'iris' && v.value > 0) out[`${String(v.labels.decision)}/${String(v.labels.actor)}`] = v.value;
  }
  return out;
}

test('every decision is one rollout.decision log line (warn for rollback and abort) and one counter increment', async (t) => {
  const { log, decisions } = sink();
  const clock = new ManualClock();
  const faults = faultInjectingFactory({}, createLogger('silent'));
  const gw = await start(t, rawConfig(irisWith(ROLLOUT)), log, { rolloutClock: clock, backendFactory: faults.factory });
  const expect: [decision: string, actor: string][] = [];
  /** Runs `step` and checks it logged exactly one more decision, the expected one. */
  const decided = async (decision: string, actor: 'controller' | 'operator', step: () => Promise<unknown>) => {
    const before = decisions().length;
    await step();
    const after = decisions();
    t.is(after.length, before + 1, `${decision}: ${JSON.stringify(after.slice(before).map((l) => l.decision))}`);
    t.like(after.at(-1), { decision, actor });
    expect.push([decision, actor]);
  };

  expect.push(['start', 'controller']);
  t.deepEqual(
    decisions().map((l) => l.decision),
    ['start'],
  );
  await decided('hold', 'controller', () => tick(gw, clock)); // shadow phase: 0/5 compared
  await decided('pause', 'operator', () => gw.rollouts.act('iris', 'pause'));
  await decided('hold', 'controller', () => tick(gw, clock)); // paused
  await decided('resume', 'operator', () => gw.rollouts.act('iris', 'resume'));
  await send(gw, 5);
  await decided('advance', 'controller', () => tick(gw, clock)); // shadow phase passed: step 1 (5%)
  await decided('promote', 'operator', () => gw.rollouts.act('iris', 'promote')); // step 2 (25%)
  await decided('abort', 'operator', () => gw.rollouts.act('iris', 'abort'));
  await decided('restart', 'operator', () => gw.rollouts.act('iris', 'resume')); // shadow phase again
  faults.made.get('iris/2')![0]!.faults.fail = true;
  await send(gw, 5); // stable answers; every mirrored copy fails
  await decided('rollback', 'controller', () => tick(gw, clock));
  await tick(gw, clock, ROLLOUT.evaluationIntervalMs * 3);
  t.is(decisions().length, expect.length, 'a rolled-back rollout is not evaluated');

  const lines = decisions();
  t.deepEqual(
    lines.map((l) => [l.decision, l.actor]),
    expect,
  );
  t.deepEqual(
    lines.map((l) => l.revision),
    expect.map((_, i) => i + 1),
    'one revision per decision',
  );
  for (const line of lines) {
    const what = String(line.decision);
    t.is(line.level, what === 'rollback' || what === 'abort' ? WARN : INFO, what);
    t.is(line.model, 'iris');
    t.is(typeof line.reason, 'string');
    t.true(String(line.msg).startsWith(`rollout iris: ${what}: `), String(line.msg));
    for (const k of ['from', 'to'] as const) t.deepEqual(Object.keys(line[k] as object).sort(), ['phase', 'status', 'step'], `${what}.${k}`);
    t.is(typeof line.weights, 'object');
    t.is(typeof line.replica, 'string');
    const evaluated = line.actor === 'controller' && what !== 'start';
    t.is(line.gates !== undefined, evaluated, `${what}: gates only for evaluations`);
    if (evaluated) t.deepEqual(Object.keys(line.gates as object).sort(), ['agreement', 'errorRate', 'p99'], what);
  }
  const by = (d: string) => lines.find((l) => l.decision === d)!;
  t.like(by('start'), { from: { status: 'running', phase: 'shadow', step: -1 }, to: { status: 'running', phase: 'shadow', step: -1 }, weights: { '1': 100 } });
  t.like(by('advance'), { from: { phase: 'shadow' }, to: { status: 'running', phase: 'step', step: 0 }, weights: { '1': 95, '2': 5 } });
  t.like(by('advance').gates, { agreement: { status: 'pass', samples: 5 }, errorRate: { status: 'pass', value: 0, samples: 5 }, p99: { status: 'skipped' } });
  t.like(by('promote'), { from: { step: 0 }, to: { phase: 'step', step: 1 }, weights: { '1': 75, '2': 25 } });
  t.like(by('abort'), { from: { status: 'running' }, to: { status: 'aborted' }, weights: { '1': 100 } });
  t.like(by('restart'), { from: { status: 'aborted' }, to: { status: 'running', phase: 'shadow' } });
  t.like(by('rollback'), { to: { status: 'rolled-back', phase: 'shadow' }, weights: { '1': 100 } });
  t.like(by('rollback').gates, { errorRate: { status: 'fail', value: 1, limit: 0.05, samples: 5 } });

  // The counter: one increment per logged decision, by decision and actor.
  const logged: Record<string, number> = {};
  for (const [d, a] of expect) logged[`${d}/${a}`] = (logged[`${d}/${a}`] ?? 0) + 1;
  t.deepEqual(await decisionCounter(gw), logged);
  t.deepEqual(logged, {
    'start/controller': 1,
    'hold/controller': 2,
    'pause/operator': 1,
    'resume/operator': 1,
    'advance/controller': 1,
    'promote/operator': 1,
    'abort/operator': 1,
    'restart/operator': 1,
    'rollback/controller': 1,
  });
  const scraped = await (await fetch(`${gw.admin!.url}/metrics`)).text();
  t.regex(scraped, /^model_gateway_rollout_decisions_total\{model="iris",decision="hold",actor="controller"\} 2$/m);
  t.regex(scraped, /^model_gateway_rollout_decisions_total\{model="iris",decision="rollback",actor="controller"\} 1$/m);
});

test('promote {"full": true} completes the rollout: one promote decision, nothing evaluated after it', async (t) => {
  const { log, decisions } = sink();
  const clock = new ManualClock();
  const gw = await start(t, rawConfig(irisWith(ROLLOUT)), log, { rolloutClock: clock });
  const res = await admin(gw, 'POST', '/admin/models/iris/rollout/promote', { full: true });
  t.is(res.status, 200, JSON.stringify(res.body));
  t.like(res.body, {
    status: 'complete',
    phase: 'step',
    step: 4,
    candidateWeight: 100,
    weights: { '1': 0, '2': 100 },
    shadowPercent: 0,
    failover: false,
    nextEvaluationAt: null,
    revision: 2,
    lastDecision: { decision: 'promote', actor: 'operator' },
  });
  t.deepEqual(gw.controller.model('iris').weights, { '1': 0, '2': 100 });
  await tick(gw, clock, ROLLOUT.evaluationIntervalMs * 2);
  t.deepEqual(
    decisions().map((l) => [l.decision, l.level]),
    [
      ['start', INFO],
      ['promote', INFO],
    ],
  );
  t.deepEqual(await decisionCounter(gw), { 'start/controller': 1, 'promote/operator': 1 });
});

test('invalid action bodies are 400 with {"error"}; GET on an action is 405; an unknown action is 404; nothing changes', async (t) => {
  const { log, decisions } = sink();
  const gw = await start(t, rawConfig(irisWith(ROLLOUT)), log, { rolloutClock: new ManualClock() });
  const cases: [action: string, body: unknown, message: RegExp][] = [
    ['promote', [], /must be a JSON object/],
    ['promote', null, /must be a JSON object/],
    ['promote', 'true', /must be a JSON object/],
    ['promote', { full: 1 }, /"full" is a boolean/],
    ['promote', { full: 'yes' }, /"full" is a boolean/],
    ['promote', { x: 1 }, /unknown field\(s\) x/],
    ['promote', { full: true, x: 1 }, /unknown field\(s\) x/],
    ['pause', { full: true }, /only promote takes it/],
    ['abort', { full: false }, /only promote takes it/],
    ['promote', '{"full": tr', /not valid JSON/],
    ['promote', 'full=true', /not valid JSON/],
  ];
  for (const [action, body, message] of cases) {
    const res = await admin(gw, 'POST', `/admin/models/iris/rollout/${action}`, typeof body === 'string' ? body : JSON.stringify(body));
    t.is(res.status, 400, `${action} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    t.deepEqual(Object.keys(res.body), ['error']);
    t.regex(res.body.error!, message);
  }
  const get = await admin(gw, 'GET', '/admin/models/iris/rollout/promote');
  t.is(get.status, 405);
  t.is(get.headers.get('allow'), 'POST');
  t.deepEqual(Object.keys(get.body), ['error']);
  for (const route of ['/admin/models/iris/rollout/dance', '/admin/models/iris/rollout/promote/now']) {
    const res = await admin(gw, 'POST', route);
    t.is(res.status, 404, route);
    t.regex(res.body.error!, /no such admin endpoint/);
  }
  t.like(gw.rollouts.view('iris'), { status: 'running', phase: 'shadow', revision: 1 });
  t.deepEqual(
    decisions().map((l) => l.decision),
    ['start'],
  );

  // The valid forms: no body, an empty object, and {"full": false} each promote one step.
  t.like(await admin(gw, 'POST', '/admin/models/iris/rollout/promote'), { status: 200, body: { position: 'step 1/4 (5%)' } });
  t.like(await admin(gw, 'POST', '/admin/models/iris/rollout/promote', {}), { status: 200, body: { position: 'step 2/4 (25%)' } });
  t.like(await admin(gw, 'POST', '/admin/models/iris/rollout/promote', { full: false }), { status: 200, body: { position: 'step 3/4 (50%)', revision: 4 } });
});

test('a reload keeps an unchanged rollout, restarts a changed one, and ends a removed one (config weights apply)', async (t) => {
  const { log, decisions } = sink();
  const clock = new ManualClock();
  const configWeights = { weights: { '1': 0, '2': 100 } };
  const { gw, reload } = await startFromFile(t, irisWith(ROLLOUT, configWeights), log, clock);
  await gw.rollouts.act('iris', 'promote');
  t.like(gw.rollouts.view('iris'), { position: 'step 1/4 (5%)', revision: 2 });

  // Something else changes: the rollout stays where it is, and keeps running.
  const kept = await reload(irisWith(ROLLOUT, { ...configWeights, timeoutMs: 20_000 }));
  t.like(kept, { status: 200, body: { outcome: 'applied', generation: 2 } });
  t.like(gw.rollouts.view('iris'), { status: 'running', position: 'step 1/4 (5%)', revision: 2, lastDecision: { decision: 'promote' } });
  t.like(gw.controller.model('iris'), { weightsSource: 'rollout', weights: { '1': 95, '2': 5 } });
  t.is(gw.controller.shadow.rolloutTarget('iris'), undefined, 'a weight step mirrors nothing (shadow.duringSteps is off)');
  await tick(gw, clock);
  t.like(gw.rollouts.view('iris'), { position: 'step 1/4 (5%)', revision: 3, lastDecision: { decision: 'hold' } });
  t.deepEqual(
    decisions().map((l) => l.decision),
    ['start', 'promote', 'hold'],
  );

  // The rollout section changes: a new rollout from the shadow phase.
  const changed = { ...ROLLOUT, steps: [10, 100] };
  t.like(await reload(irisWith(changed, configWeights)), { status: 200, body: { outcome: 'applied', generation: 3 } });
  const fresh = gw.rollouts.view('iris');
  t.like(fresh, {
    status: 'running',
    phase: 'shadow',
    step: null,
    steps: [10, 100],
    revision: 1,
    weights: { '1': 100, '2': 0 },
    lastDecision: { decision: 'start', actor: 'controller' },
  });
  t.is(fresh.gates, null);
  t.like(gw.controller.model('iris'), { weightsSource: 'rollout', weights: { '1': 100, '2': 0 } });
  t.deepEqual(
    decisions().map((l) => [l.decision, l.revision]),
    [
      ['start', 1],
      ['promote', 2],
      ['hold', 3],
      ['start', 1],
    ],
  );
  t.deepEqual(await decisionCounter(gw), { 'start/controller': 2, 'promote/operator': 1, 'hold/controller': 1 });
  await gw.rollouts.act('iris', 'promote');
  t.like(gw.controller.model('iris'), { weights: { '1': 90, '2': 10 } });

  // The rollout section is removed: the config's weights serve unversioned traffic again.
  t.like(await reload(irisWith(undefined, configWeights)), { status: 200, body: { outcome: 'applied', generation: 4 } });
  t.like(gw.controller.model('iris'), { weightsSource: 'config', weights: { '1': 0, '2': 100 } });
  t.is(gw.controller.shadow.rolloutTarget('iris'), undefined);
  t.false(gw.controller.shadow.signals!.watching('iris'));
  t.deepEqual(gw.rollouts.models(), []);
  t.deepEqual(gw.rollouts.views(), []);
  for (let i = 0; i < 5; i++) {
    const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
    t.is(res.status, 200);
    t.is(res.headers.get('x-model-version'), '2');
  }
  const gone = await admin(gw, 'GET', '/admin/models/iris/rollout');
  t.is(gone.status, 404);
  t.deepEqual(gone.body, { error: "model 'iris' has no rollout configured" });
  t.like(await admin(gw, 'POST', '/admin/models/iris/rollout/pause'), { status: 404, body: { error: "model 'iris' has no rollout configured" } });
  const unknown = await admin(gw, 'GET', '/admin/models/nope/rollout');
  t.is(unknown.status, 404);
  t.deepEqual(unknown.body, { error: "unknown model 'nope'" });
  t.like(await admin(gw, 'POST', '/admin/models/nope/rollout/abort'), { status: 404, body: { error: "unknown model 'nope'" } });

  const logged = decisions().length;
  await tick(gw, clock, ROLLOUT.evaluationIntervalMs * 3);
  t.is(decisions().length, logged, 'a removed rollout decides nothing more');
});

test('weights are owned by the rollout: PUT and DELETE answer 409 naming `model-gateway rollout`, then 200 once it is removed', async (t) => {
  const { log } = sink();
  const { gw, reload } = await startFromFile(t, irisWith(ROLLOUT), log, new ManualClock());
  const put = await admin(gw, 'PUT', '/admin/models/iris/weights', { '1': 50, '2': 50 });
  t.is(put.status, 409);
  t.deepEqual(Object.keys(put.body), ['error']);
  t.regex(put.body.error!, /`model-gateway rollout`/);
  const del = await admin(gw, 'DELETE', '/admin/models/iris/weights');
  t.is(del.status, 409);
  t.regex(del.body.error!, /`model-gateway rollout`/);
  t.like(gw.controller.model('iris'), { weightsSource: 'rollout', weights: { '1': 100, '2': 0 } });

  t.like(await reload(irisWith(undefined)), { status: 200, body: { outcome: 'applied' } });
  t.like(await admin(gw, 'PUT', '/admin/models/iris/weights', { '1': 50, '2': 50 }), {
    status: 200,
    body: { weightsSource: 'override', weights: { '1': 50, '2': 50 } },
  });
  t.like(await admin(gw, 'DELETE', '/admin/models/iris/weights'), { status: 200, body: { weightsSource: 'default' } });
});

test('without a state file (no config file, or rolloutState.persist: false), a restarted gateway starts the rollout again', async (t) => {
  const raw = rawConfig(irisWith(ROLLOUT));
  const clock = new ManualClock();
  const first = await start(t, raw, sink().log, { rolloutClock: clock });
  await first.rollouts.act('iris', 'promote');
  await first.rollouts.act('iris', 'promote');
  t.like(first.rollouts.view('iris'), { position: 'step 2/4 (25%)', revision: 3 });
  await first.stop();

  clock.advance(60_000);
  const { log, decisions } = sink();
  const second = await start(t, raw, log, { rolloutClock: clock });
  const view = second.rollouts.view('iris');
  t.like(view, {
    status: 'running',
    phase: 'shadow',
    step: null,
    revision: 1,
    weights: { '1': 100, '2': 0 },
    startedAt: new Date(clock.now()).toISOString(),
    lastDecision: { decision: 'start', actor: 'controller' },
    coordination: { mode: 'local', leader: true, inSync: true, kept: 'memory', stateFile: null, stateFileError: null },
  });
  t.like(second.controller.model('iris'), { weightsSource: 'rollout', weights: { '1': 100, '2': 0 } });
  t.deepEqual(
    decisions().map((l) => l.decision),
    ['start'],
  );
});

// BUG (src/rollout/manager.ts #reconcile/#adoptOrCreate with LocalRolloutStore): a rollout's state is stored under
// `<model>:<hash of the rollout section>` and never deleted when #reconcile drops the entry. A section that comes
// back (removed then added again, or changed and changed back) finds its old state and #adoptOrCreate adopts it with
// decidedHere=false: the rollout resumes where it was (here: 25% of real traffic on the candidate at once, no shadow
// phase), and no rollout.decision line or counter increment records the change. docs/rollouts.md: "a changed section starts a
// new rollout from the shadow phase; removing it ends the rollout".
test('a rollout section removed and added back starts a fresh rollout from the shadow phase', async (t) => {
  const { log, decisions } = sink();
  const { gw, reload } = await startFromFile(t, irisWith(ROLLOUT), log, new ManualClock());
  await gw.rollouts.act('iris', 'promote');
  await gw.rollouts.act('iris', 'promote');
  t.like(gw.rollouts.view('iris'), { position: 'step 2/4 (25%)', revision: 3 });
  await reload(irisWith(undefined));
  t.is(gw.controller.model('iris').weightsSource, 'default');
  await reload(irisWith(ROLLOUT));
  t.like(gw.controller.model('iris'), { weightsSource: 'rollout', weights: { '1': 100, '2': 0 } }, 'no real traffic for the candidate before its shadow phase');
  t.like(gw.rollouts.view('iris'), { phase: 'shadow', revision: 1, lastDecision: { decision: 'start' } });
  t.deepEqual(
    decisions().map((l) => l.decision),
    ['start', 'promote', 'promote', 'start'],
  );
});

test('a rollout section changed and changed back starts a fresh rollout, not the old one', async (t) => {
  const { log, decisions } = sink();
  const { gw, reload } = await startFromFile(t, irisWith(ROLLOUT), log, new ManualClock());
  await gw.rollouts.act('iris', 'promote');
  await gw.rollouts.act('iris', 'abort');
  await reload(irisWith({ ...ROLLOUT, steps: [10, 100] }));
  t.like(gw.rollouts.view('iris'), { status: 'running', phase: 'shadow', revision: 1 });
  await reload(irisWith(ROLLOUT));
  t.like(
    gw.rollouts.view('iris'),
    { status: 'running', phase: 'shadow', revision: 1, lastDecision: { decision: 'start' } },
    'not the aborted rollout of the first section',
  );
  t.deepEqual(
    decisions().map((l) => l.decision),
    ['start', 'promote', 'abort', 'start', 'start'],
  );
});

test('with a state file, a restarted gateway resumes its rollouts; a section changed while it was down starts afresh', async (t) => {
  const dir = await tempDir('mg-rollout-restart-');
  const file = path.join(dir, 'gateway.yaml');
  const models = { ...irisWith(ROLLOUT), mlp: irisWith({ ...ROLLOUT, steps: [50, 100] }).iris };
  await writeConfig(file, rawConfig(models, { reload: { watch: false, pollIntervalMs: 0 } }));
  const clock = new ManualClock();
  const boot = async (log: Logger) => {
    const { config, file: absolute } = await loadConfig(file);
    const gw = await startGateway(config, log, { configFile: absolute, rolloutClock: clock });
    t.teardown(() => gw.stop());
    return gw;
  };
  const first = await boot(sink().log);
  await first.rollouts.act('iris', 'promote');
  await first.rollouts.act('iris', 'promote');
  await first.rollouts.act('mlp', 'promote', { full: true });
  const before = { iris: first.rollouts.view('iris'), mlp: first.rollouts.view('mlp') };
  t.like(before.iris, {
    position: 'step 2/4 (25%)',
    revision: 3,
    coordination: { kept: 'file', stateFile: `${file}.rollout-state.json`, stateFileError: null },
  });
  t.like(before.mlp, { status: 'complete', weights: { '1': 0, '2': 100 } });
  await first.stop();

  clock.advance(60_000);
  const { log, lines, decisions } = sink();
  const second = await boot(log);
  const iris = second.rollouts.view('iris');
  t.deepEqual({ ...iris, coordination: undefined, nextEvaluationAt: undefined }, { ...before.iris, coordination: undefined, nextEvaluationAt: undefined });
  t.like(second.controller.model('iris'), { weightsSource: 'rollout', weights: { '1': 75, '2': 25 } });
  t.is(second.controller.shadow.rolloutTarget('iris'), undefined, 'a weight step mirrors nothing');
  // Complete stays complete: the candidate keeps all the traffic, nothing goes back to stable.
  t.like(second.rollouts.view('mlp'), { status: 'complete', revision: before.mlp.revision });
  t.like(second.controller.model('mlp'), { weightsSource: 'rollout', weights: { '1': 0, '2': 100 } });
  for (let i = 0; i < 3; i++) t.is((await postJson(`${second.url}/v2/models/mlp/infer`, irisRequest())).headers.get('x-model-version'), '2');
  // Resuming is no decision (nothing counted), but it is said.
  t.deepEqual(decisions(), []);
  t.true(lines().some((l) => l.event === 'rollout.resumed' && l.model === 'iris' && String(l.msg).includes('step 2/4 (25%)')));
  // The resumed rollout evaluates again, on fresh samples (none yet: it holds).
  await tick(second, clock);
  t.like(second.rollouts.view('iris'), { position: 'step 2/4 (25%)', lastDecision: { decision: 'hold' } });
  await second.stop();

  // iris's section changes while the gateway is down: its old state is neither resumed nor kept.
  await writeConfig(file, rawConfig({ ...models, iris: irisWith({ ...ROLLOUT, steps: [10, 100] }).iris }, { reload: { watch: false, pollIntervalMs: 0 } }));
  const third = await boot(sink().log);
  t.like(third.rollouts.view('iris'), { phase: 'shadow', revision: 1, steps: [10, 100], lastDecision: { decision: 'start' } });
  t.like(third.rollouts.view('mlp'), { status: 'complete' });
  const onDisk = JSON.parse(await readFile(`${file}.rollout-state.json`, 'utf8')) as { rollouts: Record<string, unknown> };
  t.is(Object.keys(onDisk.rollouts).length, 2, 'the old iris section is gone from the file');
});
