// deploy/: every manifest of the base and the Triton overlay passes the Kubernetes/Istio schemas, broken fixtures fail
// them, and the pods, probes, drain timings, mesh routing and JWT rules agree with the gateway config in the ConfigMap.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { parseDocument } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { DEFAULT_MESH_TARGET, renderIstio } from '../../src/mesh/istio.js';
import { meshDrift, parseDurationMs } from '../../src/mesh/render-drift.js';
import { scanModelDirectory } from '../../src/serve-model.js';
import { MODELS, ROOT } from '../helpers/gateway.js';
import { buildKustomization, isRecord, pick, readManifests, strategicMerge, validateObject, type K8sObject } from './deploy-kustomize.js';

const BASE = path.join(ROOT, 'deploy/base');
const TRITON = path.join(ROOT, 'deploy/overlays/triton');
const FIXTURES = path.join(ROOT, 'test/fixtures/k8s');

interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface Probe {
  httpGet?: { path: string; port: number | string };
  exec?: { command: string[] };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; configMap?: { name: string } }[];
}

function podSpec(deployment: K8sObject): PodSpec {
  return (deployment.spec as { template: { spec: PodSpec } }).template.spec;
}
function podLabels(deployment: K8sObject): Record<string, string> {
  return (deployment.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
}
function container(deployment: K8sObject, name: string): Container {
  const found = podSpec(deployment).containers.find((c) => c.name === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

interface Built {
  objects: K8sObject[];
  config: GatewayConfig;
}

/** Builds a kustomization and parses the gateway config out of its ConfigMap, as the pod would read it. */
async function build(dir: string): Promise<Built> {
  const objects = await buildKustomization(dir);
  const configMap = pick(objects, 'ConfigMap', 'model-gateway-config');
  const text = (configMap.data as Record<string, string>)['gateway.yaml']!;
  const doc = parseDocument(text, { uniqueKeys: true });
  // Only http backends and a JWKS URL: nothing in it refers to a file, so the ConfigMap is checked exactly as shipped.
  const config = await parseConfig(doc.toJS(), { baseDir: '/nonexistent', source: 'ConfigMap model-gateway-config', env: {} });
  return { objects, config };
}

const builds = { base: build(BASE), triton: build(TRITON) };
type Layout = keyof typeof builds;

const eachLayout = test.macro({
  async exec(t: ExecutionContext, layout: Layout, check: (t: ExecutionContext, built: Built) => void | Promise<void>) {
    await check(t, await builds[layout]);
  },
  title: (title, layout: Layout) => `${layout}: ${title ?? ''}`,
});

for (const layout of ['base', 'triton'] as const) {
  test('every object passes its Kubernetes or Istio schema', eachLayout, layout, (t, { objects }) => {
    t.true(objects.length >= 10);
    for (const object of objects) t.notThrows(() => validateObject(object), `${object.kind} ${object.metadata.name}`);
  });

  test('every object is in the namespace the mesh routing is rendered for', eachLayout, layout, (t, { objects }) => {
    for (const object of objects) t.is(object.metadata.namespace, DEFAULT_MESH_TARGET.namespace, `${object.kind} ${object.metadata.name}`);
  });

  test('the ConfigMap is a valid gateway config whose versions all call the runtime on loopback', eachLayout, layout, (t, { objects, config }) => {
    const deployment = pick(objects, 'Deployment');
    const runtime = container(deployment, 'runtime');
    const flags = [...(runtime.command ?? []), ...(runtime.args ?? [])].join(' ');
    const port = /--(?:http-)?port[= ](\d+)/.exec(flags)?.[1];
    t.truthy(port, `runtime port in: ${flags}`);
    for (const [name, model] of Object.entries(config.models)) {
      for (const [version, v] of Object.entries(model.versions)) {
        t.is(v.backend.kind, 'http', `${name} ${version}`);
        if (v.backend.kind === 'http') t.is(new URL(v.backend.url).host, `127.0.0.1:${port}`, `${name} ${version}`);
      }
    }
  });

  test('the gateway container listens on server.port and is probed on the OIP health endpoints', eachLayout, layout, (t, { objects, config }) => {
    const deployment = pick(objects, 'Deployment');
    const gateway = container(deployment, 'gateway');
    const http = gateway.ports?.find((p) => p.name === 'http');
    t.is(http?.containerPort, config.server.port);
    t.deepEqual(gateway.readinessProbe?.httpGet, { path: '/v2/health/ready', port: 'http' });
    t.deepEqual(gateway.livenessProbe?.httpGet, { path: '/v2/health/live', port: 'http' });
    t.is(gateway.startupProbe?.httpGet?.path, '/v2/health/live');
    t.truthy(gateway.resources?.requests?.cpu);
    t.truthy(gateway.resources?.limits?.memory);
    // The admin API stays on loopback: never exposed as a container port.
    t.is(config.admin.host, '127.0.0.1');
    t.false((gateway.ports ?? []).some((p) => p.containerPort === config.admin.port));
  });

  test('the config is mounted as a directory (so reloads see ConfigMap updates) where --config points', eachLayout, layout, (t, { objects }) => {
    const deployment = pick(objects, 'Deployment');
    const gateway = container(deployment, 'gateway');
    const configFile = gateway.args![gateway.args!.indexOf('--config') + 1]!;
    const mount = gateway.volumeMounts!.find((m) => m.mountPath === path.posix.dirname(configFile));
    t.truthy(mount);
    const volume = podSpec(deployment).volumes!.find((v) => v.name === mount!.name);
    t.is(volume?.configMap?.name, 'model-gateway-config');
    t.is(path.posix.basename(configFile), 'gateway.yaml');
  });

  test('grace period, preStop sleeps and sidecar drain follow from server.shutdownTimeoutMs', eachLayout, layout, (t, { objects, config }) => {
    const deployment = pick(objects, 'Deployment');
    const spec = podSpec(deployment);
    const preStop = container(deployment, 'gateway').lifecycle?.preStop?.sleep?.seconds;
    const runtimePreStop = container(deployment, 'runtime').lifecycle?.preStop?.sleep?.seconds;
    const drainSeconds = config.server.shutdownTimeoutMs / 1000;
    t.truthy(preStop);
    const gatewayDone = preStop! + drainSeconds;
    t.true(spec.terminationGracePeriodSeconds! > gatewayDone, `grace ${spec.terminationGracePeriodSeconds} must exceed preStop ${preStop} + drain ${drainSeconds}`);
    // The runtime must still answer every call the draining gateway makes, and then get time to exit.
    t.true(runtimePreStop! >= gatewayDone);
    t.true(spec.terminationGracePeriodSeconds! > runtimePreStop!);
    // Requests in flight at SIGTERM can finish inside the drain.
    for (const [name, model] of Object.entries(config.models)) t.true(model.timeoutMs <= config.server.shutdownTimeoutMs, name);
    // Istio's sidecar must keep carrying responses until the gateway is done.
    const annotations = (deployment.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations;
    const proxy = JSON.parse(annotations['proxy.istio.io/config']!) as { terminationDrainDuration: string };
    t.true(parseDurationMs(proxy.terminationDrainDuration)! >= gatewayDone * 1000);
  });

  test('the Service, PDB, HPA and every subset select the Deployment’s pods', eachLayout, layout, (t, { objects }) => {
    const deployment = pick(objects, 'Deployment');
    const labels = podLabels(deployment);
    const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
    const service = pick(objects, 'Service');
    t.true(selects((service.spec as { selector: Record<string, string> }).selector));
    t.is((service.spec as { ports: { targetPort: string }[] }).ports[0]!.targetPort, 'http');
    t.true(selects((pick(objects, 'PodDisruptionBudget').spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels));
    const hpa = pick(objects, 'HorizontalPodAutoscaler').spec as { scaleTargetRef: { kind: string; name: string }; minReplicas: number };
    t.deepEqual([hpa.scaleTargetRef.kind, hpa.scaleTargetRef.name], ['Deployment', deployment.metadata.name]);
    const pdb = pick(objects, 'PodDisruptionBudget').spec as { maxUnavailable: number };
    t.true(hpa.minReplicas > pdb.maxUnavailable, 'a voluntary disruption must leave a pod serving');
    for (const subset of (pick(objects, 'DestinationRule').spec as { subsets: { name: string; labels: Record<string, string> }[] }).subsets) {
      t.true(selects(subset.labels), subset.name);
    }
    t.is(service.metadata.name, DEFAULT_MESH_TARGET.service);
    t.is((service.spec as { ports: { port: number }[] }).ports[0]!.port, DEFAULT_MESH_TARGET.port);
  });

  test('the VirtualService and DestinationRule are what `mesh render` makes of the ConfigMap (no drift)', eachLayout, layout, (t, { objects, config }) => {
    t.deepEqual(meshDrift(renderIstio(config), objects, config.server.keepAliveTimeoutMs), []);
    const idle = (pick(objects, 'DestinationRule').spec as { trafficPolicy: { connectionPool: { http: { idleTimeout: string } } } }).trafficPolicy.connectionPool.http.idleTimeout;
    t.true(parseDurationMs(idle)! < config.server.keepAliveTimeoutMs);
  });

  test('Istio verifies the gateway’s issuers and forwards the token the gateway authorises with', eachLayout, layout, (t, { objects, config }) => {
    const rules = (pick(objects, 'RequestAuthentication').spec as { jwtRules: { issuer: string; jwksUri: string; audiences: string[]; forwardOriginalToken: boolean }[] }).jwtRules;
    t.deepEqual(
      rules.map((r) => ({ issuer: r.issuer, jwksUri: r.jwksUri, audiences: r.audiences })),
      config.auth!.issuers.map((i) => ({ issuer: i.issuer, jwksUri: i.jwks.url, audiences: i.audiences })),
    );
    for (const rule of rules) t.true(rule.forwardOriginalToken);
    const policy = pick(objects, 'AuthorizationPolicy').spec as { rules: { to: { operation: { ports: string[] } }[] }[] };
    const ports = new Set(policy.rules.flatMap((r) => r.to.flatMap((to) => to.operation.ports)));
    t.deepEqual([...ports], [String(config.server.port)]);
  });

  test('no container keeps a placeholder image', eachLayout, layout, (t, { objects }) => {
    const spec = podSpec(pick(objects, 'Deployment'));
    for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) t.regex(c.image, /^[a-z0-9.-]+\.[a-z]+\/.+:[\w.-]+$/, c.name);
  });
}

test('base: serve-model serves every model version the gateway config names, from the models the image ships', async (t) => {
  const { objects, config } = await builds.base;
  const runtime = container(pick(objects, 'Deployment'), 'runtime');
  t.is(runtime.args![0], 'serve-model');
  t.is(runtime.args![runtime.args!.indexOf('--host') + 1], '127.0.0.1');
  // The Dockerfile copies examples/ to /app/examples, so the image's model directory is this checkout's examples/models.
  t.is(runtime.args![runtime.args!.indexOf('--model-dir') + 1], '/app/examples/models');
  const served = new Set((await scanModelDirectory(MODELS)).map((m) => `${m.model}/${m.version}`));
  for (const [name, model] of Object.entries(config.models)) {
    for (const v of Object.values(model.versions)) if (v.backend.kind === 'http') t.true(served.has(`${v.backend.model ?? name}/${v.backend.version}`), `${name} ${v.backend.version}`);
  }
});

test('triton: the model repository holds every version the gateway calls, and Triton serves all of them', async (t) => {
  const { objects, config } = await builds.triton;
  const deployment = pick(objects, 'Deployment');
  const runtime = container(deployment, 'runtime');
  t.regex(runtime.image, /^nvcr\.io\/nvidia\/tritonserver:/);
  t.deepEqual(runtime.command, ['tritonserver']);
  t.is(runtime.livenessProbe?.exec, undefined, 'the base exec probe is removed');
  t.deepEqual(runtime.readinessProbe?.httpGet, { path: '/v2/health/ready', port: 'triton-http' });
  t.is(runtime.ports?.find((p) => p.name === 'triton-http')?.containerPort, 8000);
  const init = podSpec(deployment).initContainers!.find((c) => c.name === 'model-repository')!;
  const script = init.command!.join('\n');
  const pbtxt = pick(objects, 'ConfigMap', 'triton-model-config').data as Record<string, string>;
  for (const [name, model] of Object.entries(config.models)) {
    for (const v of Object.values(model.versions)) {
      if (v.backend.kind !== 'http') continue;
      const remote = v.backend.model ?? name;
      const copy = new RegExp(`cp /app/examples/models/(\\S+) /models/${remote}/${v.backend.version}/model\\.onnx`).exec(script);
      t.truthy(copy, `${remote}/${v.backend.version} is copied into the repository`);
      await t.notThrowsAsync(readFile(path.join(MODELS, copy![1]!)), `the image ships ${copy![1]}`);
      t.regex(script, new RegExp(`cp /triton-config/${remote}\\.pbtxt /models/${remote}/config\\.pbtxt`));
      t.regex(pbtxt[`${remote}.pbtxt`] ?? '', new RegExp(`name: "${remote}"[\\s\\S]*version_policy: \\{ all \\{ \\} \\}`));
    }
  }
  // The base's serve-model flags must not leak into Triton's command line.
  t.false(runtime.args!.includes('serve-model'));
});

test('the Dockerfile builds the gateway on Node 24 and ships the models serve-model reads', async (t) => {
  const dockerfile = await readFile(path.join(ROOT, 'deploy/Dockerfile'), 'utf8');
  const from = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
  t.true(from.length > 0);
  for (const image of from) t.regex(image, /^node:24/);
  t.regex(dockerfile, /COPY --from=build \/app\/examples \.\/examples/);
  t.regex(dockerfile, /ENTRYPOINT \["node", "dist\/src\/cli\.js"\]/);
});

const rejected = test.macro({
  async exec(t: ExecutionContext, fixture: string, expected: RegExp) {
    const [object] = await readManifests(path.join(FIXTURES, fixture));
    const error = t.throws(() => validateObject(object!));
    t.regex(error?.message ?? '', expected);
  },
  title: (_, fixture: string) => `the schema rejects the broken fixture ${fixture}`,
});

test(rejected, 'broken-deployment.yaml', /containerPort must be integer|replicas must be integer/);
test(rejected, 'broken-virtualservice.yaml', /weight must be integer|value must be number/);

const mutated = test.macro({
  async exec(t: ExecutionContext, kind: string, patch: unknown, expected: RegExp) {
    const { objects } = await builds.base;
    const original = pick(objects, kind);
    t.notThrows(() => validateObject(original));
    const broken = strategicMerge(structuredClone(original), patch) as K8sObject;
    const error = t.throws(() => validateObject(broken));
    t.regex(error?.message ?? '', expected);
  },
  title: (_, kind: string, patch: unknown) => `one bad field in the shipped ${kind} fails validation: ${JSON.stringify(patch)}`,
});

test(mutated, 'Deployment', { spec: { template: { spec: { terminationGracePeriodSeconds: '40s' } } } }, /terminationGracePeriodSeconds must be integer/);
test(mutated, 'DestinationRule', { spec: { trafficPolicy: { outlierDetection: { consecutive5xxErrors: 'five' } } } }, /consecutive5xxErrors/);
test(mutated, 'HorizontalPodAutoscaler', { spec: { minReplicas: 'two' } }, /minReplicas must be integer/);
test(mutated, 'AuthorizationPolicy', { spec: { action: 'PERMIT' } }, /action/);

test('the helper refuses kinds it has no schema for, instead of passing them unchecked', (t) => {
  const error = t.throws(() => validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }));
  t.regex(error?.message ?? '', /no schema for example\.com\/v1 Widget/);
});

test('strategic merge: keyed lists merge, other lists are replaced, null deletes', (t) => {
  const merged = strategicMerge(
    { containers: [{ name: 'a', image: 'x', args: ['1', '2'], probe: { exec: {}, period: 1 } }, { name: 'b', image: 'y' }] },
    { containers: [{ name: 'a', args: ['3'], probe: { exec: null, httpGet: { path: '/' } } }, { name: 'c', image: 'z' }] },
  );
  t.deepEqual(merged, {
    containers: [
      { name: 'a', image: 'x', args: ['3'], probe: { period: 1, httpGet: { path: '/' } } },
      { name: 'b', image: 'y' },
      { name: 'c', image: 'z' },
    ],
  });
  t.true(isRecord(merged));
});
