// Chooses the backend implementation for a version from its config `kind`.

import type { Logger } from 'pino';
import type { BackendConfig } from '../config/schema.js';
import type { Backend } from './backend.js';
import { HttpBackend } from './http.js';
import { OnnxBackend } from './onnx.js';

export function createBackend(model: string, version: string, config: BackendConfig, log: Logger): Backend {
  const label = `model ${model} version ${version}`;
  const child = log.child({ model, version });
  switch (config.kind) {
    case 'onnx':
      return new OnnxBackend({ ...config, label, log: child });
    case 'http':
      return new HttpBackend({ config, model, label, log: child });
  }
}
