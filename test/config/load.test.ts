// Config loading: strict schema, defaults, ${ENV} substitution and path-level problem reports.

import test from 'ava';
import path from 'node:path';
import { ConfigError, loadConfig, parseConfig, substituteEnv } from '../../src/config/load.js';
import { MODELS, ROOT, irisModels, runCli, writeConfigFile } from '../helpers/gateway.js';

const parse = (raw: unknown, env: NodeJS.ProcessEnv = {}) => parseConfig(raw, { baseDir: ROOT, source: 'test', env });

async function problemsOf(raw: unknown, env: NodeJS.ProcessEnv = {}): Promise<string[]> {
  const err = await parse(raw, env).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(err)}`);
  return err.problems;
}

test('a minimal config gets every default', async (t) => {
  const config = await parse({ models: irisModels() });
  t.deepEqual(config.server, {
    host: '0.0.0.0',
    port: 8080,
    maxBodyBytes: 16 * 1024 * 1024,
    keepAliveTimeoutMs: 75_000,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 60_000,
    shutdownTimeoutMs: 25_000,
    drainDelayMs: 5_000,
    drainQuietMs: 0,
    maxHeaderBytes: 16 * 1024,
    maxConnections: 0,
    maxBufferedBodyBytes: 1024 * 1024 * 1024,
    shedAboveRssBytes: 0,
    workers: 1,
    grpc: { enabled: true, port: 8082, keepaliveTimeMs: 60_000, keepaliveTimeoutMs: 20_000, maxConnectionAgeMs: 0, maxConcurrentStreams: 1000 },
  });
  t.is(config.logging.level, 'info');
  t.deepEqual(config.models.iris!.versions['1']!.backend, {
    kind: 'onnx',
    path: path.join(MODELS, 'iris-v1.onnx'),
    workers: 1,
    intraOpThreads: 1,
    maxQueue: 256,
  });
});

test('relative model paths resolve against the config file directory', async (t) => {
  const file = await writeConfigFile({ models: { m: { versions: { '1': { backend: { kind: 'onnx', path: 'model.onnx' } } } } } });
  const problems = await loadConfig(file).then(
    () => [],
    (e: ConfigError) => e.problems,
  );
  t.deepEqual(problems, [`models.m.versions.1.backend.path: file not found (${path.join(path.dirname(file), 'model.onnx')})`]);
});

const rejects = test.macro(async (t, raw: unknown, expected: string[], env: NodeJS.ProcessEnv = {}) => {
  t.deepEqual(await problemsOf(raw, env), expected);
});

test(
  'a missing model file is reported by path',
  rejects,
  {
    models: { iris: { versions: { '2': { backend: { kind: 'onnx', path: '/nonexistent/v2.onnx' } } } } },
  },
  ['models.iris.versions.2.backend.path: file not found (/nonexistent/v2.onnx)'],
);

test(
  'unknown keys are rejected at every level',
  rejects,
  {
    servr: {},
    server: { prot: 1 },
    models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: 'x', threads: 2 } } }, weight: 3 } },
  },
  [
    "(root): unknown key 'servr'",
    "models.iris: unknown key 'weight'",
    "models.iris.versions.1.backend: unknown key 'threads'",
    'models.iris.versions.1.backend.path: file not found (/work/main/x)'.replace('/work/main', ROOT),
    "server: unknown key 'prot'",
  ],
);

test(
  'every problem is listed, each with its path',
  rejects,
  {
    server: { port: 70000, maxBodyBytes: 'big' },
    models: { iris: { defaultVersion: '3', versions: { '1': { backend: { kind: 'onnx', path: '/no/such.onnx', workers: 0 } } } } },
  },
  [
    'models.iris.versions.1.backend.path: file not found (/no/such.onnx)',
    'models.iris.versions.1.backend.workers: Too small: expected number to be >=1',
    'server.maxBodyBytes: Invalid input: expected number, received string',
    'server.port: Too big: expected number to be <=65535',
  ],
);

test(
  'a default version must be one of the versions',
  rejects,
  {
    models: { iris: { defaultVersion: '3', versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } } } } },
  },
  ["models.iris.defaultVersion: version '3' is not one of 1"],
);

test('unknown backend kinds are rejected', async (t) => {
  const problems = await problemsOf({ models: { iris: { versions: { '1': { backend: { kind: 'tensorflow' } } } } } });
  t.is(problems.length, 1);
  t.regex(problems[0]!, /^models\.iris\.versions\.1\.backend\.kind: /);
});

test('model names must be URL- and label-safe', async (t) => {
  const problems = await problemsOf({ models: { 'bad/name': { versions: { '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } } } } } });
  t.is(problems.length, 1);
  t.regex(problems[0]!, /^models\.bad\/name: model name must match/);
});

test('at least one model is required', rejects, { models: {} }, ['models: at least one model must be configured']);

test('environment variables are substituted into values, typed when a whole value', async (t) => {
  const config = await parse(
    {
      server: { host: '${HOST}', port: '${PORT:-9000}' },
      models: { iris: { versions: { '1': { backend: { kind: 'onnx', path: '${MODEL_DIR}/iris-v1.onnx' } } } } },
    },
    { HOST: '127.0.0.1', MODEL_DIR: MODELS },
  );
  t.is(config.server.host, '127.0.0.1');
  t.is(config.server.port, 9000);
  const backend = config.models.iris!.versions['1']!.backend;
  t.is(backend.kind === 'onnx' ? backend.path : undefined, path.join(MODELS, 'iris-v1.onnx'));
});

test(
  'a missing environment variable is a problem at its path',
  rejects,
  {
    server: { host: '${GW_TEST_UNSET_VAR}' },
    models: irisModels(),
  },
  ['server.host: environment variable GW_TEST_UNSET_VAR is not set'],
);

test('$$ is a literal dollar and secrets cannot inject YAML structure', (t) => {
  const problems: string[] = [];
  t.deepEqual(substituteEnv({ a: 'cost: $$5', b: ['${X}'] }, { X: 'x: {evil: true}' }, problems), { a: 'cost: $5', b: ['x: {evil: true}'] });
  t.deepEqual(problems, []);
});

test('YAML syntax errors and duplicate keys are reported', async (t) => {
  const file = await writeConfigFile('models:\n  iris: {\n');
  const err = await t.throwsAsync(loadConfig(file), { instanceOf: ConfigError });
  t.regex(err!.problems[0]!, /^\(yaml\): /);
  const dup = await writeConfigFile('server:\n  port: 1\n  port: 2\nmodels: {}\n');
  const err2 = await t.throwsAsync(loadConfig(dup), { instanceOf: ConfigError });
  t.regex(err2!.problems[0]!, /^\(yaml\): Map keys must be unique/);
});

test('a disagreement log in a directory that does not exist is a problem by path; relative paths resolve against the config file', async (t) => {
  const file = await writeConfigFile({ models: irisModels(), disagreementLog: { path: 'no-such-dir/d.jsonl' } });
  const dir = path.join(path.dirname(file), 'no-such-dir');
  const err = await t.throwsAsync(loadConfig(file), { instanceOf: ConfigError });
  t.deepEqual(err!.problems, [`disagreementLog.path: directory ${dir} does not exist or is not writable`]);
  // check-config runs the same validation as start and reload: exit 1, the same message.
  const checked = await runCli(['check-config', file]);
  t.is(checked.code, 1);
  t.true(checked.stderr.includes(`disagreementLog.path: directory ${dir} does not exist or is not writable`), checked.stderr);

  // Next to the config file (a directory that exists) it is fine, and the file itself need not exist yet.
  const ok = await writeConfigFile({ models: irisModels(), disagreementLog: { path: 'd.jsonl' } });
  t.is((await loadConfig(ok)).config.disagreementLog?.path, 'd.jsonl');
  // A file where the directory should be is no directory.
  t.deepEqual(await problemsOf({ models: irisModels(), disagreementLog: { path: 'package.json/d.jsonl' } }), [
    `disagreementLog.path: directory ${path.join(ROOT, 'package.json')} does not exist or is not writable`,
  ]);
});

test('check-config accepts the example config', async (t) => {
  const { code, stdout } = await runCli(['check-config', path.join(ROOT, 'examples/gateway.yaml')]);
  t.is(code, 0);
  t.regex(stdout, /OK \(2 models, 3 versions\)/);
});

test('check-config accepts the example rollout config', async (t) => {
  const { code, stdout } = await runCli(['check-config', path.join(ROOT, 'examples/rollout.yaml')]);
  t.is(code, 0);
  t.regex(stdout, /OK \(1 model, 2 versions\)/);
});

test('check-config rejects a broken config with path-level messages and exit 1', async (t) => {
  const file = await writeConfigFile({
    server: { port: -1 },
    models: { iris: { versions: { '2': { backend: { kind: 'onnx', path: 'missing.onnx' } } } } },
  });
  const { code, stderr } = await runCli(['check-config', file]);
  t.is(code, 1);
  t.regex(stderr, /server\.port: Too small/);
  t.regex(stderr, /models\.iris\.versions\.2\.backend\.path: file not found/);
});
