// Tracing: the code uses only @opentelemetry/api; startTracing() wires the SDK (OTLP/HTTP export) when an endpoint is configured.

import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import { GATEWAY_NAME, GATEWAY_VERSION } from '../core/version.js';

let recording = false;

/** True while startTracing() has an exporter registered: pipelines built then add per-stage and per-call spans. */
export function tracingEnabled(): boolean {
  return recording;
}

/** The tracer every module uses; a no-op until startTracing() registers a provider. */
export function tracer(): Tracer {
  return trace.getTracer(GATEWAY_NAME, GATEWAY_VERSION);
}

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint from the config (a full URL); wins over the OTEL_EXPORTER_OTLP_* variables. */
  otlpEndpoint?: string | undefined;
  /** Share of new traces recorded (parent-based: a caller's sampling decision wins). Default 1. */
  sampleRatio?: number;
  /** Tests pass an in-memory exporter; spans are then exported synchronously, whatever the environment says. */
  exporter?: SpanExporter;
  /** The environment the OTEL_* variables are read from; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

export interface Tracing {
  /** True when spans are recorded and exported. */
  readonly enabled: boolean;
  /** The OTLP/HTTP URL spans are sent to; undefined when nothing is exported (or a test exporter takes them). */
  readonly endpoint: string | undefined;
  /** Flushes pending spans and unregisters the provider. */
  shutdown(): Promise<void>;
}

/** An environment variable's value, with empty (or blank) treated as unset, as the OpenTelemetry spec asks. */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

/**
 * Where spans go: the config's URL; else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is; else `OTEL_EXPORTER_OTLP_ENDPOINT`
 * (a base URL) with `v1/traces` appended, as the OTLP exporter does. Computed here so an injected `env` decides it.
 */
export function tracesEndpoint(configured: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (configured) return configured;
  const traces = envValue(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  if (traces) return traces;
  const base = envValue(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  return base ? `${base.endsWith('/') ? base : `${base}/`}v1/traces` : undefined;
}

/** `OTEL_SDK_DISABLED=true` (any case) or `none` among `OTEL_TRACES_EXPORTER`'s exporters: nothing is recorded. */
export function tracingDisabledBy(env: NodeJS.ProcessEnv): boolean {
  if (envValue(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return true;
  return (envValue(env, 'OTEL_TRACES_EXPORTER') ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .includes('none');
}

/**
 * `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, percent-decoded), parsed like the SDK's envDetector but from `env`: any
 * malformed entry discards the whole value, as the spec asks.
 */
export function resourceAttributesFrom(env: NodeJS.ProcessEnv): Record<string, string> {
  const raw = envValue(env, 'OTEL_RESOURCE_ATTRIBUTES');
  const out: Record<string, string> = {};
  if (!raw) return out;
  for (const entry of raw.split(',')) {
    if (entry.trim() === '') continue;
    const parts = entry.split('=');
    if (parts.length !== 2 || parts[0]!.trim() === '') return {};
    try {
      out[decodeURIComponent(parts[0]!.trim())] = decodeURIComponent(parts[1]!.trim());
    } catch {
      return {};
    }
  }
  return out;
}

/**
 * W3C trace context is always extracted and injected, so a caller's `traceparent` reaches the backends (primary and
 * shadow) even when nothing is exported. Spans are recorded only when an endpoint is configured and neither
 * `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns export off. The resource is `service.name` (the
 * gateway's name) and `service.version`, overridden by `OTEL_RESOURCE_ATTRIBUTES`, and `OTEL_SERVICE_NAME` over all.
 * The OTLP exporter reads its other settings (`OTEL_EXPORTER_OTLP_*HEADERS`, `*TIMEOUT`, ...) from `process.env`.
 */
export async function startTracing(options: TracingOptions = {}): Promise<Tracing> {
  const env = options.env ?? process.env;
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);

  const endpoint = tracingDisabledBy(env) ? undefined : tracesEndpoint(options.otlpEndpoint, env);
  // The SDK and the exporter are loaded only when spans are recorded: a gateway without tracing never pays their memory.
  const exporter =
    options.exporter ?? (endpoint ? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter({ url: endpoint }) : undefined);
  if (!exporter) {
    return {
      enabled: false,
      endpoint: undefined,
      async shutdown() {
        context.disable();
        propagation.disable();
      },
    };
  }
  const [
    { BatchSpanProcessor, ParentBasedSampler, SimpleSpanProcessor, TraceIdRatioBasedSampler, TracerProvider },
    { resourceFromAttributes },
    { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION },
  ] = await Promise.all([import('@opentelemetry/sdk-trace'), import('@opentelemetry/resources'), import('@opentelemetry/semantic-conventions')]);
  const serviceName = envValue(env, 'OTEL_SERVICE_NAME');
  const provider = new TracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio ?? 1) }),
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: GATEWAY_NAME,
      [ATTR_SERVICE_VERSION]: GATEWAY_VERSION,
      ...resourceAttributesFrom(env),
      ...(serviceName ? { [ATTR_SERVICE_NAME]: serviceName } : {}),
    }),
    spanProcessors: [options.exporter ? new SimpleSpanProcessor({ exporter }) : new BatchSpanProcessor({ exporter })],
  });
  trace.setGlobalTracerProvider(provider);
  recording = true;
  return {
    enabled: true,
    endpoint: options.exporter ? undefined : endpoint,
    async shutdown() {
      recording = false;
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
