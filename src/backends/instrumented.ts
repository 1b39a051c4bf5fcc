// An interceptor giving every upstream call a client span (trace context injected for remote ones) and a latency sample.

import { context, propagation, SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import { isGatewayError } from '../errors/gateway-error.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { tracer } from '../telemetry/tracing.js';
import type { BackendInterceptor, ForwardedResponse } from './backend.js';

export interface InstrumentOptions {
  model: string;
  version: string;
  /** The backend's kind, the metric's `backend` label. */
  kind: string;
  metrics: GatewayMetrics | undefined;
  /** Record spans (decided once, when tracing is enabled). */
  traced: boolean;
}

/** A remote answer with a 5xx status is a failed call even though the transport succeeded. */
function outcomeOf(result: unknown): 'ok' | 'error' {
  const status = (result as Partial<ForwardedResponse> | undefined)?.status;
  return typeof status === 'number' && status >= 500 ? 'error' : 'ok';
}

export function instrumented(opts: InstrumentOptions): BackendInterceptor {
  const { model, version, kind, metrics, traced } = opts;
  // Bound once per version, not per call.
  const durations = metrics && {
    ok: metrics.upstreamDuration.labels({ model, version, backend: kind, outcome: 'ok' }),
    error: metrics.upstreamDuration.labels({ model, version, backend: kind, outcome: 'error' }),
  };

  /** Observes the call's latency and outcome; with tracing, inside its client span. */
  function measure<T>(operation: string, call: (span: Span | undefined) => Promise<T>): Promise<T> {
    const started = performance.now();
    const observe = (outcome: 'ok' | 'error') => durations?.[outcome].observe((performance.now() - started) / 1000);
    if (!traced) {
      // No span: two callbacks on the call's own promise, nothing else.
      return call(undefined).then(
        (result) => {
          observe(outcomeOf(result));
          return result;
        },
        (err: unknown) => {
          observe('error');
          throw err;
        },
      );
    }
    return tracer().startActiveSpan(
      `${operation} ${model}:${version}`,
      { kind: SpanKind.CLIENT, attributes: { 'model_gateway.model': model, 'model_gateway.version': version, 'model_gateway.backend': kind } },
      async (span: Span): Promise<T> => {
        try {
          const result = await call(span);
          const outcome = outcomeOf(result);
          observe(outcome);
          if (outcome === 'error') span.setStatus({ code: SpanStatusCode.ERROR, message: `backend answered ${(result as ForwardedResponse).status}` });
          return result;
        } catch (err) {
          observe('error');
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
          if (isGatewayError(err)) span.setAttribute('model_gateway.error.code', err.code);
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }

  // Nothing to record: the calls pass through untouched.
  if (!traced && durations === undefined) return (next) => next;
  return (next) => ({
    infer: (request, signal) => measure('infer', () => next.infer(request, signal)),
    ...(next.forward
      ? {
          forward: (request) =>
            measure('forward', (span) => {
              if (!span) return next.forward!(request);
              // This call's span becomes the remote's parent: gateway-owned headers are applied last, over the client's.
              const gatewayHeaders = { ...request.gatewayHeaders };
              propagation.inject(context.active(), gatewayHeaders);
              return next.forward!({ ...request, gatewayHeaders });
            }),
        }
      : {}),
  });
}
