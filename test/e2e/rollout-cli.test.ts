// `model-gateway rollout ...` (the real CLI process) against a gateway in the test process whose rollout clock the
// test moves by hand: status of one and of every rollout, pause/resume/promote/abort, and clear usage and 404 failures.

import test, { type ExecutionContext } from 'ava';
import type { ModelView } from '../../src/reload/views.js';
import type { RolloutView } from '../../src/rollout/view.js';
import { gatewayConfig, irisModels, irisRequest, IRIS_ROW, postJson, runCli, startTestGateway } from '../helpers/gateway.js';
import { ManualClock } from '../helpers/manual-clock.js';

const TOKEN = 'rollout-cli-admin-token-0123';

const ROLLOUT = {
  stable: '1',
  candidate: '2',
  shadow: { requests: 20, compare: { probabilities: { mode: 'classification' } } },
  steps: [25, 100],
  stepHoldMs: 1000,
  evaluationIntervalMs: 1000,
  windowMs: 5000,
  // A generous latency allowance: the p99 gate measures real latencies, and a slow CI machine must not roll back.
  gates: { minSamples: 10, minAgreement: 0.5, p99AllowanceMs: 60_000 },
};

type Cli = Awaited<ReturnType<typeof runCli>>;

/** A gateway with a rollout on iris and a model `plain` without one; `cli` runs `model-gateway rollout ...`. */
async function rolloutGateway(t: ExecutionContext, withRollout = true) {
  const clock = new ManualClock(Date.now());
  const models = withRollout ? { iris: { ...(irisModels().iris as Record<string, unknown>), rollout: ROLLOUT }, plain: irisModels().iris } : irisModels();
  const gw = await startTestGateway(gatewayConfig({ models, admin: { token: TOKEN } }), { rolloutClock: clock });
  t.teardown(() => gw.stop());
  const admin = ['--admin-url', gw.admin!.url, '--token', TOKEN];
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${gw.admin!.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    t.is(res.status, 200, path);
    return (await res.json()) as T;
  };
  return {
    gw,
    /** `model-gateway rollout ...args` */
    cli: (...args: string[]) => runCli(['rollout', ...args, ...admin]),
    /** Any other command, e.g. `status`. */
    command: (...args: string[]) => runCli([...args, ...admin]),
    view: () => api<RolloutView>('/admin/models/iris/rollout'),
    model: (name: string) => api<ModelView>(`/admin/models/${name}`),
    /** Unversioned inference, then waits for the mirrored copies to settle so the gates have samples. */
    async send(n = 30) {
      const versions: string[] = [];
      for (let i = 0; i < n; i++) {
        const r = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([IRIS_ROW]));
        t.is(r.status, 200);
        versions.push(r.body.model_version as string);
      }
      await gw.controller.shadow.idle();
      return versions;
    },
    /** One controller evaluation. */
    async evaluate() {
      clock.advance(1000);
      await gw.rollouts.idle();
    },
  };
}

function ok(t: ExecutionContext, r: Cli): string {
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  return r.stdout;
}

/** Exit 1 and exactly one line on stderr. */
function failed(t: ExecutionContext, r: Cli, message: string): void {
  t.is(r.code, 1, r.stdout);
  t.is(r.stderr, `model-gateway rollout: ${message}\n`);
  t.is(r.stdout, '');
}

test("status: one rollout and every rollout, in text and as the admin API's JSON", async (t) => {
  const g = await rolloutGateway(t);
  await g.send();
  await g.evaluate(); // shadow phase compared ≥ 20 requests and every gate passes: step 1
  const view = await g.view();
  t.like(view, { status: 'running', position: 'step 1/2 (25%)', weights: { '1': 75, '2': 25 } });
  const c = view.coordination;

  const text = ok(t, await g.cli('status', 'iris'));
  const lines = text.split('\n');
  t.is(lines[0], 'iris  1 → 2  running  step 1/2 (25%)  weights 1=75 2=25  shadow 0%  failover on'); // steps mirror nothing by default
  t.is(lines[1], `  last decision: advance by controller at ${view.lastDecision.at}: shadow phase passed (agreement, errorRate): advancing to step 1/2 (25%)`);
  t.is(lines[2], `  gates (evaluated at ${view.evaluatedAt}):`);
  t.regex(lines[3]!, /^ {4}GATE +STATUS +VALUE +LIMIT +SAMPLES$/);
  const [agreement, errorRate, p99] = view.gates!;
  t.regex(lines[4]!, new RegExp(`^ {4}agreement +pass +100\\.00% +50\\.00% +${agreement!.samples}$`));
  t.regex(lines[5]!, new RegExp(`^ {4}errorRate +pass +0\\.00% +1\\.00% +${errorRate!.samples}$`));
  // Latency is judged on real requests: the candidate got none in the shadow phase (its copies are not timed).
  t.regex(lines[6]!, new RegExp(`^ {4}p99 +skipped +n/a +n/a +${p99!.samples}$`));
  t.true(agreement!.samples >= 20);
  t.is(lines[7], `  next evaluation: ${view.nextEvaluationAt}`);
  t.is(lines[8], `  coordination: local, replica ${c.replica}, leader yes, in sync yes`);
  // Started without a config file: nothing to keep the state beside.
  t.is(lines[9], '  state: in memory only (rolloutState.persist is off, or no config file: a restart starts the rollout again)');
  t.is(lines.length, 11); // and the final newline

  // Every model whose weights come from a rollout: iris only (plain has none).
  t.is(ok(t, await g.cli('status')), text);

  // --json: the admin API's view, unchanged (the manual clock stands still between the calls).
  t.deepEqual(JSON.parse(ok(t, await g.cli('status', 'iris', '--json'))), view);
  t.deepEqual(JSON.parse(ok(t, await g.cli('status', '--json'))), [view]);

  // The general status command points at the rollout for iris's weights.
  const status = ok(t, await g.command('status'));
  t.regex(status, /\niris {2}ready {2}weights set by its progressive rollout \(model-gateway rollout status iris\)\n/);
  t.regex(status, /\nplain {2}ready {2}no weights: version 1 takes all\n/);
});

test('status: before the first evaluation, and with no rollout anywhere', async (t) => {
  const g = await rolloutGateway(t);
  const view = await g.view();
  const lines = ok(t, await g.cli('status', 'iris')).split('\n');
  t.is(lines[0], 'iris  1 → 2  running  shadow phase  weights 1=100 2=0  shadow 100%  failover off');
  t.is(lines[1], `  last decision: start by controller at ${view.startedAt}: rollout configured: shadow phase begins`);
  t.is(lines[2], '  gates: not evaluated yet');
  t.is(lines[3], `  next evaluation: ${view.nextEvaluationAt}`);

  const none = await rolloutGateway(t, false);
  t.is(ok(t, await none.cli('status')), 'no model has a progressive rollout\n');
  t.deepEqual(JSON.parse(ok(t, await none.cli('status', '--json'))), []);
});

test("pause and resume; a second pause is refused with the gateway's 409", async (t) => {
  const g = await rolloutGateway(t);
  const paused = ok(t, await g.cli('pause', 'iris'));
  t.is(paused, 'iris: pause — paused by an operator in shadow phase\n  now paused  shadow phase  weights 1=100 2=0  shadow 100%  failover off\n');
  t.like(await g.view(), { status: 'paused', lastDecision: { decision: 'pause', actor: 'operator' } });
  const status = ok(t, await g.cli('status', 'iris'));
  t.regex(status, /^iris {2}1 → 2 {2}paused {2}shadow phase {2}weights 1=100 2=0/);
  t.regex(status, /\n {2}last decision: pause by operator at \S+: paused by an operator in shadow phase\n/);

  failed(t, await g.cli('pause', 'iris'), 'POST /admin/models/iris/rollout/pause failed with 409: cannot pause: the rollout is paused');

  const resumed = ok(t, await g.cli('resume', 'iris'));
  t.is(
    resumed,
    "iris: resume — resumed by an operator in shadow phase; the phase's hold starts again\n  now running  shadow phase  weights 1=100 2=0  shadow 100%  failover off\n",
  );
  t.like(await g.view(), { status: 'running', lastDecision: { decision: 'resume' } });
  failed(t, await g.cli('resume', 'iris'), 'POST /admin/models/iris/rollout/resume failed with 409: cannot resume: the rollout is running');
});

test('promote one step, promote --full, then abort sends all traffic back to stable', async (t) => {
  const g = await rolloutGateway(t);
  const promoted = ok(t, await g.cli('promote', 'iris'));
  t.is(
    promoted,
    'iris: promote — promoted by an operator from shadow phase to step 1/2 (25%)\n  now running  step 1/2 (25%)  weights 1=75 2=25  shadow 0%  failover on\n',
  );
  t.like(await g.view(), { status: 'running', phase: 'step', step: 1, candidateWeight: 25 });
  t.like(await g.model('iris'), { weightsSource: 'rollout', weights: { '1': 75, '2': 25 } });

  const full = ok(t, await g.cli('promote', 'iris', '--full'));
  t.is(
    full,
    'iris: promote — promoted by an operator from step 1/2 (25%) to complete at 100%\n  now complete  complete at 100%  weights 1=0 2=100  shadow 0%  failover off\n',
  );
  t.like(await g.view(), { status: 'complete', candidateWeight: 100, nextEvaluationAt: null });
  t.regex(ok(t, await g.cli('status', 'iris')), /\n {2}next evaluation: not evaluating \(complete\)\n/);
  t.true((await g.send(5)).every((v) => v === '2'));

  const aborted = ok(t, await g.cli('abort', 'iris'));
  t.is(
    aborted,
    'iris: abort — aborted by an operator in complete at 100%: all traffic back to 1\n  now ABORTED  all on stable (aborted in step 2/2 (100%))  weights 1=100 2=0  shadow 0%  failover off\n',
  );
  t.like(await g.view(), { status: 'aborted', weights: { '1': 100, '2': 0 } });
  t.like(await g.model('iris'), { weightsSource: 'rollout', weights: { '1': 100 } });
  t.true((await g.send(5)).every((v) => v === '1'));
  const status = ok(t, await g.cli('status', 'iris'));
  t.regex(status, /^iris {2}1 → 2 {2}ABORTED {2}/);
  t.regex(status, /\n {2}next evaluation: not evaluating \(aborted\)\n/);
  failed(t, await g.cli('abort', 'iris'), 'POST /admin/models/iris/rollout/abort failed with 409: the rollout is already aborted');
  failed(
    t,
    await g.cli('promote', 'iris'),
    'POST /admin/models/iris/rollout/promote failed with 409: cannot promote: the rollout is aborted (resume it first)',
  );
});

test('usage errors exit 2 and change nothing', async (t) => {
  const g = await rolloutGateway(t);
  const cases: [string[], string | RegExp][] = [
    [[], 'name a subcommand: status, pause, resume, promote or abort'],
    [['pasue', 'iris'], "unknown subcommand 'pasue': use status, pause, resume, promote or abort"],
    [['pause'], 'usage: model-gateway rollout pause MODEL'],
    [['promote'], 'usage: model-gateway rollout promote MODEL [--full]'],
    [['abort', 'iris', 'plain'], 'usage: model-gateway rollout abort MODEL'],
    [['status', 'iris', 'plain'], 'usage: model-gateway rollout status [MODEL] [--json]'],
    [['pause', 'iris', '--full'], '--full goes with rollout promote, not rollout pause'],
    [['status', '--full'], '--full goes with rollout promote, not rollout status'],
    [['pause', 'iris', '--reset'], '--reset goes with shift, not rollout'],
    [['pause', 'iris', '--fast'], /^Unknown option '--fast'/],
  ];
  for (const [args, message] of cases) {
    const r = await g.cli(...args);
    t.is(r.code, 2, `rollout ${args.join(' ')}: ${r.stdout}`);
    if (typeof message === 'string') t.is(r.stderr, `model-gateway rollout: ${message}\n`, `rollout ${args.join(' ')}`);
    else t.regex(r.stderr.replace(/^model-gateway rollout: /, ''), message);
  }
  const other = await g.command('status', '--full');
  t.is(other.code, 2);
  t.is(other.stderr, 'model-gateway status: --full goes with rollout promote\n');
  t.like(await g.view(), { status: 'running', phase: 'shadow', revision: 1 });
});

test("a model without a rollout, or no such model: exit 1 with the gateway's 404", async (t) => {
  const g = await rolloutGateway(t);
  failed(t, await g.cli('status', 'plain'), "GET /admin/models/plain/rollout failed with 404: model 'plain' has no rollout configured");
  failed(t, await g.cli('pause', 'plain'), "POST /admin/models/plain/rollout/pause failed with 404: model 'plain' has no rollout configured");
  failed(t, await g.cli('status', 'nope'), "GET /admin/models/nope/rollout failed with 404: unknown model 'nope'");
  failed(t, await g.cli('promote', 'nope', '--full'), "POST /admin/models/nope/rollout/promote failed with 404: unknown model 'nope'");
});
