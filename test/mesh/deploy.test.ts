// deploy/: every manifest of the base and the Triton overlay passes the Kubernetes/Istio schemas strictly (unknown
// fields and bad Istio durations fail too), the Dockerfile and Triton's config.pbtxt pass their checks, a broken
// fixture of each kind fails, every file under deploy/ is reached by one of these checks, and the pods, probes, drain
// timings, metrics scraping, mesh routing and JWT rules agree with the gateway config in the ConfigMap.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { parseDocument } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { DEFAULT_MESH_TARGET, renderIstio } from '../../src/mesh/istio.js';
import { meshDrift, parseDurationMs } from '../../src/mesh/render-drift.js';
import { scanModelDirectory } from '../../src/app/runtime.js';
import { MODELS, ROOT } from '../helpers/gateway.js';
import { dockerfileProblems, tritonConfigProblems } from '../helpers/deploy-checks.js';
import { buildKustomization, isRecord, pick, readManifests, strategicMerge } from '../helpers/deploy-kustomize.js';
import { validateObject, type K8sObject } from '../helpers/k8s-schema.js';

const BASE = path.join(ROOT, 'deploy/base');
const TRITON = path.join(ROOT, 'deploy/overlays/triton');
const FIXTURES = path.join(ROOT, 'test/fixtures/k8s');
const DOCKERFILE = path.join(ROOT, 'deploy/Dockerfile');
/** Files under deploy/ that no kustomization reads, each checked by a test below that names it. */
const CHECKED_BY_NAME = [DOCKERFILE];
/** `docker build -f deploy/Dockerfile .` runs from the repository root; `npm run build` compiles tsconfig's include. */
const dockerRules = async () => ({
  contextDir: ROOT,
  compiled: (JSON.parse(await readFile(path.join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] }).include,
});

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
  /** Every file the build read (absolute paths). */
  reads: Set<string>;
}

/** Builds a kustomization and parses the gateway config out of its ConfigMap, as the pod would read it. */
async function build(dir: string): Promise<Built> {
  const reads = new Set<string>();
  const objects = await buildKustomization(dir, reads);
  const configMap = pick(objects, 'ConfigMap', 'model-gateway-config');
  const text = (configMap.data as Record<string, string>)['gateway.yaml']!;
  const doc = parseDocument(text, { uniqueKeys: true });
  // Only http backends and a JWKS URL: nothing in it refers to a file, so the ConfigMap is checked exactly as shipped.
  const config = await parseConfig(doc.toJS(), { baseDir: '/nonexistent', source: 'ConfigMap model-gateway-config', env: {} });
  return { objects, config, reads };
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
    // The gRPC data plane: its container port, and a Service port Istio treats as gRPC.
    t.is(gateway.ports?.find((p) => p.name === 'grpc')?.containerPort, config.server.grpc.port);
    const service = pick(objects, 'Service').spec as { ports: { name: string; targetPort: string; appProtocol?: string }[] };
    t.like(
      service.ports.find((p) => p.targetPort === 'grpc'),
      { appProtocol: 'grpc' },
    );
    t.regex(service.ports.find((p) => p.targetPort === 'grpc')!.name, /^grpc(-|$)/);
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
    t.true(
      spec.terminationGracePeriodSeconds! > gatewayDone,
      `grace ${spec.terminationGracePeriodSeconds} must exceed preStop ${preStop} + drain ${drainSeconds}`,
    );
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
    const idle = (pick(objects, 'DestinationRule').spec as { trafficPolicy: { connectionPool: { http: { idleTimeout: string } } } }).trafficPolicy
      .connectionPool.http.idleTimeout;
    t.true(parseDurationMs(idle)! < config.server.keepAliveTimeoutMs);
  });

  test('Istio verifies the gateway’s issuers and forwards the token the gateway authorises with', eachLayout, layout, (t, { objects, config }) => {
    const rules = (
      pick(objects, 'RequestAuthentication').spec as { jwtRules: { issuer: string; jwksUri: string; audiences: string[]; forwardOriginalToken: boolean }[] }
    ).jwtRules;
    t.deepEqual(
      rules.map((r) => ({ issuer: r.issuer, jwksUri: r.jwksUri, audiences: r.audiences })),
      config.auth!.issuers.map((i) => ({ issuer: i.issuer, jwksUri: i.jwks.url, audiences: i.audiences })),
    );
    for (const rule of rules) t.true(rule.forwardOriginalToken);
    const policy = pick(objects, 'AuthorizationPolicy').spec as { rules: { to: { operation: { ports: string[] } }[] }[] };
    const ports = new Set(policy.rules.flatMap((r) => r.to.flatMap((to) => to.operation.ports)));
    t.deepEqual([...ports], [String(config.server.port), String(config.server.grpc.port)]);
  });

  test(
    'Prometheus scrapes the gateway’s /metrics on the admin port (pod annotations for Istio’s metrics merging)',
    eachLayout,
    layout,
    (t, { objects, config }) => {
      const deployment = pick(objects, 'Deployment');
      const annotations = (deployment.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations;
      t.is(annotations['prometheus.io/scrape'], 'true');
      t.is(annotations['prometheus.io/port'], String(config.admin.port));
      t.is(annotations['prometheus.io/path'], '/metrics');
      // Something is served there: the admin server starts for /metrics even without a token.
      t.true(config.admin.enabled);
      t.true(config.telemetry.metrics.enabled);
    },
  );

  test('the DestinationRule ejects pods only for local-origin failures, never for the gateway’s own 5xx answers', eachLayout, layout, (t, { objects }) => {
    const trafficPolicy = (pick(objects, 'DestinationRule').spec as { trafficPolicy: { outlierDetection: Record<string, unknown> } }).trafficPolicy;
    const outlier = trafficPolicy.outlierDetection;
    t.is(outlier.splitExternalLocalOriginErrors, true);
    t.true(typeof outlier.consecutiveLocalOriginFailures === 'number' && outlier.consecutiveLocalOriginFailures > 0);
    // Istio ejects after 5 consecutive 5xx when the field is absent: 0 must be explicit.
    t.is(outlier.consecutive5xxErrors, 0);
    t.is(outlier.consecutiveGatewayErrors, 0);
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
    for (const v of Object.values(model.versions))
      if (v.backend.kind === 'http') t.true(served.has(`${v.backend.model ?? name}/${v.backend.version}`), `${name} ${v.backend.version}`);
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
  const called = new Map<string, Set<number>>();
  for (const [name, model] of Object.entries(config.models)) {
    for (const v of Object.values(model.versions)) {
      if (v.backend.kind !== 'http') continue;
      const remote = v.backend.model ?? name;
      const copy = new RegExp(`cp /app/examples/models/(\\S+) /models/${remote}/${v.backend.version}/model\\.onnx`).exec(script);
      t.truthy(copy, `${remote}/${v.backend.version} is copied into the repository`);
      await t.notThrowsAsync(readFile(path.join(MODELS, copy![1]!)), `the image ships ${copy![1]}`);
      t.regex(script, new RegExp(`cp /triton-config/${remote}\\.pbtxt /models/${remote}/config\\.pbtxt`));
      called.set(remote, (called.get(remote) ?? new Set()).add(Number(v.backend.version)));
    }
  }
  // Each config.pbtxt parses, names its model, uses ONNX Runtime and serves every version the gateway calls.
  for (const [remote, versions] of called) {
    const available = [...script.matchAll(new RegExp(`/models/${remote}/(\\d+)/model\\.onnx`, 'g'))].map((m) => Number(m[1]));
    t.deepEqual(tritonConfigProblems(pbtxt[`${remote}.pbtxt`] ?? '', { model: remote, available, called: [...versions] }), [], `${remote}.pbtxt`);
  }
  t.deepEqual(Object.keys(pbtxt).sort(), [...called.keys()].map((m) => `${m}.pbtxt`).sort(), 'one config.pbtxt per model, none unused');
  // The base's serve-model flags must not leak into Triton's command line.
  t.false(runtime.args!.includes('serve-model'));
});

test('the Dockerfile builds the gateway on Node 24 and ships the models serve-model reads', async (t) => {
  t.deepEqual(await dockerfileProblems(await readFile(DOCKERFILE, 'utf8'), await dockerRules()), []);
});

const brokenDockerfile = test.macro({
  async exec(t: ExecutionContext, fixture: string, expected: RegExp) {
    const problems = await dockerfileProblems(await readFile(path.join(FIXTURES, 'dockerfile', fixture), 'utf8'), await dockerRules());
    t.is(problems.length, 1, problems.join('\n'));
    t.regex(problems[0] ?? '', expected);
  },
  title: (_, fixture: string) => `the Dockerfile check rejects the broken fixture ${fixture}`,
});
test(brokenDockerfile, 'node22.Dockerfile', /line \d+: FROM node:22-bookworm-slim: every stage must be built on Node 24/);
test(brokenDockerfile, 'no-entrypoint.Dockerfile', /the final stage has no ENTRYPOINT \["node", "dist\/src\/cli\.js"\]/);

const dockerfileEdit = test.macro({
  async exec(t: ExecutionContext, from: string | RegExp, to: string, expected: RegExp) {
    const shipped = await readFile(DOCKERFILE, 'utf8');
    const edited = shipped.replace(from, to);
    t.not(edited, shipped, 'the edit applies to the shipped Dockerfile');
    const problems = await dockerfileProblems(edited, await dockerRules());
    t.is(problems.length, 1, problems.join('\n'));
    t.regex(problems[0] ?? '', expected);
  },
  title: (title) => `the Dockerfile check fails when ${title ?? ''}`,
});
test(
  'a COPY names a file missing from the build context',
  dockerfileEdit,
  'COPY tsconfig.json ./',
  'COPY tsconfig.build.json ./',
  /COPY tsconfig\.build\.json: not in the build context/,
);
test('the build stage skips a compiled directory', dockerfileEdit, /^COPY bench \.\/bench\n/m, '', /does not COPY bench/);
test(
  'the image no longer ships the example models',
  dockerfileEdit,
  /^COPY --from=build \/app\/examples \.\/examples\n/m,
  '',
  /\/app\/examples → \.\/examples/,
);
test('the image no longer ships protos/', dockerfileEdit, /^COPY protos \.\/protos\n/m, '', /protos → \.\/protos/);
test('the image runs as root', dockerfileEdit, /^USER node\n/m, '', /USER node/);
test(
  'the ENTRYPOINT is a shell form',
  dockerfileEdit,
  'ENTRYPOINT ["node", "dist/src/cli.js"]',
  'ENTRYPOINT node dist/src/cli.js',
  /ENTRYPOINT must be the exec form/,
);

const brokenPbtxt = test.macro({
  async exec(t: ExecutionContext, fixture: string, expected: RegExp) {
    const problems = tritonConfigProblems(await readFile(path.join(FIXTURES, 'triton', fixture), 'utf8'), { model: 'iris', available: [1, 2], called: [1, 2] });
    t.is(problems.length, 1, problems.join('\n'));
    t.regex(problems[0] ?? '', expected);
  },
  title: (_, fixture: string) => `the Triton config.pbtxt check rejects the broken fixture ${fixture}`,
});
test(brokenPbtxt, 'default-version-policy.pbtxt', /serves version\(s\) 2, not 1 that the gateway calls \(Triton's default is the latest version only\)/);
test(brokenPbtxt, 'unknown-field.pbtxt', /line 4: unknown field 'max_batch_sise' in inference\.ModelConfig/);
test(brokenPbtxt, 'unbalanced.pbtxt', /not protobuf text format: unexpected end of input: missing '\}'/);

test('the Triton config.pbtxt check: other policies and names', (t) => {
  const expect = { model: 'iris', available: [1, 2], called: [1, 2] };
  const config = (extra: string) => `name: "iris"\nbackend: "onnxruntime"\nmax_batch_size: 0\n${extra}`;
  t.deepEqual(tritonConfigProblems(config('version_policy: { specific { versions: [1, 2] } }'), expect), []);
  t.deepEqual(tritonConfigProblems(config('version_policy { latest { num_versions: 2 } }'), expect), []);
  t.regex(tritonConfigProblems(config('version_policy: { specific { versions: 2 } }'), expect)[0] ?? '', /serves version\(s\) 2, not 1/);
  t.regex(tritonConfigProblems(config('version_policy: { newest { } }'), expect).join('\n'), /unknown policy 'newest'/);
  t.regex(tritonConfigProblems('name: "iris2"\nbackend: "onnxruntime"\nversion_policy: { all { } }', expect)[0] ?? '', /name must be "iris"/);
  t.regex(tritonConfigProblems('name: "iris"\nbackend: "pytorch"\nversion_policy: { all { } }', expect)[0] ?? '', /backend must be "onnxruntime"/);
  t.regex(tritonConfigProblems(config('version_policy: { all { } }\nname: "iris"'), expect)[0] ?? '', /'name' given 2 times/);
});

test('every file under deploy/ is built by a kustomization the tests build, or checked by a test that names it', async (t) => {
  const reached = new Set<string>([...(await builds.base).reads, ...(await builds.triton).reads, ...CHECKED_BY_NAME]);
  const files = (await readdir(path.join(ROOT, 'deploy'), { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
  // The listing is recursive: it sees the overlay's files as well as the Dockerfile.
  t.true(files.includes(DOCKERFILE) && files.includes(path.join(TRITON, 'runtime-triton.yaml')));
  for (const file of files)
    t.true(
      reached.has(file),
      `${path.relative(ROOT, file)} is checked by no test: add it to a kustomization's resources/patches/configMapGenerator, or a test and CHECKED_BY_NAME`,
    );
});

const rejected = test.macro({
  /** `repair` undoes the fixture's defect: the repaired object must pass, so the failure is that defect's alone. */
  async exec(t: ExecutionContext, fixture: string, expected: RegExp, repair: (object: K8sObject) => void) {
    const [object] = await readManifests(path.join(FIXTURES, fixture));
    const error = t.throws(() => validateObject(object!));
    t.regex(error?.message ?? '', expected);
    repair(object!);
    t.notThrows(() => validateObject(object!), 'the fixture is valid without its defect');
  },
  title: (_, fixture: string) => `the schema rejects the broken fixture ${fixture}`,
});

/** The object at a dotted path (`spec.http.0.route`), for the repairs below. */
function nodeAt(object: unknown, at: string): Record<string, unknown> {
  const node = at.split('.').reduce<unknown>((n, key) => (Array.isArray(n) ? n[Number(key)] : isRecord(n) ? n[key] : undefined), object);
  if (!isRecord(node)) throw new Error(`no object at ${at}`);
  return node;
}
const setAt = (at: string, key: string, value: unknown) => (object: K8sObject) => {
  nodeAt(object, at)[key] = value;
};
const renameAt = (at: string, from: string, to: string) => (object: K8sObject) => {
  const node = nodeAt(object, at);
  node[to] = node[from];
  delete node[from];
};

test(rejected, 'broken-deployment.yaml', /spec\/replicas must be integer.*containerPort must be integer/, (o) => {
  setAt('spec', 'replicas', 2)(o);
  setAt('spec.template.spec.containers.0.ports.0', 'containerPort', 8080)(o);
});
test(rejected, 'broken-virtualservice.yaml', /mirrorPercentage\/value must be number.*route\/0\/weight must be integer/, (o) => {
  setAt('spec.http.0.route.0', 'weight', 90)(o);
  setAt('spec.http.0.mirrorPercentage', 'value', 10)(o);
});
test(
  rejected,
  'typo-deployment.yaml',
  /^Deployment typo: spec\.template\.spec\.terminationGracePeriodSecond: unknown field \(not in the apps\/v1 Deployment schema\)$/,
  renameAt('spec.template.spec', 'terminationGracePeriodSecond', 'terminationGracePeriodSeconds'),
);
test(rejected, 'broken-service.yaml', /^Service broken: spec\.selectr: unknown field/, renameAt('spec', 'selectr', 'selector'));
test(
  rejected,
  'broken-pdb.yaml',
  /^PodDisruptionBudget broken: spec\.selector\.matchLabel: unknown field/,
  renameAt('spec.selector', 'matchLabel', 'matchLabels'),
);
test(rejected, 'broken-serviceaccount.yaml', /^ServiceAccount broken: data\/automountServiceAccountToken must be boolean$/, (o) => {
  o.automountServiceAccountToken = false;
});
test(
  rejected,
  'broken-requestauthentication.yaml',
  /^RequestAuthentication broken: spec\.jwtRules\[0\]\.jwksUrl: unknown field/,
  renameAt('spec.jwtRules.0', 'jwksUrl', 'jwksUri'),
);
test(
  rejected,
  'typo-destinationrule.yaml',
  /^DestinationRule typo: spec\.trafficPolicy\.connectionPool\.http\.idleTimout: unknown field/,
  renameAt('spec.trafficPolicy.connectionPool.http', 'idleTimout', 'idleTimeout'),
);
test(
  rejected,
  'bad-duration-destinationrule.yaml',
  /^DestinationRule bad-duration: spec\.trafficPolicy\.connectionPool\.http\.idleTimeout: "sixty" is not a duration/,
  setAt('spec.trafficPolicy.connectionPool.http', 'idleTimeout', '60s'),
);
test(
  rejected,
  'typo-virtualservice.yaml',
  /^VirtualService typo: spec\.http\[0\]\.route\[0\]\.destination\.subst: unknown field/,
  renameAt('spec.http.0.route.0.destination', 'subst', 'subset'),
);

const unbuildable = test.macro({
  async exec(t: ExecutionContext, fixture: string, expected: RegExp) {
    const error = await t.throwsAsync(buildKustomization(path.join(FIXTURES, fixture)));
    t.regex(error?.message ?? '', expected);
  },
  title: (_, fixture: string) => `a kustomization the tests cannot build faithfully is refused: ${fixture}`,
});
test(unbuildable, 'unsupported-kustomization', /kustomization\.yaml: kustomization keys this test cannot build: commonLabels$/);
test(unbuildable, 'unmodelled-patch-kustomization', /kustomization\.yaml: patches\[0\]\.target: not modelled by this test's kustomize build$/);

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
test(
  mutated,
  'Deployment',
  { spec: { template: { spec: { terminationGracePeriodSecond: 40 } } } },
  /spec\.template\.spec\.terminationGracePeriodSecond: unknown field/,
);
test(
  mutated,
  'Deployment',
  { spec: { template: { spec: { containers: [{ name: 'gateway', resources: { limit: { cpu: '1' } } }] } } } },
  /spec\.template\.spec\.containers\[0\]\.resources\.limit: unknown field/,
);
test(mutated, 'Service', { spec: { selectr: { app: 'x' } } }, /spec\.selectr: unknown field/);
test(
  mutated,
  'DestinationRule',
  { spec: { trafficPolicy: { connectionPool: { http: { idleTimout: '60s' } } } } },
  /spec\.trafficPolicy\.connectionPool\.http\.idleTimout: unknown field/,
);
test(
  mutated,
  'DestinationRule',
  { spec: { trafficPolicy: { connectionPool: { http: { idleTimeout: 'sixty' } } } } },
  /spec\.trafficPolicy\.connectionPool\.http\.idleTimeout: "sixty" is not a duration/,
);
test(
  mutated,
  'DestinationRule',
  { spec: { subsets: [{ name: 'iris-v1', trafficPolicy: { outlierDetection: { interval: 10 } } }] } },
  /spec\.subsets\[0\]\.trafficPolicy\.outlierDetection\.interval: 10 is not a duration/,
);
test(
  mutated,
  'VirtualService',
  { spec: { http: [{ name: 'iris-infer', timeout: '30 seconds' }] } },
  /spec\.http\[2\]\.timeout: "30 seconds" is not a duration/,
);
test(
  mutated,
  'RequestAuthentication',
  { spec: { jwtRules: [{ issuer: 'https://login.example.com/', jwksUrl: 'https://login.example.com/jwks' }] } },
  /spec\.jwtRules\[0\]\.jwksUrl: unknown field/,
);
test(mutated, 'PodDisruptionBudget', { spec: { selector: { matchLabel: { app: 'x' } } } }, /spec\.selector\.matchLabel: unknown field/);

test('the helper refuses kinds it has no schema for, instead of passing them unchecked', (t) => {
  const error = t.throws(() => validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }));
  t.regex(error?.message ?? '', /no schema for example\.com\/v1 Widget/);
});

test('strategic merge: keyed lists merge, other lists are replaced, null deletes', (t) => {
  const merged = strategicMerge(
    {
      containers: [
        { name: 'a', image: 'x', args: ['1', '2'], probe: { exec: {}, period: 1 } },
        { name: 'b', image: 'y' },
      ],
    },
    {
      containers: [
        { name: 'a', args: ['3'], probe: { exec: null, httpGet: { path: '/' } } },
        { name: 'c', image: 'z' },
      ],
    },
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
