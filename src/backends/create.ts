// Chooses the backend implementation for a version from its config `kind`.

import type { Logger } from 'pino';
import type { BackendConfig } from '../config/schema.js';
import type { Backend } from './backend.js';
import { OnnxBackend } from './onnx.js';

export function createBackend(model: string, version: string, config: BackendConfig, log: Logger): Backend {
  switch (config.kind) {
    case 'onnx':
      return new OnnxBackend({ ...config, label: `model ${model} version ${version}`, log: log.child({ model, version }) });
  }
}
