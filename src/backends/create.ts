// Chooses the backend implementation for a version from its config `kind`.

import type { Logger } from 'pino';
import type { BackendConfig } from '../config/schema.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import type { Backend } from './backend.js';
import { HttpBackend } from './http.js';
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
  }
}
