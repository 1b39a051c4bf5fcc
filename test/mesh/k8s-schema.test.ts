// The strict Kubernetes/Istio validator of the deploy tests (test/mesh/k8s-schema.ts): unknown fields at any depth and
// Istio durations that are no durations fail with their path, maps and valid objects pass, the libraries' own errors
// still come through, and every Istio duration rule names a field of the installed schema.

import test, { type ExecutionContext } from 'ava';
import { parseDurationMs } from '../../src/mesh/render-drift.js';
import { ISTIO_DURATION_FIELDS, validateObject, type K8sObject } from '../helpers/k8s-schema.js';

const problemsOf = (object: K8sObject): string[] => {
  try {
    validateObject(object);
    return [];
  } catch (err) {
    const message = (err as Error).message;
    return message.slice(message.indexOf(': ') + 2).split('; ');
  }
};

const deployment = (podSpec: Record<string, unknown>, metadata: Record<string, unknown> = {}): K8sObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'd', ...metadata },
  spec: {
    selector: { matchLabels: { app: 'd' } },
    template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'i' }], ...podSpec } },
  },
});

test('a valid object passes, with arbitrary keys in maps (labels, annotations)', (t) => {
  t.deepEqual(
    problemsOf(deployment({ nodeSelector: { 'kubernetes.io/os': 'linux' } }, { labels: { anything: 'x' }, annotations: { 'prometheus.io/scrape': 'true' } })),
    [],
  );
});

test('unknown fields are reported at every depth, each with its path', (t) => {
  const object = deployment(
    { terminationGracePeriodSecond: 40, containers: [{ name: 'c', image: 'i', livenessProbe: { httpGet: { port: 80, pth: '/' } } }] },
    { labelz: {} },
  );
  t.deepEqual(problemsOf(object), [
    'metadata.labelz: unknown field (not in the apps/v1 Deployment schema)',
    'spec.template.spec.containers[0].livenessProbe.httpGet.pth: unknown field (not in the apps/v1 Deployment schema)',
    'spec.template.spec.terminationGracePeriodSecond: unknown field (not in the apps/v1 Deployment schema)',
  ]);
});

test('the library’s own errors still come first, next to unknown fields', (t) => {
  t.deepEqual(problemsOf(deployment({ terminationGracePeriodSeconds: '40s', graceTypo: 1 })), [
    'data/spec/template/spec/terminationGracePeriodSeconds must be integer',
    'spec.template.spec.graceTypo: unknown field (not in the apps/v1 Deployment schema)',
  ]);
});

test('an object the schema leaves free-form still may not hide fields: a key no validator read is unknown', (t) => {
  // DestinationRule.status is `type: object` without properties in the Istio schema.
  const problems = problemsOf({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'DestinationRule',
    metadata: { name: 'd' },
    spec: { host: 'h' },
    status: { x: 1 },
  });
  t.deepEqual(problems, ['status.x: unknown field (not in the networking.istio.io/v1beta1 DestinationRule schema)']);
});

const destinationRule = (v: unknown): K8sObject => ({
  apiVersion: 'networking.istio.io/v1beta1',
  kind: 'DestinationRule',
  metadata: { name: 'd' },
  spec: {
    host: 'h',
    trafficPolicy: {
      connectionPool: { tcp: { connectTimeout: v, maxConnectionDuration: v, tcpKeepalive: { time: v, interval: v } }, http: { idleTimeout: v } },
      outlierDetection: { interval: v, baseEjectionTime: v },
      loadBalancer: { warmupDurationSecs: v, consistentHash: { httpCookie: { name: 'c', ttl: v } } },
    },
  },
});
const virtualService = (v: unknown): K8sObject => ({
  apiVersion: 'networking.istio.io/v1beta1',
  kind: 'VirtualService',
  metadata: { name: 'v' },
  spec: {
    hosts: ['h'],
    http: [
      {
        timeout: v,
        retries: { attempts: 1, perTryTimeout: v },
        fault: { delay: { fixedDelay: v } },
        corsPolicy: { maxAge: v },
        route: [{ destination: { host: 'h' } }],
      },
      { fault: { delay: { exponentialDelay: v } }, route: [{ destination: { host: 'h' } }] },
    ],
  },
});

test('every Istio duration rule names a field of the installed Istio schema, and each refuses a non-duration', (t) => {
  // Both objects use every rule: no rule is dead (a misspelled rule would be an unknown field here).
  t.deepEqual(problemsOf(destinationRule('1.5s')), []);
  t.deepEqual(problemsOf(virtualService('100ms')), []);
  const bad = [...problemsOf(destinationRule('sixty')), ...problemsOf(virtualService('sixty'))];
  const rules = Object.entries(ISTIO_DURATION_FIELDS).flatMap(([parent, keys]) => keys.map((key) => `${parent}.${key}`));
  const hit = new Set(bad.map((line) => /([\w]+)(?:\[\d+\])?\.(\w+): "sixty" is not a duration/.exec(line)).map((m) => (m ? `${m[1]}.${m[2]}` : 'unexpected')));
  t.deepEqual([...hit].sort(), [...rules].sort());
  t.is(bad.length, 14);
});

const durations = test.macro({
  exec(t: ExecutionContext, value: string, ms: number | undefined) {
    t.is(parseDurationMs(value), ms);
    const problems = problemsOf(destinationRule(value)).filter((p) => p.includes('idleTimeout'));
    t.is(problems.length, ms === undefined ? 1 : 0, problems.join('\n'));
  },
  title: (_, value: string, ms: number | undefined) => `Istio duration ${JSON.stringify(value)} ${ms === undefined ? 'is refused' : `is ${ms} ms`}`,
});
test(durations, '60s', 60_000);
test(durations, '1.5s', 1_500);
test(durations, '100ms', 100);
test(durations, '1m30s', 90_000);
test(durations, '1h', 3_600_000);
test(durations, '250us', 0.25);
test(durations, 'sixty', undefined);
test(durations, '60', undefined);
test(durations, '-1s', undefined);
test(durations, '5 s', undefined);
test(durations, '', undefined);

test('a duration given as a number is refused too', (t) => {
  t.true(problemsOf(destinationRule(60)).some((p) => /connectionPool\.http\.idleTimeout: (60 is not a duration|.*must be string)/.test(p)));
});
