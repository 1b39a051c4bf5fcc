// Wraps any Backend so every upstream call gets a client span (trace context injected for remote ones) and a latency sample.

import { context, propagation, SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import type { Backend, ForwardedRequest, ForwardedResponse } from '../backends/backend.js';
import { isGatewayError } from '../errors/gateway-error.js';
import type { BackendMetadata, InferenceRequest, InferenceResult } from '../protocol/oip.js';
import type { GatewayMetrics } from './metrics.js';
import { tracer } from './tracing.js';

export interface InstrumentOptions {
  model: string;
  version: string;
  metrics: GatewayMetrics | undefined;
  /** Record spans (decided once, when tracing is enabled). */
  traced: boolean;
}

/** A remote answer with a 5xx status is a failed call even though the transport succeeded. */
function outcomeOf(result: unknown): 'ok' | 'error' {
  const status = (result as Partial<ForwardedResponse> | undefined)?.status;
  return typeof status === 'number' && status >= 500 ? 'error' : 'ok';
}

export class InstrumentedBackend implements Backend {
  readonly kind: string;
  readonly inner: Backend;
  readonly passThrough?: boolean;
  readonly forward?: (request: ForwardedRequest) => Promise<ForwardedResponse>;
  readonly checkReady?: (signal: AbortSignal) => Promise<boolean>;
  readonly #opts: InstrumentOptions;

  constructor(inner: Backend, opts: InstrumentOptions) {
    this.inner = inner;
    this.kind = inner.kind;
    this.#opts = opts;
    if (inner.passThrough !== undefined) this.passThrough = inner.passThrough;
    if (inner.checkReady) this.checkReady = (signal) => inner.checkReady!(signal);
    // Only a backend that can forward gets `forward`: callers detect pass-through support by its presence.
    if (inner.forward) {
      const forward = inner.forward.bind(inner);
      this.forward = (request) =>
        this.#measure('forward', (span) => {
          if (!span) return forward(request);
          // This call's span becomes the remote's parent: gateway-owned headers are applied last, over the client's.
          const gatewayHeaders = { ...request.gatewayHeaders };
          propagation.inject(context.active(), gatewayHeaders);
          return forward({ ...request, gatewayHeaders });
        });
    }
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  metadata(): BackendMetadata {
    return this.inner.metadata();
  }

  ready(): boolean {
    return this.inner.ready();
  }

  infer(request: InferenceRequest, signal: AbortSignal): Promise<InferenceResult> {
    return this.#measure('infer', () => this.inner.infer(request, signal));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async #measure<T>(operation: string, call: (span: Span | undefined) => Promise<T>): Promise<T> {
    const { model, version, metrics, traced } = this.#opts;
    const started = performance.now();
    const observe = (outcome: 'ok' | 'error') =>
      metrics?.upstreamDuration.observe({ model, version, backend: this.kind, outcome }, (performance.now() - started) / 1000);
    const run = async (span: Span | undefined): Promise<T> => {
      try {
        const result = await call(span);
        const outcome = outcomeOf(result);
        observe(outcome);
        if (span && outcome === 'error') span.setStatus({ code: SpanStatusCode.ERROR, message: `backend answered ${(result as ForwardedResponse).status}` });
        return result;
      } catch (err) {
        observe('error');
        span?.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        if (span && isGatewayError(err)) span.setAttribute('model_gateway.error.code', err.code);
        throw err;
      } finally {
        span?.end();
      }
    };
    if (!traced) return run(undefined);
    return tracer().startActiveSpan(
      `${operation} ${model}:${version}`,
      { kind: SpanKind.CLIENT, attributes: { 'model_gateway.model': model, 'model_gateway.version': version, 'model_gateway.backend': this.kind } },
      run,
    );
  }
}
