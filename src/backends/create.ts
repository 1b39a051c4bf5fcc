// Chooses the backend implementation for a version from its config `kind`, and composes the interceptors every
// served backend carries.

import type { Logger } from 'pino';
import type { BackendConfig } from '../config/schema.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { intercept, type Backend, type BackendInterceptor } from './backend.js';
import { GrpcBackend } from './grpc.js';
import { HttpBackend } from './http.js';
import { instrumented } from './instrumented.js';
import { OnnxBackend } from './onnx.js';

/** `metrics`: where an in-process version with `batching` configured records the rows of each run (batch size). */
export function createBackend(model: string, version: string, config: BackendConfig, log: Logger, metrics?: GatewayMetrics): Backend {
  const label = `model ${model} version ${version}`;
  const child = log.child({ model, version });
  switch (config.kind) {
    case 'onnx': {
      const batchSize = config.batching && metrics ? metrics.batchSize.labels({ model, version }) : undefined;
      return new OnnxBackend({ ...config, label, log: child, ...(batchSize ? { onRun: (rows: number) => batchSize.observe(rows) } : {}) });
    }
    case 'http':
      return new HttpBackend({ config, model, label, log: child });
    case 'grpc':
      return new GrpcBackend({ config, model, label, log: child });
  }
}

export interface ServedBackendOptions {
  model: string;
  version: string;
  metrics: GatewayMetrics | undefined;
  traced: boolean;
  /** More interceptors, inside the instrumentation (tests inject faults here). */
  interceptors?: readonly BackendInterceptor[];
}

/** A version's backend as the gateway serves it: every call, in-process or remote, gets its span and latency sample. */
export function servedBackend(backend: Backend, { model, version, metrics, traced, interceptors = [] }: ServedBackendOptions): Backend {
  return intercept(backend, instrumented({ model, version, kind: backend.kind, inferUrl: backend.inferUrl, metrics, traced }), ...interceptors);
}
