// Config of progressive rollouts and of the replicas' coordination: every default, and the mistakes a user would make,
// each reported at its exact path.

import test from 'ava';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { rolloutSchema } from '../../src/config/schema.js';
import { ROOT, irisModels } from '../helpers/gateway.js';

const iris = irisModels().iris as Record<string, unknown>;
const withIris = (extra: Record<string, unknown>, top: Record<string, unknown> = {}) => ({ ...top, models: { iris: { ...iris, ...extra } } });
const withRollout = (rollout: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  withIris({ ...extra, rollout: { stable: '1', candidate: '2', ...rollout } });
const parse = (raw: unknown) => parseConfig(raw, { baseDir: ROOT, source: 'test', env: {} });

const ROLLOUT_DEFAULTS = {
  stable: '1',
  candidate: '2',
  shadow: { percent: 100, requests: 1000, durationMs: 600_000, duringSteps: false, compare: {} },
  steps: [5, 25, 50, 100],
  stepHoldMs: 300_000,
  evaluationIntervalMs: 30_000,
  windowMs: 120_000,
  gates: { minAgreement: 0.99, maxErrorRate: 0.01, maxP99Ratio: 1.5, p99AllowanceMs: 5, minSamples: 100 },
};

test('a minimal rollout gets every default', async (t) => {
  const config = await parse(withRollout({}));
  t.deepEqual(config.models.iris!.rollout, ROLLOUT_DEFAULTS);
  t.is(config.coordination, undefined);
  // The schema alone gives the same (what the state machine's tests rely on).
  t.deepEqual(rolloutSchema.parse({ stable: '1', candidate: '2' }), ROLLOUT_DEFAULTS);
});

test('a full rollout is kept as written, with defaults inside its sections', async (t) => {
  const config = await parse(
    withRollout({
      shadow: { percent: 12.5, requests: 50, compare: { label: { mode: 'classification' }, probabilities: { mode: 'regression', maxRelL2: 0.1 } } },
      steps: [1, 100],
      stepHoldMs: 1000,
      evaluationIntervalMs: 500,
      windowMs: 60_000,
      gates: { minAgreement: 0.5, minSamples: 1 },
    }),
  );
  t.deepEqual(config.models.iris!.rollout, {
    stable: '1',
    candidate: '2',
    shadow: {
      percent: 12.5,
      requests: 50,
      durationMs: 600_000,
      duringSteps: false,
      compare: { label: { mode: 'classification' }, probabilities: { mode: 'regression', maxRelL2: 0.1, maxAbsDiff: 1e-6 } },
    },
    steps: [1, 100],
    stepHoldMs: 1000,
    evaluationIntervalMs: 500,
    windowMs: 60_000,
    gates: { minAgreement: 0.5, maxErrorRate: 0.01, maxP99Ratio: 1.5, p99AllowanceMs: 5, minSamples: 1 },
  });
});

test('a rollout may sit next to a shadow of another version and reversed versions', async (t) => {
  const models = irisModels();
  const m = models.iris as Record<string, unknown>;
  (m.versions as Record<string, unknown>)['3'] = (m.versions as Record<string, unknown>)['2'];
  const config = await parse({ models: { iris: { ...m, shadow: { targets: [{ version: '3' }] }, rollout: { stable: '2', candidate: '1', steps: [100] } } } });
  t.like(config.models.iris!.rollout, { stable: '2', candidate: '1', steps: [100] });
  t.deepEqual(config.models.iris!.shadow!.targets, [{ version: '3', percent: 100 }]);
});

const rejects = test.macro({
  async exec(t, raw: unknown, expected: string[]) {
    const err = await t.throwsAsync(parse(raw), { instanceOf: ConfigError });
    t.deepEqual(err!.problems, expected);
  },
  title: (given = '') => `rejected: ${given}`,
});

test('an unknown stable version', rejects, withRollout({ stable: '3' }), ["models.iris.rollout.stable: version '3' is not one of 1, 2"]);
test('an unknown candidate version', rejects, withRollout({ candidate: '9' }), ["models.iris.rollout.candidate: version '9' is not one of 1, 2"]);
test('stable and candidate both unknown', rejects, withRollout({ stable: 'a', candidate: 'b' }), [
  "models.iris.rollout.candidate: version 'b' is not one of 1, 2",
  "models.iris.rollout.stable: version 'a' is not one of 1, 2",
]);
test('the candidate is the stable version', rejects, withRollout({ candidate: '1' }), ['models.iris.rollout.candidate: must differ from rollout.stable']);
test('the candidate is also a shadow target of the model', rejects, withRollout({}, { shadow: { targets: [{ version: '2', percent: 10 }] } }), [
  "models.iris.shadow.targets.0.version: version '2' is the rollout's candidate: the rollout mirrors traffic to it itself",
]);
test('steps repeating a weight', rejects, withRollout({ steps: [10, 50, 50, 100] }), ['models.iris.rollout.steps: steps must be strictly ascending']);
test('steps descending', rejects, withRollout({ steps: [50, 10] }), ['models.iris.rollout.steps: steps must be strictly ascending']);
test('a step of 0', rejects, withRollout({ steps: [0, 50] }), ['models.iris.rollout.steps.0: Too small: expected number to be >=1']);
test('a step of 101', rejects, withRollout({ steps: [50, 101] }), ['models.iris.rollout.steps.1: Too big: expected number to be <=100']);
test('a step of 2.5', rejects, withRollout({ steps: [2.5, 50] }), ['models.iris.rollout.steps.0: Invalid input: expected int, received number']);
test('no steps', rejects, withRollout({ steps: [] }), ['models.iris.rollout.steps: Too small: expected array to have >=1 items']);
test('unknown keys inside the rollout and its sections', rejects, withRollout({ step: [10], shadow: { pct: 5 }, gates: { minAgreemnt: 0.9 } }), [
  "models.iris.rollout: unknown key 'step'",
  "models.iris.rollout.gates: unknown key 'minAgreemnt'",
  "models.iris.rollout.shadow: unknown key 'pct'",
]);
test('an unknown comparison rule key in the rollout', rejects, withRollout({ shadow: { compare: { label: { mode: 'classification', tolerance: 1 } } } }), [
  "models.iris.rollout.shadow.compare.label: unknown key 'tolerance'",
]);
test(
  'out-of-range gates and shadow share',
  rejects,
  withRollout({ shadow: { percent: 0 }, gates: { minAgreement: 1.5, maxErrorRate: -0.1, maxP99Ratio: 0.5, minSamples: 0 } }),
  [
    'models.iris.rollout.gates.maxErrorRate: Too small: expected number to be >=0',
    'models.iris.rollout.gates.maxP99Ratio: Too small: expected number to be >=1',
    'models.iris.rollout.gates.minAgreement: Too big: expected number to be <=1',
    'models.iris.rollout.gates.minSamples: Too small: expected number to be >=1',
    'models.iris.rollout.shadow.percent: Too small: expected number to be >=0.01',
  ],
);
test('zero durations', rejects, withRollout({ stepHoldMs: 0, windowMs: 0, evaluationIntervalMs: 0, shadow: { durationMs: 0, requests: 0 } }), [
  'models.iris.rollout.evaluationIntervalMs: Too small: expected number to be >=1',
  'models.iris.rollout.shadow.durationMs: Too small: expected number to be >=1',
  'models.iris.rollout.shadow.requests: Too small: expected number to be >=1',
  'models.iris.rollout.stepHoldMs: Too small: expected number to be >=1',
  'models.iris.rollout.windowMs: Too small: expected number to be >=1',
]);
test('a rollout without a candidate', rejects, withIris({ rollout: { stable: '1' } }), [
  'models.iris.rollout.candidate: Invalid input: expected string, received undefined',
]);

// ---------------------------------------------------------------------------------------------------------------
// coordination.redis

test('coordination.redis defaults', async (t) => {
  const config = await parse(withIris({}, { coordination: { redis: { url: 'redis://:secret@redis:6379/0' } } }));
  t.deepEqual(config.coordination, {
    redis: {
      url: 'redis://:secret@redis:6379/0',
      keyPrefix: 'model-gateway:rollout:',
      leaseTtlMs: 10_000,
      syncIntervalMs: 1_000,
      commandTimeoutMs: 1_000,
      connectTimeoutMs: 2_000,
    },
  });
});

test('coordination.redis accepts rediss:// and a URL from the environment', async (t) => {
  const config = await parseConfig(withIris({}, { coordination: { redis: { url: '${REDIS_URL}', keyPrefix: 'gw:' } } }), {
    baseDir: ROOT,
    source: 'test',
    env: { REDIS_URL: 'rediss://redis.example:6380' },
  });
  t.like(config.coordination!.redis, { url: 'rediss://redis.example:6380', keyPrefix: 'gw:' });
});

test('a coordination URL that is not redis', rejects, withIris({}, { coordination: { redis: { url: 'http://redis:6379' } } }), [
  'coordination.redis.url: url must start with redis:// or rediss://',
]);
test('coordination without redis', rejects, withIris({}, { coordination: {} }), ['coordination.redis: Invalid input: expected object, received undefined']);
test(
  'unknown keys and too-short timings in coordination.redis',
  rejects,
  withIris({}, { coordination: { redis: { url: 'redis://r', lease: 1, leaseTtlMs: 50, syncIntervalMs: 5, connectTimeoutMs: 10 } } }),
  [
    "coordination.redis: unknown key 'lease'",
    'coordination.redis.connectTimeoutMs: Too small: expected number to be >=100',
    'coordination.redis.leaseTtlMs: Too small: expected number to be >=100',
    'coordination.redis.syncIntervalMs: Too small: expected number to be >=10',
  ],
);
