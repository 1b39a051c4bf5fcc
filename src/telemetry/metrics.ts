// Prometheus metrics (prom-client), one registry per gateway, served at /metrics on the admin port.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Latency buckets in seconds: sub-millisecond proxy hops up to multi-second inference. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Batch-size buckets in rows: powers of two, so each common `maxBatchSize` (2…256) is a bucket bound and
 * `le="<maxBatchSize>"` minus the one below it reads as "runs that were (nearly) full".
 */
export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

/**
 * The gateway's own instruments. Stages that keep state (breakers, rate limits, shadows) register gauges with
 * `collect` callbacks reading that state at scrape time, so the hot path pays nothing for them.
 */
export class GatewayMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'model_gateway_requests_total',
    help: 'Model requests answered (metadata, ready, infer; not health or server metadata), by model, version, operation, status class (gRPC: of the same error over HTTP) and protocol (http, grpc).',
    labelNames: ['model', 'version', 'operation', 'status_class', 'protocol'] as const,
    registers: [this.registry],
  });

  readonly requestDuration = new Histogram({
    name: 'model_gateway_request_duration_seconds',
    help: 'Time from a model request’s arrival until its response is handed to the socket, by model, version, operation, status class and protocol (http, grpc).',
    labelNames: ['model', 'version', 'operation', 'status_class', 'protocol'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly inFlight = new Gauge({
    name: 'model_gateway_requests_in_flight',
    help: 'Model requests being processed.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly upstreamDuration = new Histogram({
    name: 'model_gateway_upstream_duration_seconds',
    help: 'Time spent in one backend call of a model version (in-process ONNX or remote HTTP; shadow copies and failover calls included), by outcome.',
    labelNames: ['model', 'version', 'backend', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /**
   * Rows per ONNX run of a version with `backend.batching` (the unit of `maxBatchSize`); every run counts, a lone call
   * included, so _sum/_count is the mean rows per run and the le="1" bucket the runs nothing joined.
   */
  readonly batchSize = new Histogram({
    name: 'model_gateway_batch_size',
    help: 'Rows (sum of dim 0, the unit of backend.batching.maxBatchSize) per ONNX Runtime run of a version with batching configured; every run counts, a call that ran alone included.',
    labelNames: ['model', 'version'] as const,
    buckets: BATCH_SIZE_BUCKETS,
    registers: [this.registry],
  });

  readonly rolloutDecisions = new Counter({
    name: 'model_gateway_rollout_decisions_total',
    help: 'Progressive-rollout decisions taken on this replica: by the controller (hold, advance, complete, rollback) or an operator.',
    labelNames: ['model', 'decision', 'actor'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    // Process CPU/memory/handles and Node's event-loop delay (nodejs_eventloop_lag_*), sampled at 10 ms resolution.
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
      // prom-client exposes these gauges with a `_total` suffix, which Prometheus reserves for counters
      // (`promtool check metrics` rejects them); handle counts are not worth a lint failure.
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
        this.registry.removeSingleMetric(name);
      }
    }
  }

  // Children bound per label set, once: prom-client would otherwise hash a label object on every call.
  readonly #inFlightOf = new Map<string, ReturnType<GatewayMetrics['inFlight']['labels']>>();
  readonly #answeredOf = new Map<
    string,
    { count: ReturnType<GatewayMetrics['requests']['labels']>; duration: ReturnType<GatewayMetrics['requestDuration']['labels']> }
  >();

  /** The in-flight gauge of one model (bound once). */
  inFlightOf(model: string): ReturnType<GatewayMetrics['inFlight']['labels']> {
    let child = this.#inFlightOf.get(model);
    if (child === undefined) this.#inFlightOf.set(model, (child = this.inFlight.labels({ model })));
    return child;
  }

  /**
   * Counts one answered request and records its duration. `status` is HTTP's; a gRPC call passes the HTTP status of
   * the same answer (its error's registry status, 200 for OK), so one status class means the same in both protocols.
   */
  answered(model: string, version: string, operation: string, status: number, seconds: number, protocol: 'http' | 'grpc' = 'http'): void {
    const statusClassLabel = statusClass(status);
    const key = `${model}\n${version}\n${operation}\n${statusClassLabel}\n${protocol}`;
    let children = this.#answeredOf.get(key);
    if (children === undefined) {
      const labels = { model, version, operation, status_class: statusClassLabel, protocol };
      this.#answeredOf.set(key, (children = { count: this.requests.labels(labels), duration: this.requestDuration.labels(labels) }));
    }
    children.count.inc();
    children.duration.observe(seconds);
  }

  /** The Prometheus text exposition. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
