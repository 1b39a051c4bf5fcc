// Hot reload under load: valid, invalid and ConfigMap-style changes; backend reuse and retirement; what happens to overrides.

import test, { type ExecutionContext } from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { ConfigWatcher } from '../../src/config/watch.js';
import type { RunningGateway } from '../../src/app/gateway.js';
import { createLogger } from '../../src/telemetry/log.js';
import { faultInjectingFactory } from '../helpers/fault-backend.js';
import { irisRequest, MODELS, postJson } from '../helpers/gateway.js';
import { IRIS_ROWS, irisDisagreementRows } from '../helpers/iris.js';
import { loadFigures, reportLoad, rssMiB, startLoad, type LoadResult } from '../helpers/load.js';
import { ADMIN_TOKEN, configMapVolume, fileConfig, irisVersion, startFromFile, tempDir, writeConfig } from '../helpers/traffic.js';

const log = createLogger('silent');
const BODY = JSON.stringify(irisRequest());

const iris = (weights: Record<string, number>, extra: Record<string, unknown> = {}) => ({
  iris: { versions: { '1': irisVersion('iris-v1.onnx'), '2': irisVersion('iris-v2.onnx') }, weights, ...extra },
});

async function admin(gw: RunningGateway, method: string, route: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gw.admin!.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * Steady load on unversioned iris inference for the whole test. `report` logs the scenario's figures over all of it;
 * the gateway runs in-process, so the RSS read at the start of the load and at the report is the test process's.
 */
function steadyLoad(gw: RunningGateway) {
  const rssAtStart = rssMiB();
  const load = startLoad({ url: `${gw.url}/v2/models/iris/infer`, body: BODY, concurrency: 4, maxRequests: 20_000 });
  const report = (t: ExecutionContext, scenario: string, result: LoadResult) =>
    reportLoad(t, scenario, loadFigures(result.samples, { startMiB: rssAtStart, endMiB: rssMiB(), of: 'the test process (in-process gateway)' }));
  return Object.assign(load, { report });
}

const noErrors = (r: LoadResult) =>
  `non-2xx: ${JSON.stringify(r.statuses)} ${r.failures
    .slice(0, 3)
    .map((f) => f.body)
    .join(' | ')}`;
/** The served backend of a version: the same object for as long as reloads reuse it. */
const backendOf = (gw: RunningGateway, version: string) => gw.state.current.catalog.get('iris')!.versions.get(version)!.backend;

test('a valid change under load: applied by the watcher, unchanged backends reused, new ones started, zero non-2xx', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, fileConfig(iris({ '1': 1 })));
  const faults = faultInjectingFactory({}, log);
  const gw = await startFromFile(file, { backendFactory: faults.factory });
  t.teardown(() => gw.stop());
  const load = steadyLoad(gw);
  await load.completed(100);
  const v1 = backendOf(gw, '1');
  const v2 = backendOf(gw, '2');

  const reloaded = gw.controller.nextReload();
  await writeConfig(file, fileConfig({ iris: { ...iris({ '2': 1 }).iris, versions: { ...iris({}).iris.versions, '3': irisVersion('iris-v2.onnx') } } }));
  const report = await reloaded;
  t.like(report, { trigger: 'file-change', outcome: 'applied', generation: 2, backends: { added: ['iris/3'], reused: ['iris/1', 'iris/2'], retired: [] } });
  t.is(backendOf(gw, '1'), v1);
  t.is(backendOf(gw, '2'), v2);
  t.is(faults.made.get('iris/1')!.length, 1, 'v1 was not rebuilt');
  t.is(faults.made.get('iris/1')![0]!.started, 1, 'v1 was not started twice');

  // Requests started after the swap go to v2 only.
  await load.completed(150);
  const result = await load.stop();
  load.report(t, 'reload and weight shift under load', result);
  t.deepEqual(result.failures, [], noErrors(result));
  const late = result.samples.filter((s) => s.index >= result.samples.length - 100);
  t.true(
    late.every((s) => s.version === '2'),
    `late versions: ${JSON.stringify(late.map((s) => s.version))}`,
  );
  t.true(result.samples.some((s) => s.version === '1'));
  t.like((await postJson(`${gw.url}/v2/models/iris/versions/3/infer`, irisRequest())).body, { model_version: '3' });
});

test('a changed version gets a new backend; the old one closes only after its in-flight call ends', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, fileConfig(iris({ '1': 1 })));
  // The first v1 backend is slow, so a call is in flight across the swap.
  const faults = faultInjectingFactory({}, log);
  const factory: typeof faults.factory = (model, version, config) => {
    const b = faults.factory(model, version, config);
    if (version === '1' && faults.made.get('iris/1')!.length === 1) faults.made.get('iris/1')![0]!.faults.delayMs = 1500;
    return b;
  };
  const gw = await startFromFile(file, { backendFactory: factory });
  t.teardown(() => gw.stop());
  const old = faults.made.get('iris/1')![0]!;
  const inFlight = postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest());
  while (old.calls === 0) await new Promise((resolve) => setImmediate(resolve));

  await writeConfig(
    file,
    fileConfig({ iris: { ...iris({ '1': 1 }).iris, versions: { '1': irisVersion('iris-v1.onnx', { workers: 2 }), '2': irisVersion('iris-v2.onnx') } } }),
  );
  const report = await gw.controller.watcher!.check().then(() => gw.controller.status().reload.lastAttempt);
  t.like(report, { outcome: 'applied', backends: { added: ['iris/1'], reused: ['iris/2'], retired: ['iris/1'] } });
  t.false(old.closed, 'closed while its call was in flight');
  t.like(await inFlight, { status: 200, body: { model_version: '1' } });
  await gw.controller.settled();
  t.true(old.closed);
  t.is(faults.made.get('iris/1')!.length, 2);
  t.like((await postJson(`${gw.url}/v2/models/iris/versions/1/infer`, irisRequest())).body, { model_version: '1' });
});

test('an invalid change under load keeps the old config serving; the error is logged, shown in the admin API, and a fix applies', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, { ...fileConfig(iris({ '1': 1 })), logging: { level: 'error' } });
  // The gateway's log lines, as JSON objects: a rejected reload must be logged with its problems.
  const lines: Record<string, unknown>[] = [];
  const logSink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const gw = await startFromFile(file, {}, logSink);
  t.teardown(() => gw.stop());
  const load = steadyLoad(gw);
  await load.completed(50);

  const bad = [
    fileConfig(iris({ '1': 0, '2': 0 })), // schema-valid shape, semantically invalid
    'models: {iris: [unclosed', // not YAML
    fileConfig(iris({ '1': 1 }, { shadow: { targets: [{ version: '9' }] } })),
  ];
  for (const content of bad) {
    const next = gw.controller.nextReload();
    await writeConfig(file, content);
    const report = await next;
    t.is(report.outcome, 'rejected');
    t.is(report.generation, 1);
    t.true(report.problems!.length > 0);
    await load.completed(30);
  }
  const rejected = lines.filter((l) => l.msg === 'config reload rejected: invalid config; the running config is unchanged');
  t.is(rejected.length, bad.length, JSON.stringify(lines));
  t.deepEqual(rejected.at(-1)!.problems, ["models.iris.shadow.targets.0.version: version '9' is not one of 1, 2"]);
  t.is(rejected.at(-1)!.level, 50);
  t.is(lines.filter((l) => l.level === 50).length, bad.length, 'one error line per refused reload, not two');
  const status = await admin(gw, 'GET', '/admin/status');
  t.like(status.body, {
    generation: 1,
    reload: { lastAttempt: { outcome: 'rejected', trigger: 'file-change' }, lastApplied: { outcome: 'applied', trigger: 'start' } },
  });
  t.deepEqual((status.body.reload as { lastAttempt: { problems: string[] } }).lastAttempt.problems, [
    "models.iris.shadow.targets.0.version: version '9' is not one of 1, 2",
  ]);
  t.like((await admin(gw, 'GET', '/admin/models')).body, { reload: { outcome: 'rejected' } });
  const forced = await admin(gw, 'POST', '/admin/reload');
  t.is(forced.status, 422);
  t.regex(String(forced.body.error), /the config file is invalid; the running config is unchanged: models\.iris\.shadow\.targets\.0\.version/);

  const fixed = gw.controller.nextReload();
  await writeConfig(file, fileConfig(iris({ '2': 1 })));
  t.like(await fixed, { outcome: 'applied', generation: 2 });
  await load.completed(50);
  const result = await load.stop();
  load.report(t, 'invalid reloads, then a fix, under load', result);
  t.deepEqual(result.failures, [], noErrors(result));
  t.is(result.samples.at(-1)!.version, '2');
});

test('a Kubernetes ConfigMap update (..data symlink swap) is detected and applied under load', async (t) => {
  const volume = await configMapVolume(fileConfig(iris({ '1': 1 })));
  const gw = await startFromFile(volume.file);
  t.teardown(() => gw.stop());
  const load = steadyLoad(gw);
  await load.completed(50);
  for (const [generation, weights, expected] of [
    [2, { '2': 1 }, '2'],
    [3, { '1': 1 }, '1'],
  ] as const) {
    const next = gw.controller.nextReload();
    await volume.update(fileConfig(iris(weights)));
    t.like(await next, { outcome: 'applied', generation, trigger: 'file-change' });
    await load.completed(60);
    const res = await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest());
    t.is(res.headers.get('x-model-version'), expected);
  }
  const result = await load.stop();
  load.report(t, 'ConfigMap weight shifts under load', result);
  t.deepEqual(result.failures, [], noErrors(result));
});

test('runtime overrides survive an unrelated reload and yield to one that changes the model’s weights', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  const models = (weights: Record<string, number>) => ({ ...iris(weights), other: { versions: { '1': irisVersion('iris-v1.onnx') } } });
  await writeConfig(file, fileConfig(models({ '1': 90, '2': 10 })));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  t.like(await admin(gw, 'PUT', '/admin/models/iris/weights', { '1': 50, '2': 50 }), { status: 200, body: { weightsSource: 'override' } });

  // Unrelated change (the other model goes away): the override stays.
  await writeConfig(file, fileConfig(iris({ '1': 90, '2': 10 })));
  t.like(await admin(gw, 'POST', '/admin/reload'), { status: 200, body: { outcome: 'applied' } });
  t.like((await admin(gw, 'GET', '/admin/models/iris')).body, {
    weightsSource: 'override',
    weights: { '1': 50, '2': 50 },
    configWeights: { '1': 90, '2': 10 },
  });

  // The config's weights for iris change: the config wins and the drop is reported.
  await writeConfig(file, fileConfig(iris({ '1': 80, '2': 20 })));
  const report = await admin(gw, 'POST', '/admin/reload');
  t.like(report.body, { outcome: 'applied', droppedOverrides: [{ model: 'iris', reason: "the reloaded config changed the model's weights" }] });
  t.like((await admin(gw, 'GET', '/admin/models/iris')).body, { weightsSource: 'config', weights: { '1': 80, '2': 20 }, override: null });
});

test('a runtime override is dropped, and reported, when a reload puts the model under a progressive rollout', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, fileConfig(iris({ '1': 90, '2': 10 })));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  t.like(await admin(gw, 'PUT', '/admin/models/iris/weights', { '1': 50, '2': 50 }), { status: 200, body: { weightsSource: 'override' } });
  const withRollout = iris({ '1': 90, '2': 10 }) as { iris: Record<string, unknown> };
  withRollout.iris.rollout = { stable: '1', candidate: '2' };
  await writeConfig(file, fileConfig(withRollout));
  const report = await admin(gw, 'POST', '/admin/reload');
  t.like(report.body, {
    outcome: 'applied',
    droppedOverrides: [{ model: 'iris', reason: 'the model is now under a progressive rollout, which owns its weights' }],
  });
  t.like((await admin(gw, 'GET', '/admin/models/iris')).body, { weightsSource: 'rollout', weights: { '1': 100, '2': 0 }, override: null });
  // Removing the rollout brings back the config's weights, not the old override.
  await writeConfig(file, fileConfig(iris({ '1': 90, '2': 10 })));
  t.like(await admin(gw, 'POST', '/admin/reload'), { status: 200, body: { outcome: 'applied' } });
  t.like((await admin(gw, 'GET', '/admin/models/iris')).body, { weightsSource: 'config', weights: { '1': 90, '2': 10 }, override: null });
});

test('an unchanged file (rewritten with the same bytes) does not reload; an admin reload of it reports "unchanged"', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, fileConfig(iris({ '1': 1 })));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  await writeFile(file, await readFile(file));
  await gw.controller.watcher!.check();
  t.is(gw.controller.generation, 1);
  t.like(await admin(gw, 'POST', '/admin/reload'), { status: 200, body: { outcome: 'unchanged', generation: 1 } });
});

test('a model file replaced at the same path is reloaded; one that cannot load keeps the old version serving', async (t) => {
  const dir = await tempDir();
  const model = path.join(dir, 'model.onnx');
  await copyFile(path.join(MODELS, 'iris-v1.onnx'), model);
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, fileConfig({ iris: { versions: { '1': { backend: { kind: 'onnx', path: 'model.onnx' } } } } }));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  const row = IRIS_ROWS[irisDisagreementRows()[0]!]!;
  const labelOf = async () =>
    ((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([row]))).body.outputs as { name: string; data: number[] }[]).find((o) => o.name === 'label')!
      .data[0];
  const before = await labelOf();

  await copyFile(path.join(MODELS, 'iris-v2.onnx'), model);
  t.like(await admin(gw, 'POST', '/admin/reload'), { status: 200, body: { outcome: 'applied', backends: { added: ['iris/1'], retired: ['iris/1'] } } });
  t.not(await labelOf(), before, 'the new model answers');

  await writeFile(model, 'not an onnx model');
  const failed = await admin(gw, 'POST', '/admin/reload');
  t.is(failed.status, 500);
  t.regex(String(failed.body.error), /reload failed; the running config is unchanged: some model versions failed to start/);
  t.like((await admin(gw, 'GET', '/admin/status')).body, { generation: 2, reload: { lastAttempt: { outcome: 'failed' } } });
  t.is((await postJson(`${gw.url}/v2/models/iris/infer`, irisRequest([row]))).status, 200);
});

test('listen-address changes are reported as needing a restart', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeConfig(file, fileConfig(iris({ '1': 1 })));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  await writeConfig(file, { ...fileConfig(iris({ '1': 1 })), server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, maxBodyBytes: 4096 } });
  t.like(await admin(gw, 'POST', '/admin/reload'), { body: { outcome: 'applied', restartRequired: ['server.maxBodyBytes'] } });
});

test('the watcher coalesces a burst of writes into one check and ignores content it has seen', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, 'a: 1\n');
  const changes: string[] = [];
  let notify: () => void = () => undefined;
  const watcher = new ConfigWatcher({
    file,
    settings: { debounceMs: 100, pollIntervalMs: 0 },
    log,
    onChange: async (hash) => void (changes.push(`${hash.slice(0, 6)} ${readFileSync(file, 'utf8').trim()}`), notify()),
  });
  await watcher.start();
  t.teardown(() => watcher.close());
  const changed = new Promise<void>((resolve) => (notify = resolve));
  // Written in one synchronous burst, so every event is delivered after the last write (no timing assumptions).
  for (let i = 2; i <= 6; i++) writeFileSync(file, `a: ${i}\n`);
  await changed;
  await watcher.check();
  t.is(changes.length, 1, changes.join(', '));
  writeFileSync(file, 'a: 6\n');
  await watcher.check();
  t.is(changes.length, 1, changes.join(', '));
});

test('a disagreement log in a directory that does not exist is a config problem, at start and on reload', async (t) => {
  const dir = await tempDir();
  const file = path.join(dir, 'gateway.yaml');
  const missing = { disagreementLog: { path: 'no-such-dir/d.jsonl' } };
  await writeConfig(file, fileConfig(iris({ '1': 1 }), missing));
  const err = await t.throwsAsync(startFromFile(file));
  t.regex(err!.message, /disagreementLog\.path: directory .*no-such-dir does not exist or is not writable/);

  await writeConfig(file, fileConfig(iris({ '1': 1 })));
  const gw = await startFromFile(file);
  t.teardown(() => gw.stop());
  await writeConfig(file, fileConfig(iris({ '1': 1 }), missing));
  const res = await admin(gw, 'POST', '/admin/reload');
  t.is(res.status, 422);
  t.regex(String(res.body.error), /no-such-dir does not exist or is not writable/);
  t.is(gw.controller.generation, 1);
});
