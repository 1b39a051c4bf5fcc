// Test helpers for traffic management: gateways started from a real config file (so they watch and reload it), and ConfigMap-style volumes.

import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../src/app/gateway.js';
import { createLogger } from '../../src/telemetry/log.js';
import { MODELS } from './gateway.js';

export const ADMIN_TOKEN = 'admin-token-for-tests-0123';

/** A file-based config: loopback, port 0, admin on with a token, quick debounce, no polling (events must do). */
export function fileConfig(models: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 } },
    logging: { level: 'silent' },
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
    reload: { debounceMs: 50, pollIntervalMs: 0 },
    models,
    ...extra,
  };
}

export const irisVersion = (file: 'iris-v1.onnx' | 'iris-v2.onnx', backend: Record<string, unknown> = {}) => ({
  backend: { kind: 'onnx', path: path.join(MODELS, file), ...backend },
});

/** Loads the file and starts a gateway that watches it, like `model-gateway start --config FILE`. */
/** Starts a gateway from a config file (watched); its log goes to `logTo` when given, at the config's level. */
export async function startFromFile(file: string, options: GatewayOptions = {}, logTo?: NodeJS.WritableStream): Promise<RunningGateway> {
  const { config, file: absolute } = await loadConfig(file);
  return startGateway(config, createLogger(config.logging.level, logTo), { configFile: absolute, ...options });
}

export async function tempDir(prefix = 'mg-reload-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Writes YAML (or raw text) atomically (write + rename), as config-management tools do. */
export async function writeConfig(file: string, raw: Record<string, unknown> | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, typeof raw === 'string' ? raw : stringify(raw));
  await rename(tmp, file);
}

/**
 * A directory laid out like a Kubernetes ConfigMap volume: `gateway.yaml → ..data/gateway.yaml`, `..data → ..<stamp>`.
 * `update` does what kubelet does: a new timestamped directory, a new `..data` symlink renamed over the old one, and
 * the old directory deleted.
 */
export async function configMapVolume(raw: Record<string, unknown>): Promise<{ file: string; update(next: Record<string, unknown>): Promise<void> }> {
  const dir = await tempDir('mg-configmap-');
  let generation = 0;
  let current = '';
  const publish = async (content: Record<string, unknown>) => {
    const stamp = `..2024_06_11_12_00_${String(generation++).padStart(2, '0')}.${process.pid}`;
    await mkdir(path.join(dir, stamp));
    await writeFile(path.join(dir, stamp, 'gateway.yaml'), stringify(content));
    await symlink(stamp, path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    if (current) await rm(path.join(dir, current), { recursive: true, force: true });
    current = stamp;
  };
  await publish(raw);
  await symlink(path.join('..data', 'gateway.yaml'), path.join(dir, 'gateway.yaml'));
  return { file: path.join(dir, 'gateway.yaml'), update: publish };
}
