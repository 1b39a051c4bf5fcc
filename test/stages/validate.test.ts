// Validate stage, pass-through rule: a remote version with `validate: remote` gets the body undecoded, unless another
// stage needs tensors (shadows, `cost: rows` rate limits); interceptors (reload's in-flight count, instrumentation) keep the rule.

import test from 'ava';
import { createBackend } from '../../src/backends/create.js';
import { intercept, type Backend } from '../../src/backends/backend.js';
import { InFlightCalls } from '../../src/backends/in-flight.js';
import { configSchema, type GatewayConfig } from '../../src/config/schema.js';
import type { ServedVersion } from '../../src/models/catalog.js';
import { modelsNeedingTensors } from '../../src/stages/chain.js';
import { needsDecoding } from '../../src/stages/decode.js';
import { createLogger } from '../../src/telemetry/log.js';

const log = createLogger('silent');
const URL = 'http://127.0.0.1:9';

function config(extra: Record<string, unknown> = {}, models: Record<string, unknown> = {}): GatewayConfig {
  return configSchema.parse({
    models: {
      a: { versions: { '1': { backend: { kind: 'http', url: URL } } } },
      b: { versions: { '1': { backend: { kind: 'http', url: URL } }, '2': { backend: { kind: 'http', url: URL } } } },
      ...models,
    },
    ...extra,
  });
}

function served(backend: Backend): ServedVersion {
  return { model: 'a', version: '1', backend };
}

const decodes = test.macro((t, make: () => Backend, expected: boolean) => {
  const backend = make();
  t.teardown(() => backend.close());
  t.is(needsDecoding(served(backend)), expected);
});
const http = (validate: 'remote' | 'gateway') => () => {
  const c = config({}, { a: { versions: { '1': { backend: { kind: 'http', url: URL, validate } } } } });
  const b = c.models.a!.versions['1']!.backend;
  return createBackend('a', '1', b, log);
};
test('an http version with validate: remote forwards undecoded', decodes, http('remote'), false);
test('an http version with validate: gateway is decoded and checked here first', decodes, http('gateway'), true);
test('interceptors around a remote keep it pass-through', decodes, () => intercept(http('remote')(), new InFlightCalls().interceptor), false);
test(
  'an in-process ONNX version always needs tensors',
  decodes,
  () => createBackend('a', '1', { kind: 'onnx', path: '/x.onnx', workers: 1, intraOpThreads: 1, maxQueue: 1 }, log),
  true,
);

const needs = test.macro((t, c: GatewayConfig, expected: Record<string, boolean>) => {
  const need = modelsNeedingTensors(c);
  t.deepEqual(Object.fromEntries(Object.keys(expected).map((m) => [m, need(m)])), expected);
});
test('nothing else needs tensors: every model may pass through', needs, config(), { a: false, b: false });
test(
  'a shadowed model needs them (copies and comparisons are tensors)',
  needs,
  config(
    {},
    {
      b: { versions: { '1': { backend: { kind: 'http', url: URL } }, '2': { backend: { kind: 'http', url: URL } } }, shadow: { targets: [{ version: '2' }] } },
    },
  ),
  { a: false, b: true },
);
test(
  'a rows-cost rate limit on one model needs its batch size',
  needs,
  config({ rateLimits: { rules: [{ name: 'rows', models: ['a'], key: { header: 'x-user' }, ratePerSecond: 10, burst: 10, cost: 'rows' }] } }),
  { a: true, b: false },
);
test(
  'a rows-cost rate limit on every model needs them all',
  needs,
  config({ rateLimits: { rules: [{ name: 'rows', key: { header: 'x-user' }, ratePerSecond: 10, burst: 10, cost: 'rows' }] } }),
  { a: true, b: true },
);
test(
  'request-cost rate limits need no tensors',
  needs,
  config({ rateLimits: { rules: [{ name: 'req', key: { header: 'x-user' }, ratePerSecond: 10, burst: 10 }] } }),
  { a: false, b: false },
);
