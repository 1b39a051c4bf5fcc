// Tracing: the code uses only @opentelemetry/api; startTracing() wires the SDK (OTLP/HTTP export) when an endpoint is configured.

import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, SimpleSpanProcessor, TraceIdRatioBasedSampler, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { GATEWAY_NAME, GATEWAY_VERSION } from '../version.js';

let recording = false;

/** True while startTracing() has an exporter registered: pipelines built then add per-stage and per-call spans. */
export function tracingEnabled(): boolean {
  return recording;
}

/** The trace id of the active span, for logs; undefined when nothing is traced. */
export function activeTraceId(): string | undefined {
  const ctx = trace.getActiveSpan()?.spanContext();
  return ctx && trace.isSpanContextValid(ctx) ? ctx.traceId : undefined;
}

/** The tracer every module uses; a no-op until startTracing() registers a provider. */
export function tracer(): Tracer {
  return trace.getTracer(GATEWAY_NAME, GATEWAY_VERSION);
}

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint from the config; the standard OTEL_EXPORTER_OTLP_* variables also enable export. */
  otlpEndpoint?: string | undefined;
  /** Share of new traces recorded (parent-based: a caller's sampling decision wins). Default 1. */
  sampleRatio?: number;
  /** Tests pass an in-memory exporter; spans are then exported synchronously. */
  exporter?: SpanExporter;
  env?: NodeJS.ProcessEnv;
}

export interface Tracing {
  /** True when spans are recorded and exported. */
  readonly enabled: boolean;
  /** Flushes pending spans and unregisters the provider. */
  shutdown(): Promise<void>;
}

/**
 * W3C trace context is always extracted and injected, so a caller's `traceparent` reaches the backends even when
 * nothing is exported. Spans are recorded only when an exporter is configured (`OTEL_SDK_DISABLED=true` turns it off).
 */
export function startTracing(options: TracingOptions = {}): Tracing {
  const env = options.env ?? process.env;
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);

  const endpoint = options.otlpEndpoint ?? env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const disabled = env.OTEL_SDK_DISABLED === 'true' || (env.OTEL_TRACES_EXPORTER ?? '').split(',').includes('none');
  const exporter = options.exporter ?? (endpoint && !disabled ? otlpExporter(options.otlpEndpoint) : undefined);
  if (!exporter) {
    return {
      enabled: false,
      async shutdown() {
        context.disable();
        propagation.disable();
      },
    };
  }
  const provider = new TracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio ?? 1) }),
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? GATEWAY_NAME,
      [ATTR_SERVICE_VERSION]: GATEWAY_VERSION,
    }),
    spanProcessors: [options.exporter ? new SimpleSpanProcessor({ exporter }) : new BatchSpanProcessor({ exporter })],
  });
  trace.setGlobalTracerProvider(provider);
  recording = true;
  return {
    enabled: true,
    async shutdown() {
      recording = false;
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** The config endpoint is a full traces URL; otherwise the exporter reads the OTEL_EXPORTER_OTLP_* variables itself. */
function otlpExporter(configured: string | undefined): SpanExporter {
  return configured ? new OTLPTraceExporter({ url: configured }) : new OTLPTraceExporter();
}
