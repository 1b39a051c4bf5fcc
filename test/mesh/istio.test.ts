// renderIstio: weights → subset weights with a pinned version, shadows → one mirror, subsets, idle timeout; and the
// rendered objects pass Istio's schemas.

import test, { type ExecutionContext } from 'ava';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { DEFAULT_MESH_TARGET, idleTimeoutMs, renderIstio, subsetName, toPercentages, type HttpRoute } from '../../src/mesh/istio.js';
import { validateObject, type K8sObject } from '../helpers/k8s-schema.js';

const HOST = 'model-gateway.model-serving.svc.cluster.local';

const remote = (version: string) => ({ backend: { kind: 'http', url: 'http://127.0.0.1:8000', version } });

/** A valid config with one model `m` built from `model` (versions default to 1 and 2 on the runtime). */
async function configWith(model: Record<string, unknown>, server: Record<string, unknown> = {}): Promise<GatewayConfig> {
  return parseConfig({ server, models: { m: { versions: { '1': remote('1'), '2': remote('2') }, ...model } } }, { baseDir: '/', source: 'test', env: {} });
}

function route(routes: readonly HttpRoute[], name: string): HttpRoute {
  const found = routes.find((r) => r.name === name);
  if (!found) throw new Error(`no route ${name} in ${routes.map((r) => r.name).join(', ')}`);
  return found;
}

const percentages = test.macro({
  exec(t: ExecutionContext, weights: number[], expected: number[]) {
    const result = toPercentages(weights.map((weight, i) => ({ version: String(i + 1), weight })));
    t.deepEqual(
      result.map((r) => r.percent),
      expected,
    );
    t.is(
      result.reduce((s, r) => s + r.percent, 0),
      100,
    );
  },
  title: (_, weights: number[], expected: number[]) => `weights ${weights.join('/')} become Istio percentages ${expected.join('/')}`,
});

test(percentages, [90, 10], [90, 10]);
test(percentages, [9, 1], [90, 10]);
test(percentages, [1, 1, 1], [34, 33, 33]);
test(percentages, [2, 1], [67, 33]);
test(percentages, [1, 999], [0, 100]);
test(percentages, [5, 0, 5], [50, 0, 50]);
test(percentages, [1_000_000], [100]);

interface Case {
  model: Record<string, unknown>;
  /** The unversioned infer route's destinations as subset:weight:pinned-version. */
  infer: string[];
  notes?: RegExp[];
  mirror?: { subset: string; percent: number };
}

const infers = test.macro({
  async exec(t: ExecutionContext, c: Case) {
    const rendered = renderIstio(await configWith(c.model));
    const infer = route(rendered.virtualService.spec.http, 'm-infer');
    t.deepEqual(
      infer.route.map((d) => `${d.destination.subset ?? '(any)'}:${d.weight ?? '-'}:${d.headers?.request.set['x-model-version'] ?? '-'}`),
      c.infer,
    );
    for (const d of infer.route) t.is(d.destination.host, HOST);
    t.is(rendered.notes.length, c.notes?.length ?? 0, rendered.notes.join('\n'));
    c.notes?.forEach((re, i) => t.regex(rendered.notes[i] ?? '', re));
    if (c.mirror) {
      t.deepEqual(infer.mirror, { host: HOST, subset: c.mirror.subset, port: { number: 80 } });
      t.deepEqual(infer.mirrorPercentage, { value: c.mirror.percent });
    } else {
      t.is(infer.mirror, undefined);
      t.is(infer.mirrorPercentage, undefined);
    }
  },
  title: (title) => `unversioned inference: ${title ?? ''}`,
});

test('weights split across subsets, each pinning its version for the gateway', infers, {
  model: { weights: { '1': 90, '2': 10 }, override: { enabled: true } },
  infer: ['m-v1:90:1', 'm-v2:10:2'],
});
test('a version with weight 0 gets no destination', infers, {
  model: { weights: { '1': 0, '2': 3 }, override: { enabled: true } },
  infer: ['m-v2:-:-'],
});
test('no weights: everything to the default version, without a header', infers, {
  model: { defaultVersion: '1' },
  infer: ['m-v1:-:-'],
});
test('no weights and no default: the highest version, as the gateway decides', infers, {
  model: {},
  infer: ['m-v2:-:-'],
});
test('sticky models keep the split in the gateway', infers, {
  model: { weights: { '1': 50, '2': 50 }, override: { enabled: true }, sticky: { header: 'x-user-id' } },
  infer: ['(any):-:-'],
  notes: [/model m: the weighted split stays in the gateway .* sticky routing/],
});
test('a split the gateway would not let the mesh pin stays in the gateway (override off)', infers, {
  model: { weights: { '1': 50, '2': 50 } },
  infer: ['(any):-:-'],
  notes: [/override\.enabled is false/],
});
test('a split the gateway would not let the mesh pin stays in the gateway (requiredScope)', infers, {
  model: { weights: { '1': 50, '2': 50 }, override: { enabled: true, requiredScope: 'pin' } },
  infer: ['(any):-:-'],
  notes: [/override\.requiredScope is set/],
});
test('a model under a progressive rollout keeps its split in the gateway, whatever its config weights', infers, {
  model: { weights: { '1': 90, '2': 10 }, override: { enabled: true }, rollout: { stable: '1', candidate: '2' } },
  infer: ['(any):-:-'],
  notes: [/model m: the split stays in the gateway .* progressive rollout sets the weights at runtime/],
});
test('a weight that rounds to 0 % is reported', infers, {
  model: { weights: { '1': 999, '2': 1 }, override: { enabled: true } },
  infer: ['m-v1:100:1', 'm-v2:0:2'],
  notes: [/version 2's weight rounds to 0 %/],
});
test('one shadow target becomes the mirror', infers, {
  model: { defaultVersion: '1', shadow: { targets: [{ version: '2', percent: 12.5 }] } },
  infer: ['m-v1:-:-'],
  mirror: { subset: 'm-v2', percent: 12.5 },
  notes: [/Istio mirrors 12\.5 % of unversioned inference to subset m-v2, but the copy keeps the primary's headers/],
});
test('several shadow targets: the highest percent is mirrored, and the operator is told', infers, {
  model: {
    versions: { '1': remote('1'), '2': remote('2'), '3': remote('3') },
    defaultVersion: '1',
    shadow: {
      targets: [
        { version: '2', percent: 10 },
        { version: '3', percent: 40 },
      ],
    },
  },
  infer: ['m-v1:-:-'],
  mirror: { subset: 'm-v3', percent: 40 },
  notes: [/mirroring to version 3 \(40 %\), not to 2 \(10 %\)/, /Istio mirrors 40 %/],
});
test('shadow targets tied on percent: the first listed wins', infers, {
  model: {
    versions: { '1': remote('1'), '2': remote('2'), '3': remote('3') },
    defaultVersion: '1',
    shadow: { targets: [{ version: '3' }, { version: '2' }] },
  },
  infer: ['m-v1:-:-'],
  mirror: { subset: 'm-v3', percent: 100 },
  notes: [/mirroring to version 3 \(100 %\), not to 2 \(100 %\)/, /Istio mirrors 100 %/],
});

test('versioned paths go straight to their subset, before the weighted route; metadata goes to the default version', async (t) => {
  const rendered = renderIstio(await configWith({ weights: { '1': 10, '2': 90 }, override: { enabled: true } }));
  const http = rendered.virtualService.spec.http;
  t.deepEqual(
    http.map((r) => r.name),
    ['m-v1-path', 'm-v2-path', 'm-infer', 'm-default', 'grpc', 'default'],
  );
  // gRPC calls carry their model and version in the message: the gRPC port goes to the gateway's gRPC port as it came.
  t.deepEqual(route(http, 'grpc').match, [{ port: 8082 }]);
  t.deepEqual(route(http, 'grpc').route, [{ destination: { host: 'model-gateway.model-serving.svc.cluster.local', port: { number: 8082 } } }]);
  t.deepEqual(route(http, 'm-v2-path').match, [{ uri: { exact: '/v2/models/m/versions/2' } }, { uri: { prefix: '/v2/models/m/versions/2/' } }]);
  t.is(route(http, 'm-v2-path').route[0]!.destination.subset, 'm-v2');
  // No defaultVersion: the heaviest weight answers unversioned metadata, exactly as the gateway's routing table does.
  t.is(route(http, 'm-default').route[0]!.destination.subset, 'm-v2');
  t.is(route(http, 'default').match, undefined);
});

test('subsets: one per version, selecting the workload’s pods, plus a version label for per-version workloads', async (t) => {
  const config = await configWith({});
  t.deepEqual(renderIstio(config).destinationRule.spec.subsets, [
    { name: 'm-v1', labels: { 'app.kubernetes.io/name': 'model-gateway' } },
    { name: 'm-v2', labels: { 'app.kubernetes.io/name': 'model-gateway' } },
  ]);
  const perVersion = renderIstio(config, {
    ...DEFAULT_MESH_TARGET,
    namespace: 'ml',
    service: 'gw',
    port: 8080,
    podLabels: { app: 'gw' },
    versionLabel: 'version',
  });
  t.deepEqual(
    perVersion.destinationRule.spec.subsets.map((s) => s.labels),
    [
      { app: 'gw', version: '1' },
      { app: 'gw', version: '2' },
    ],
  );
  t.is(perVersion.destinationRule.spec.host, 'gw.ml.svc.cluster.local');
  t.deepEqual(perVersion.virtualService.spec.hosts, ['gw.ml.svc.cluster.local']);
  t.is(perVersion.virtualService.metadata.namespace, 'ml');
});

const subsetNames = test.macro({
  exec(t: ExecutionContext, model: string, version: string, expected: string) {
    t.is(subsetName(model, version), expected);
  },
  title: (_, model: string, version: string, expected: string) => `subset name of ${model} ${version} is the DNS label ${expected}`,
});
test(subsetNames, 'iris', '2', 'iris-v2');
test(subsetNames, 'My_Model', '1.2', 'my-model-v1-2');

const idle = test.macro({
  async exec(t: ExecutionContext, keepAliveTimeoutMs: number, expected: string) {
    const rendered = renderIstio(await configWith({}, { keepAliveTimeoutMs }));
    t.is(rendered.destinationRule.spec.trafficPolicy.connectionPool.http.idleTimeout, expected);
    t.true(idleTimeoutMs(keepAliveTimeoutMs) < keepAliveTimeoutMs);
  },
  title: (_, ms: number, expected: string) => `keepAliveTimeoutMs ${ms} → DestinationRule idleTimeout ${expected} (shorter)`,
});
test(idle, 75_000, '60s');
test(idle, 5_000, '4s');
test(idle, 1_000, '800ms');
test(idle, 1_200, '960ms');

test('rendered objects pass the Istio schemas strictly (no unknown fields, durations are durations)', async (t) => {
  const rendered = renderIstio(
    await configWith({ weights: { '1': 2, '2': 1 }, override: { enabled: true }, shadow: { targets: [{ version: '2', percent: 5 }] } }),
  );
  t.notThrows(() => validateObject(rendered.virtualService as unknown as K8sObject));
  t.notThrows(() => validateObject(rendered.destinationRule as unknown as K8sObject));
});

test('outlier detection ejects only for local-origin failures, never for the gateway’s own 503/504 answers', async (t) => {
  const { outlierDetection } = renderIstio(await configWith({})).destinationRule.spec.trafficPolicy;
  t.deepEqual(outlierDetection, {
    splitExternalLocalOriginErrors: true,
    consecutiveLocalOriginFailures: 5,
    // Explicit zeros: Istio's default would eject after 5 consecutive 5xx.
    consecutive5xxErrors: 0,
    consecutiveGatewayErrors: 0,
    interval: '10s',
    baseEjectionTime: '30s',
    maxEjectionPercent: 50,
  });
});

test('a gateway without gRPC (server.grpc.enabled false) renders no gRPC route', async (t) => {
  const rendered = renderIstio(await configWith({}, { grpc: { enabled: false } }));
  t.false(rendered.virtualService.spec.http.some((r) => r.name === 'grpc'));
  t.is(rendered.virtualService.spec.http.at(-1)!.name, 'default');
});
