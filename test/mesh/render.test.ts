// `mesh render` and its drift check: readable differences for each kind of drift, and the CLI round trip on deploy/.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { parseConfig } from '../../src/config/load.js';
import { renderIstio, type DestinationRuleManifest, type RenderedMesh, type VirtualServiceManifest } from '../../src/mesh/istio.js';
import { meshDrift } from '../../src/mesh/render-drift.js';
import { CLI, ROOT } from '../helpers/gateway.js';

const remote = (version: string) => ({ backend: { kind: 'http', url: 'http://127.0.0.1:8000', version } });

async function rendered(): Promise<RenderedMesh> {
  const config = await parseConfig(
    {
      models: {
        iris: {
          versions: { '1': remote('1'), '2': remote('2') },
          weights: { '1': 90, '2': 10 },
          override: { enabled: true },
          shadow: { targets: [{ version: '2', percent: 10 }] },
        },
      },
    },
    { baseDir: '/', source: 'test', env: {} },
  );
  return renderIstio(config);
}

type Docs = [VirtualServiceManifest, DestinationRuleManifest];

const drifts = test.macro({
  async exec(t: ExecutionContext, edit: (docs: Docs) => unknown, expected: RegExp[]) {
    const mesh = await rendered();
    const docs: Docs = structuredClone([mesh.virtualService, mesh.destinationRule]);
    edit(docs);
    const lines = meshDrift(mesh, docs, 75_000);
    t.is(lines.length, expected.length, lines.join('\n'));
    expected.forEach((re, i) => t.regex(lines[i] ?? '', re));
  },
  title: (title) => `drift: ${title ?? ''}`,
});

test('none when the manifest is the rendering', drifts, () => undefined, []);
test(
  'tuning the connection pool or outlier detection is the operator’s, not drift',
  drifts,
  ([, dr]) => {
    dr.spec.trafficPolicy.outlierDetection.consecutive5xxErrors = 7;
    dr.spec.trafficPolicy.connectionPool.http.idleTimeout = '30s';
  },
  [],
);
test('a changed weight', drifts, ([vs]) => (vs.spec.http[2]!.route[0]!.weight = 80), [
  /^VirtualService model-gateway: spec\.http\[iris-infer\]\.route\[iris-v1\]\.weight: manifest has 80, the config renders 90$/,
]);
test('a changed mirror percentage', drifts, ([vs]) => (vs.spec.http[2]!.mirrorPercentage = { value: 50 }), [
  /spec\.http\[iris-infer\]\.mirrorPercentage\.value: manifest has 50, the config renders 10/,
]);
test('a destination missing from the split', drifts, ([vs]) => vs.spec.http[2]!.route.pop(), [
  /spec\.http\[iris-infer\]\.route\[iris-v2\]: missing from the manifest/,
]);
test('a hand-added route', drifts, ([vs]) => vs.spec.http.unshift({ name: 'hotfix', route: [{ destination: { host: 'x', port: { number: 80 } } }] }), [
  /spec\.http\[hotfix\]: in the manifest but not in the config/,
]);
test('routes in another order (first match wins, so this changes routing)', drifts, ([vs]) => vs.spec.http.reverse(), [
  /spec\.http: order differs: manifest default, grpc, iris-default/,
]);
test('a subset removed', drifts, ([, dr]) => dr.spec.subsets.pop(), [/^DestinationRule model-gateway: spec\.subsets\[iris-v2\]: missing from the manifest/]);
test('a subset selecting other pods', drifts, ([, dr]) => (dr.spec.subsets[0]!.labels = { app: 'other' }), [
  /spec\.subsets\[iris-v1\]\.labels\.app\.kubernetes\.io\/name: manifest has nothing, the config renders "model-gateway"/,
  /spec\.subsets\[iris-v1\]\.labels\.app: manifest has "other", the config renders nothing/,
]);
test('an idle timeout not below the gateway keep-alive', drifts, ([, dr]) => (dr.spec.trafficPolicy.connectionPool.http.idleTimeout = '75s'), [
  /idleTimeout: 75s is not below the gateway's server\.keepAliveTimeoutMs \(75000 ms\).*503 UC/,
]);
test(
  'no idle timeout at all (Istio would keep connections an hour)',
  drifts,
  ([, dr]) => delete (dr.spec.trafficPolicy.connectionPool.http as { idleTimeout?: string }).idleTimeout,
  [/idleTimeout: missing; it must be set below/],
);
test('another namespace', drifts, ([vs]) => (vs.metadata.namespace = 'default'), [
  /VirtualService model-gateway: metadata\.namespace: manifest has "default", the config renders "model-serving"/,
]);
test('a missing VirtualService', drifts, ([vs]) => ((vs as { kind: string }).kind = 'Gateway'), [/^VirtualService model-gateway: not found in the manifest$/]);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const RENDER = ['mesh', 'render', '--config', 'deploy/base/gateway.yaml'];

test('the checked-in deploy/base/istio-routing.yaml is byte for byte what `mesh render` prints', async (t) => {
  const run = await cli(RENDER);
  t.is(run.code, 0, run.stderr);
  t.is(run.stderr, '');
  t.is(run.stdout, await readFile(path.join(ROOT, 'deploy/base/istio-routing.yaml'), 'utf8'));
});

test('--check on the checked-in manifest: no drift, exit 0', async (t) => {
  const run = await cli([...RENDER, '--check', 'deploy/base/istio-routing.yaml']);
  t.is(run.code, 0, run.stdout + run.stderr);
  t.regex(run.stdout, /deploy\/base\/istio-routing\.yaml: in sync with deploy\/base\/gateway\.yaml/);
});

test('--check after a weight was edited in the manifest: exit 1 and the difference', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mesh-render-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const manifest = await readFile(path.join(ROOT, 'deploy/base/istio-routing.yaml'), 'utf8');
  t.true(manifest.includes('weight: 90'));
  const edited = path.join(dir, 'istio-routing.yaml');
  await writeFile(edited, manifest.replace('weight: 90', 'weight: 70').replace('weight: 10', 'weight: 30'));
  const run = await cli([...RENDER, '--check', edited]);
  t.is(run.code, 1);
  t.is(
    run.stdout,
    `${edited}: 2 differences from deploy/base/gateway.yaml:\n` +
      '  - VirtualService model-gateway: spec.http[iris-infer].route[iris-v1].weight: manifest has 70, the config renders 90\n' +
      '  - VirtualService model-gateway: spec.http[iris-infer].route[iris-v2].weight: manifest has 30, the config renders 10\n',
  );
});

test('--check after the config’s weights changed: the checked-in manifest is reported stale', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mesh-render-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = await readFile(path.join(ROOT, 'deploy/base/gateway.yaml'), 'utf8');
  t.true(config.includes('weights: { "1": 90, "2": 10 }'));
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config.replace('weights: { "1": 90, "2": 10 }', 'weights: { "1": 50, "2": 50 }'));
  const run = await cli(['mesh', 'render', '--config', file, '--check', 'deploy/base/istio-routing.yaml']);
  t.is(run.code, 1);
  t.regex(run.stdout, /route\[iris-v1\]\.weight: manifest has 90, the config renders 50/);
  t.regex(run.stdout, /route\[iris-v2\]\.weight: manifest has 10, the config renders 50/);
});

test('notes about what the mesh cannot express go to stderr; the YAML stays clean on stdout', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mesh-render-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(
    file,
    'models:\n  m:\n    weights: { "1": 1, "2": 1 }\n    sticky: { header: x-user-id }\n    versions:\n' +
      '      "1": { backend: { kind: http, url: "http://127.0.0.1:8000" } }\n      "2": { backend: { kind: http, url: "http://127.0.0.1:8000" } }\n',
  );
  const run = await cli(['mesh', 'render', '--config', file, '--namespace', 'ml', '--service', 'gw', '--port', '8080']);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stderr, /^note: model m: the weighted split stays in the gateway/);
  t.regex(run.stdout, /host: gw\.ml\.svc\.cluster\.local/);
  t.notRegex(run.stdout, /note:/);
});

const usage = test.macro({
  async exec(t: ExecutionContext, args: string[], code: number, expected: RegExp) {
    const run = await cli(args);
    t.is(run.code, code);
    t.regex(run.stderr, expected);
  },
  title: (_, args: string[]) => `model-gateway ${args.join(' ')}`,
});

test(usage, ['mesh'], 2, /missing mesh command/);
test(usage, ['mesh', 'draw'], 2, /unknown mesh command 'draw'/);
test(usage, ['mesh', 'render'], 2, /--config FILE is required/);
test(usage, ['mesh', 'render', '--config', 'deploy/base/gateway.yaml', '--namespace', 'Bad_NS'], 2, /--namespace: 'Bad_NS' is not a DNS label/);
test(usage, ['mesh', 'render', '--config', 'deploy/base/gateway.yaml', '--port', '0'], 2, /--port: '0' is not a port number/);
test(usage, ['mesh', 'render', '--config', 'deploy/base/gateway.yaml', '--check', 'deploy/no-such-file.yaml'], 1, /cannot read deploy\/no-such-file\.yaml/);
test(usage, ['mesh', 'render', '--config', 'deploy/no-such-config.yaml'], 1, /invalid config .*no-such-config\.yaml/);
