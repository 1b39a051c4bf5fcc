// `model-gateway serve-model`: the runtime container. Serves ONNX models from a model directory (or a gateway-style
// config) over the OIP REST surface with the gateway's own server, catalog and in-process ONNX backend, no auth.

import { stopOnSignals } from './shutdown.js';
import { once } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createBackend } from './backends/create.js';
import { ConfigError, loadConfig, parseConfig } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { ModelCatalog } from './models/catalog.js';
import { buildRuntimePipeline } from './pipeline/build.js';
import { GuardRegistry } from './resilience/registry.js';
import { createDataPlane, type GatewayState } from './server.js';
import { createLogger, type Logger } from './telemetry/log.js';

export const SERVE_MODEL_USAGE = `  model-gateway serve-model (--model-dir DIR | --config FILE) [--host ADDR] [--port N] [--workers N] [--log-level L]
                            [--max-batch-size N [--max-queue-delay-us US]]
      Run the runtime container: serve ONNX models over OIP REST for a gateway in the same pod (no auth;
      default 127.0.0.1:8000). DIR holds <model>/<version>/model.onnx, <model>-v<version>.onnx or <model>.onnx.
      --max-batch-size turns on dynamic batching for every model of DIR (with --config: per version, backend.batching).
`;

export const RUNTIME_DEFAULTS = { host: '127.0.0.1', port: 8000 } as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** `iris-v2.onnx` → iris, 2; the version part is digits, or a name after `-v`. */
const VERSIONED_FILE = /^(.+)-v([A-Za-z0-9][A-Za-z0-9_.-]*)\.onnx$/;

export interface RepositoryModel {
  model: string;
  version: string;
  file: string;
}

/**
 * The models in a directory, in either layout:
 *   - repository layout (Triton/KServe): `<model>/<version>/model.onnx`
 *   - flat files: `<model>-v<version>.onnx`, or `<model>.onnx` for version 1
 * Other files are ignored; the same model version found twice, or a name the gateway cannot serve, is an error.
 */
export async function scanModelDirectory(dir: string): Promise<RepositoryModel[]> {
  const root = path.resolve(dir);
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    throw new ConfigError(root, [`(directory): cannot read: ${(err as Error).message}`]);
  }
  const found: RepositoryModel[] = [];
  const problems: string[] = [];
  const add = (model: string, version: string, file: string) => {
    const at = path.relative(root, file);
    if (!NAME.test(model)) problems.push(`${at}: model name '${model}' must match ${NAME.source}`);
    else if (!NAME.test(version)) problems.push(`${at}: version '${version}' must match ${NAME.source}`);
    else if (found.some((f) => f.model === model && f.version === version)) problems.push(`${at}: model ${model} version ${version} is found twice`);
    else found.push({ model, version, file });
  };
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(root, entry.name);
    if (entry.isFile() && entry.name.endsWith('.onnx')) {
      const versioned = VERSIONED_FILE.exec(entry.name);
      if (versioned) add(versioned[1]!, versioned[2]!, full);
      else add(entry.name.slice(0, -'.onnx'.length), '1', full);
    } else if (entry.isDirectory()) {
      for (const version of (await readdir(full, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.'))) {
        const file = path.join(full, version.name, 'model.onnx');
        if (await stat(file).then((s) => s.isFile(), () => false)) add(entry.name, version.name, file);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(root, problems);
  if (found.length === 0) throw new ConfigError(root, ['(directory): no models found (expected <model>/<version>/model.onnx, <model>-v<version>.onnx or <model>.onnx)']);
  return found;
}

/** A runtime config serving every model of a directory, each version with `workers` ONNX worker threads. */
export async function repositoryConfig(
  dir: string,
  options: { workers: number; logLevel?: string; batching?: { maxBatchSize: number; maxQueueDelayUs: number } },
): Promise<GatewayConfig> {
  const models: Record<string, { versions: Record<string, unknown> }> = {};
  const batching = options.batching ? { batching: options.batching } : {};
  for (const m of await scanModelDirectory(dir)) {
    (models[m.model] ??= { versions: {} }).versions[m.version] = { backend: { kind: 'onnx', path: m.file, workers: options.workers, ...batching } };
  }
  return parseConfig({ logging: { level: options.logLevel ?? 'info' }, models }, { baseDir: path.resolve(dir), source: path.resolve(dir) });
}

/** Makes a loaded config a runtime one: listen address from the flags, no admin API, no reload, ONNX only. */
export function asRuntimeConfig(config: GatewayConfig, listen: { host: string; port: number }, source: string): GatewayConfig {
  const remote = Object.entries(config.models).flatMap(([name, model]) =>
    Object.entries(model.versions)
      .filter(([, v]) => v.backend.kind !== 'onnx')
      .map(([version]) => `models.${name}.versions.${version}.backend.kind: serve-model serves ONNX models in-process; it cannot proxy to another server`),
  );
  if (remote.length > 0) throw new ConfigError(source, remote);
  return { ...config, server: { ...config.server, ...listen }, admin: { ...config.admin, enabled: false }, reload: { ...config.reload, watch: false } };
}

export interface RunningRuntime {
  readonly url: string;
  readonly port: number;
  readonly state: GatewayState;
  readonly server: http.Server;
  stop(): Promise<void>;
}

/** Loads every model, then serves them with the runtime chain (see buildRuntimePipeline). */
export async function startRuntime(config: GatewayConfig, log: Logger): Promise<RunningRuntime> {
  const catalog = ModelCatalog.fromConfig(config, (model, version, backend) => createBackend(model, version, backend, log));
  try {
    await catalog.start();
  } catch (err) {
    await catalog.close();
    throw err;
  }
  const guards = new GuardRegistry({ log });
  const state: GatewayState = { current: { catalog, pipeline: buildRuntimePipeline({ config, catalog, log, guards }) }, draining: false };
  const server = createDataPlane(state, config.server, log);
  server.listen(config.server.port, config.server.host);
  try {
    await once(server, 'listening');
  } catch (err) {
    guards.close();
    await catalog.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Same drain as the gateway: not-ready at once, finish in-flight requests (Connection: close), then close.
      state.draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), config.server.shutdownTimeoutMs)));
      if ((await Promise.race([closed.then(() => 'drained' as const), deadline])) === 'timeout') server.closeAllConnections();
      clearTimeout(timer);
      guards.close();
      await catalog.close();
    })();
    return stopping;
  };
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, port, state, server, stop };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
function isLogLevel(value: string): value is (typeof LOG_LEVELS)[number] {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

function intFlag(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`--${flag}`, [`--${flag}: '${value}' is not an integer from ${min} to ${max}`]);
  return n;
}

/** The CLI command; resolves -1 while serving (the process stays up until SIGTERM/SIGINT). */
export async function serveModelCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'model-dir': { type: 'string' },
      config: { type: 'string', short: 'c' },
      host: { type: 'string' },
      port: { type: 'string' },
      workers: { type: 'string' },
      'max-batch-size': { type: 'string' },
      'max-queue-delay-us': { type: 'string' },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  if ((values['model-dir'] === undefined) === (values.config === undefined)) {
    process.stderr.write(`serve-model needs exactly one of --model-dir DIR or --config FILE\n\nUsage:\n${SERVE_MODEL_USAGE}`);
    return 2;
  }
  const listen = { host: values.host ?? RUNTIME_DEFAULTS.host, port: intFlag('port', values.port, RUNTIME_DEFAULTS.port, 0, 65535) };
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !isLogLevel(logLevel)) throw new ConfigError('--log-level', [`--log-level: '${logLevel}' is not one of ${LOG_LEVELS.join(', ')}`]);
  let config: GatewayConfig;
  if (values['model-dir'] !== undefined) {
    const maxBatchSize = values['max-batch-size'] === undefined ? undefined : intFlag('max-batch-size', values['max-batch-size'], 2, 2, 65536);
    if (maxBatchSize === undefined && values['max-queue-delay-us'] !== undefined) throw new ConfigError('--max-queue-delay-us', ['--max-queue-delay-us: only with --max-batch-size']);
    const batching = maxBatchSize === undefined ? undefined : { maxBatchSize, maxQueueDelayUs: intFlag('max-queue-delay-us', values['max-queue-delay-us'], 500, 0, 1_000_000) };
    config = await repositoryConfig(values['model-dir'], { workers: intFlag('workers', values.workers, 1, 1, 64), logLevel: logLevel ?? 'info', ...(batching ? { batching } : {}) });
  } else {
    if (values.workers !== undefined) throw new ConfigError('--workers', ['--workers: only with --model-dir; with --config each version sets backend.workers']);
    if (values['max-batch-size'] !== undefined || values['max-queue-delay-us'] !== undefined) {
      throw new ConfigError('--max-batch-size', ['--max-batch-size/--max-queue-delay-us: only with --model-dir; with --config each version sets backend.batching']);
    }
    const loaded = await loadConfig(values.config!);
    config = asRuntimeConfig(loaded.config, listen, loaded.file);
    if (logLevel !== undefined) config.logging = { ...config.logging, level: logLevel };
  }
  config = { ...config, server: { ...config.server, ...listen } };
  const log = createLogger(config.logging.level);
  const runtime = await startRuntime(config, log);
  log.info({ url: runtime.url }, 'serve-model ready');
  const lines = [`model-gateway serve-model ready on ${runtime.url}`];
  for (const model of runtime.state.current.catalog.all()) lines.push(`  model ${model.name}: versions ${[...model.versions.keys()].join(', ')}`);
  process.stderr.write(`${lines.join('\n')}\n`);

  stopOnSignals(log, {
    // Its stop() waits up to shutdownTimeoutMs for in-flight calls and only then closes the workers: leave them time.
    deadlineMs: config.server.shutdownTimeoutMs + 5_000,
    stop: async (signal) => {
      log.info({ signal }, 'stopping: draining in-flight requests');
      await runtime.stop();
    },
  });
  return -1;
}
