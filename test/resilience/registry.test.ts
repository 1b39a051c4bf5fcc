// Guard registry: one breaker and cap per version, kept across config generations while backend and settings are unchanged.

import test from 'ava';
import { createBackend } from '../../src/backends/create.js';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { ModelCatalog } from '../../src/models/catalog.js';
import { GuardRegistry } from '../../src/resilience/registry.js';
import { createLogger } from '../../src/telemetry/log.js';
import { ROOT, gatewayConfig, irisModels } from '../helpers/gateway.js';
import { ManualClock } from '../helpers/manual-clock.js';

const log = createLogger('silent');
const never = new AbortController().signal;

async function configWith(breaker: Record<string, unknown>): Promise<GatewayConfig> {
  const models = irisModels() as { iris: { versions: Record<string, Record<string, unknown>> } };
  models.iris.versions['2']!.breaker = breaker;
  return parseConfig(gatewayConfig({ models }), { baseDir: ROOT, source: 'test' });
}

/** Backends are only constructed here, never started: the registry keys on the objects, not on what they do. */
function catalogOf(config: GatewayConfig, reuse?: ModelCatalog): ModelCatalog {
  return ModelCatalog.fromConfig(
    config,
    (model, version, backend) => reuse?.get(model)?.versions.get(version)?.backend ?? createBackend(model, version, backend, log),
  );
}

async function openBreaker(registry: GuardRegistry): Promise<void> {
  const guard = registry.get('iris', '2')!;
  for (let i = 0; i < 2; i++) await guard.run(never, () => Promise.reject(new GatewayError('GW_ERR_BACKEND_FAILED'))).catch(() => undefined);
}

test('a reload that reuses a backend with the same settings keeps its guard and breaker state', async (t) => {
  const registry = new GuardRegistry({ log, clock: new ManualClock() });
  t.teardown(() => registry.close());
  const config = await configWith({ volumeThreshold: 2 });
  const first = catalogOf(config);
  const set = registry.bind(config, first);
  t.is(set.get(first.get('iris')!.versions.get('2')!), registry.get('iris', '2'));
  await openBreaker(registry);
  const before = registry.get('iris', '2');

  // The reload path: a new catalog object whose versions hold the same backend objects.
  const second = catalogOf(config, first);
  const next = registry.bind(config, second);
  t.is(registry.get('iris', '2'), before);
  t.is(next.get(second.get('iris')!.versions.get('2')!), before);
  t.is(registry.snapshot().iris!['2']!.breaker.state, 'open');
  t.is(registry.snapshot().iris!['1']!.breaker.state, 'closed');
});

const freshGuard = test.macro(async (t, change: 'settings' | 'backend') => {
  const registry = new GuardRegistry({ log, clock: new ManualClock() });
  t.teardown(() => registry.close());
  const config = await configWith({ volumeThreshold: 2 });
  const first = catalogOf(config);
  registry.bind(config, first);
  await openBreaker(registry);
  const before = registry.get('iris', '2');
  const nextConfig = change === 'settings' ? await configWith({ volumeThreshold: 3 }) : config;
  registry.bind(nextConfig, change === 'settings' ? catalogOf(nextConfig, first) : catalogOf(nextConfig));
  t.not(registry.get('iris', '2'), before);
  t.is(registry.snapshot().iris!['2']!.breaker.state, 'closed');
  t.like(registry.snapshot().iris!['2']!.limits, { maxConcurrent: 64, maxQueue: 0, inFlight: 0 });
});
test('changed breaker settings get a fresh guard', freshGuard, 'settings');
test('a replaced backend gets a fresh guard', freshGuard, 'backend');
