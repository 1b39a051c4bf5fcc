// Test helpers: start a real gateway in-process (port 0, 127.0.0.1) or as a child process, and talk to it.

import { spawn } from 'node:child_process';
import { CLI, spawnCli, type CliProcess } from './cli-process.js';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../src/app/gateway.js';
import { createLogger } from '../../src/telemetry/log.js';

export const ROOT = path.resolve(import.meta.dirname, '../../..');
export const MODELS = path.join(ROOT, 'examples/models');
export { CLI };

/** The example models as a config `models` section. */
export function irisModels(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iris: {
      defaultVersion: '1',
      versions: {
        '1': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v1.onnx') } },
        '2': { backend: { kind: 'onnx', path: path.join(MODELS, 'iris-v2.onnx') } },
      },
    },
    ...extra,
  };
}

export function gatewayConfig(
  overrides: { server?: Record<string, unknown>; models?: Record<string, unknown>; admin?: Record<string, unknown> } = {},
): Record<string, unknown> {
  return {
    // gRPC on a free port too: its default (8082) would collide between tests running in parallel.
    server: { host: '127.0.0.1', port: 0, grpc: { port: 0 }, ...overrides.server },
    // Port 0: tests run in parallel, and the admin API starts whenever a token is configured (or in the environment).
    admin: { host: '127.0.0.1', port: 0, ...overrides.admin },
    logging: { level: process.env.TEST_LOG_LEVEL ?? 'silent' },
    models: overrides.models ?? irisModels(),
  };
}

/** Starts a gateway inside the test process. Always `await gw.stop()` (use t.teardown). */
export async function startTestGateway(raw: Record<string, unknown> = gatewayConfig(), options: GatewayOptions = {}): Promise<RunningGateway> {
  const config = await parseConfig(raw, { baseDir: ROOT, source: 'test' });
  return startGateway(config, createLogger(config.logging.level), options);
}

export async function writeConfigFile(raw: unknown): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mg-config-'));
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, typeof raw === 'string' ? raw : stringify(raw));
  return file;
}

export type GatewayProcess = CliProcess;

/** Runs `model-gateway start --config FILE` as a real process and waits for its ready line. */
export function spawnGateway(configFile: string, args: string[] = [], nodeArgs: string[] = []): Promise<GatewayProcess> {
  return spawnCli(['start', '--config', configFile, ...args], /model-gateway ready on (http:\/\/\S+)/, 'gateway', nodeArgs);
}

/** Runs the CLI to completion and returns its exit code and output. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

export const IRIS_ROW = [5.1, 3.5, 1.4, 0.2];

export function irisRequest(rows: number[][] = [IRIS_ROW], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { inputs: [{ name: 'input', shape: [rows.length, 4], datatype: 'FP32', data: rows }], ...extra };
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

export async function getJson(url: string): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}
