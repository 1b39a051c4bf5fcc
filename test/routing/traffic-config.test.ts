// Config keys for traffic management, admin and reload: defaults with their units, and every invalid shape reported by path.

import test from 'ava';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { ROOT, irisModels } from '../helpers/gateway.js';

const iris = irisModels().iris as Record<string, unknown>;
const withIris = (extra: Record<string, unknown>, top: Record<string, unknown> = {}) => ({ ...top, models: { iris: { ...iris, ...extra } } });
const parse = (raw: unknown) => parseConfig(raw, { baseDir: ROOT, source: 'test', env: {} });

test('defaults: admin on loopback:8081 without a token, reload watching, no traffic keys on a model', async (t) => {
  const config = await parse(withIris({}));
  t.deepEqual(config.admin, {
    enabled: true,
    host: '127.0.0.1',
    port: 8081,
    audit: { enabled: true, maxFileBytes: 16 * 1024 * 1024 },
    console: { enabled: true, sessionTtlMs: 8 * 60 * 60 * 1000, maxSessions: 64, maxStreams: 16, secureCookie: false },
  });
  t.deepEqual(config.reload, { watch: true, debounceMs: 300, pollIntervalMs: 5000, drainTimeoutMs: 30_000 });
  t.is(config.disagreementLog, undefined);
  const model = config.models.iris!;
  t.is(model.weights, undefined);
  t.is(model.sticky, undefined);
  t.is(model.shadow, undefined);
  t.deepEqual(model.override, { enabled: false });
});

test('shadow and disagreement-log defaults', async (t) => {
  const config = await parse(
    withIris({ shadow: { targets: [{ version: '2' }], compare: { probabilities: { mode: 'regression' } } } }, { disagreementLog: { path: 'd.jsonl' } }),
  );
  t.deepEqual(config.models.iris!.shadow, {
    targets: [{ version: '2', percent: 100 }],
    timeoutMs: 5000,
    maxConcurrent: 8,
    compare: { probabilities: { mode: 'regression', maxRelL2: 0.01, maxAbsDiff: 1e-6 } },
  });
  t.deepEqual(config.disagreementLog, { path: 'd.jsonl', sampleRate: 1, maxFileBytes: 64 * 1024 * 1024, maxElementsPerOutput: 1024, includeInputs: false });
});

test('sticky header names are lower-cased (HTTP headers are case-insensitive)', async (t) => {
  const config = await parse(withIris({ weights: { '1': 1, '2': 1 }, sticky: { header: 'X-User-Id' } }));
  t.deepEqual(config.models.iris!.sticky, { header: 'x-user-id' });
});

test('the admin token can come from the environment through ${VAR}', async (t) => {
  const config = await parseConfig(
    { ...withIris({}), admin: { token: '${ADMIN_TOKEN}' } },
    { baseDir: ROOT, source: 'test', env: { ADMIN_TOKEN: 'a-token-of-sixteen-chars' } },
  );
  t.is(config.admin.token, 'a-token-of-sixteen-chars');
});

const rejects = test.macro({
  async exec(t, raw: unknown, expected: string[]) {
    const err = await t.throwsAsync(parse(raw), { instanceOf: ConfigError });
    t.deepEqual(err!.problems, expected);
  },
  title: (given = '') => `rejected: ${given}`,
});

test('weights naming an unknown version', rejects, withIris({ weights: { '1': 50, '3': 50 } }), ["models.iris.weights.3: version '3' is not one of 1, 2"]);
test('all-zero weights', rejects, withIris({ weights: { '1': 0, '2': 0 } }), ['models.iris.weights: at least one weight must be above 0']);
test('negative and fractional weights', rejects, withIris({ weights: { '1': -1, '2': 0.5 } }), [
  'models.iris.weights.1: Too small: expected number to be >=0',
  'models.iris.weights.2: Invalid input: expected int, received number',
]);
test('a shadow target that is not a version', rejects, withIris({ shadow: { targets: [{ version: '9' }] } }), [
  "models.iris.shadow.targets.0.version: version '9' is not one of 1, 2",
]);
test('a shadow target listed twice', rejects, withIris({ shadow: { targets: [{ version: '2' }, { version: '2', percent: 5 }] } }), [
  "models.iris.shadow.targets.1.version: version '2' is listed twice",
]);
test('a shadow percentage above 100', rejects, withIris({ shadow: { targets: [{ version: '2', percent: 150 }] } }), [
  'models.iris.shadow.targets.0.percent: Too big: expected number to be <=100',
]);
test('no shadow targets', rejects, withIris({ shadow: { targets: [] } }), ['models.iris.shadow.targets: list at least one shadow target']);
test('an unknown comparison mode', rejects, withIris({ shadow: { targets: [{ version: '2' }], compare: { label: { mode: 'fuzzy' } } } }), [
  "models.iris.shadow.compare.label.mode: Invalid discriminator value. Expected 'classification' | 'regression' | 'ignore'",
]);
test('sticky with both a header and a claim', rejects, withIris({ sticky: { header: 'x-user-id', claim: 'sub' } }), [
  'models.iris.sticky: set exactly one of header or claim',
]);
test('sticky with neither', rejects, withIris({ sticky: {} }), ['models.iris.sticky: set exactly one of header or claim']);
test('an invalid sticky header name', rejects, withIris({ sticky: { header: 'x user' } }), [
  'models.iris.sticky.header: header must be a valid HTTP header name',
]);
test('a short admin token', rejects, withIris({}, { admin: { token: 'short' } }), ['admin.token: admin.token must be at least 16 characters']);
test('unknown keys in the new sections', rejects, withIris({ override: { enabled: true, scope: 'x' } }, { reload: { watchh: true } }), [
  "models.iris.override: unknown key 'scope'",
  "reload: unknown key 'watchh'",
]);
