// startTracing(): when spans are recorded and exported (config endpoint, the standard OTEL_* variables), when not
// (no endpoint, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none), and the resource OTEL_SERVICE_NAME /
// OTEL_RESOURCE_ATTRIBUTES give it. The environment is injected; nothing is ever sent (no span is made while exporting).

import test from 'ava';
import { ROOT_CONTEXT, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { startTracing, tracer, tracingEnabled, type Tracing, type TracingOptions } from '../../src/telemetry/tracing.js';
import { GATEWAY_NAME, GATEWAY_VERSION } from '../../src/core/version.js';

/** Starts tracing and always shuts it down (the OpenTelemetry globals can only be registered once at a time). */
async function start(t: import('ava').ExecutionContext, options: TracingOptions): Promise<Tracing> {
  const tracing = await startTracing(options);
  t.teardown(() => tracing.shutdown());
  return tracing;
}

const CONFIGURED = 'http://config-collector:4318/v1/traces';

test.serial('no endpoint anywhere: nothing is recorded', async (t) => {
  const tracing = await start(t, { env: { OTEL_SERVICE_NAME: 'x', OTEL_TRACES_EXPORTER: 'otlp' } });
  t.false(tracing.enabled);
  t.is(tracing.endpoint, undefined);
  t.false(tracingEnabled());
  t.false(tracer().startSpan('probe').isRecording());
});

test.serial('empty endpoint variables count as unset', async (t) => {
  const tracing = await start(t, { env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '', OTEL_EXPORTER_OTLP_ENDPOINT: ' ' } });
  t.false(tracing.enabled);
});

test.serial('the config endpoint enables export, and wins over the environment', async (t) => {
  const tracing = await start(t, { otlpEndpoint: CONFIGURED, env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://env:4318/v1/traces' } });
  t.true(tracing.enabled);
  t.is(tracing.endpoint, CONFIGURED);
  t.true(tracingEnabled());
  t.true(tracer().startSpan('probe').isRecording());
});

test.serial('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT enables export and is used as is, over OTEL_EXPORTER_OTLP_ENDPOINT', async (t) => {
  const tracing = await start(t, { env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318' } });
  t.true(tracing.enabled);
  t.is(tracing.endpoint, 'http://traces:4318/custom');
  t.true(tracingEnabled());
});

test.serial('OTEL_EXPORTER_OTLP_ENDPOINT enables export at its v1/traces path', async (t) => {
  const tracing = await start(t, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318' } });
  t.true(tracing.enabled);
  t.is(tracing.endpoint, 'http://base:4318/v1/traces');
  t.true(tracingEnabled());
});

test.serial('OTEL_EXPORTER_OTLP_ENDPOINT with a path and a trailing slash', async (t) => {
  t.is((await start(t, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://base/otlp/' } })).endpoint, 'https://base/otlp/v1/traces');
});

for (const [name, env] of [
  ['OTEL_SDK_DISABLED=true', { OTEL_SDK_DISABLED: 'true' }],
  ['OTEL_SDK_DISABLED=TRUE', { OTEL_SDK_DISABLED: 'TRUE' }],
  ['OTEL_TRACES_EXPORTER=none', { OTEL_TRACES_EXPORTER: 'none' }],
  ['OTEL_TRACES_EXPORTER=otlp, none', { OTEL_TRACES_EXPORTER: 'otlp, none' }],
] as const) {
  test.serial(`${name} turns export off despite a configured and an environment endpoint`, async (t) => {
    const tracing = await start(t, { otlpEndpoint: CONFIGURED, env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318', ...env } });
    t.false(tracing.enabled);
    t.is(tracing.endpoint, undefined);
    t.false(tracingEnabled());
    t.false(tracer().startSpan('probe').isRecording());
  });
}

test.serial('OTEL_SDK_DISABLED=false and OTEL_TRACES_EXPORTER=otlp leave export on', async (t) => {
  t.true((await start(t, { otlpEndpoint: CONFIGURED, env: { OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' } })).enabled);
});

test.serial('after shutdown nothing is recorded any more', async (t) => {
  const tracing = await start(t, { otlpEndpoint: CONFIGURED, env: {} });
  t.true(tracingEnabled());
  await tracing.shutdown();
  t.false(tracingEnabled());
  t.false(tracer().startSpan('probe').isRecording());
});

/** The resource of a span recorded with this environment (tracing is shut down again before it returns). */
async function resourceWith(env: NodeJS.ProcessEnv) {
  const exporter = new InMemorySpanExporter();
  const tracing = await startTracing({ exporter, env });
  try {
    tracer().startSpan('probe').end();
    const [span] = exporter.getFinishedSpans();
    return span!.resource.attributes;
  } finally {
    await tracing.shutdown();
  }
}

test.serial('resource: the gateway’s name and version by default', async (t) => {
  t.like(await resourceWith({}), { 'service.name': GATEWAY_NAME, 'service.version': GATEWAY_VERSION });
});

test.serial('resource: OTEL_RESOURCE_ATTRIBUTES adds and overrides attributes (percent-decoded); OTEL_SERVICE_NAME wins for the name', async (t) => {
  const attrs = await resourceWith({
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod, k8s.pod.name=gw-1,service.name=from-attrs,note=a%2Cb%3Dc',
    OTEL_SERVICE_NAME: 'edge-gateway',
  });
  t.like(attrs, {
    'service.name': 'edge-gateway',
    'service.version': GATEWAY_VERSION,
    'deployment.environment.name': 'prod',
    'k8s.pod.name': 'gw-1',
    note: 'a,b=c',
  });
  t.is((await resourceWith({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }))['service.name'], 'from-attrs');
});

test.serial('resource: a malformed OTEL_RESOURCE_ATTRIBUTES is discarded as a whole', async (t) => {
  const attrs = await resourceWith({ OTEL_RESOURCE_ATTRIBUTES: 'team=ml,broken,service.name=x' });
  t.is(attrs['service.name'], GATEWAY_NAME);
  t.is(attrs.team, undefined);
  t.is((await resourceWith({ OTEL_RESOURCE_ATTRIBUTES: 'team=ml,bad=%E0%A4%A' })).team, undefined, 'an undecodable value discards the rest too');
});

test.serial('propagation is registered even when nothing is recorded', async (t) => {
  start(t, { env: {} });
  // A remote span context survives extraction and injection: what reaches remote backends with tracing off.
  const ctx = propagation.extract(ROOT_CONTEXT, { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  t.is(trace.getSpanContext(ctx)?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  const out: Record<string, string> = {};
  propagation.inject(ctx, out);
  t.is(out.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
});
