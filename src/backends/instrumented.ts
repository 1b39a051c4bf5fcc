// An interceptor giving every upstream call a span — an HTTP client span for a remote (OpenTelemetry HTTP conventions,
// trace context injected), an internal one for an in-process run — and a latency sample.

import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { isGatewayError } from '../errors/gateway-error.js';
import { errorTypeOf, errorTypeOfStatus, httpClientAttributes, withHttpExchange, type HttpExchange } from '../telemetry/http-semconv.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { tracer } from '../telemetry/tracing.js';
import type { BackendInterceptor, ForwardedResponse } from './backend.js';

export interface InstrumentOptions {
  model: string;
  version: string;
  /** The backend's kind, the metric's `backend` label. */
  kind: string;
  /** A remote backend's inference URL: its calls are HTTP client spans (OpenTelemetry HTTP conventions). */
  inferUrl?: URL | undefined;
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
  const { model, version, kind, metrics, traced, inferUrl } = opts;
  // Bound once per version, not per call.
  const durations = metrics && {
    ok: metrics.upstreamDuration.labels({ model, version, backend: kind, outcome: 'ok' }),
    error: metrics.upstreamDuration.labels({ model, version, backend: kind, outcome: 'error' }),
  };
  // A remote call is an HTTP client span (what service maps draw as gateway → runtime); an in-process run is internal
  // work of this service, not a call to another one.
  const spanKind = inferUrl ? SpanKind.CLIENT : SpanKind.INTERNAL;
  const attributes = {
    'model_gateway.model': model,
    'model_gateway.version': version,
    'model_gateway.backend': kind,
    ...(inferUrl ? httpClientAttributes('POST', inferUrl) : {}),
  };

  /** Observes the call's latency and outcome; with tracing, inside its span. */
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
    const span = tracer().startSpan(`${operation} ${model}:${version}`, { kind: spanKind, attributes });
    // The span is the active one for the call (a remote's traceparent); a remote's HTTP layer reports to `exchange`.
    const exchange: HttpExchange = { status: undefined, resends: 0 };
    const callContext = withHttpExchange(trace.setSpan(context.active(), span), exchange);
    /** Records what the HTTP layer saw; a 5xx answer is the call's error type, thrown or not (as the conventions ask). */
    const recordExchange = (): boolean => {
      if (exchange.resends > 0) span.setAttribute('http.request.resend_count', exchange.resends);
      if (exchange.status === undefined) return false;
      span.setAttribute('http.response.status_code', exchange.status);
      if (exchange.status < 500) return false;
      span.setAttribute('error.type', errorTypeOfStatus(exchange.status));
      return true;
    };
    return context.with(callContext, async (): Promise<T> => {
      try {
        const result = await call(span);
        const outcome = outcomeOf(result);
        observe(outcome);
        const status = (result as Partial<ForwardedResponse> | undefined)?.status;
        if (typeof status === 'number' && exchange.status === undefined) exchange.status = status;
        // An answer, not an exception: only a 5xx marks the span (a 4xx is the caller's input, passed through).
        if (recordExchange() || outcome === 'error') span.setStatus({ code: SpanStatusCode.ERROR });
        return result;
      } catch (err) {
        observe('error');
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        if (!recordExchange()) span.setAttribute('error.type', errorTypeOf(err));
        if (isGatewayError(err)) span.setAttribute('model_gateway.error.code', err.code);
        throw err;
      } finally {
        span.end();
      }
    });
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
