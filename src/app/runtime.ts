// The runtime container (`model-gateway serve-model`): serves ONNX models from a model directory (or a gateway-style
// config) over the OIP REST surface with the gateway's own server, catalog and in-process ONNX backend, no auth.

import { once } from 'node:events';
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createBackend } from '../backends/create.js';
import { ConfigError, parseConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { ModelCatalog } from '../models/catalog.js';
import { runtimeChain } from '../stages/chain.js';
import { GuardRegistry } from '../resilience/registry.js';
import type { GatewayState } from '../pipeline/generation.js';
import { createDataPlane } from '../server/data-plane.js';
import { Overload } from '../server/overload.js';
import type { RunningGrpcDataPlane } from '../server/grpc.js';
import type { Logger } from '../telemetry/log.js';
import { drainGateway } from './drain.js';
import { dialAddress } from '../http/address.js';

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
/**
 * What a directory entry is, following symbolic links: Kubernetes ConfigMap/Secret volumes and git-sync publish models
 * as links (`model.onnx -> ..data/model.onnx`, a version directory -> a commit's), which must count as what they point to.
 */
async function kindOf(entry: Dirent, full: string): Promise<'file' | 'directory' | 'other' | 'broken'> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'directory';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const target = await stat(full);
    return target.isFile() ? 'file' : target.isDirectory() ? 'directory' : 'other';
  } catch {
    return 'broken';
  }
}

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
    const kind = await kindOf(entry, full);
    if (kind === 'broken') problems.push(`${entry.name}: a symbolic link to nothing`);
    if (kind === 'file' && entry.name.endsWith('.onnx')) {
      const versioned = VERSIONED_FILE.exec(entry.name);
      if (versioned) add(versioned[1]!, versioned[2]!, full);
      else add(entry.name.slice(0, -'.onnx'.length), '1', full);
    } else if (kind === 'directory') {
      for (const version of await readdir(full, { withFileTypes: true })) {
        if (version.name.startsWith('.') || (await kindOf(version, path.join(full, version.name))) !== 'directory') continue;
        const file = path.join(full, version.name, 'model.onnx');
        if (
          await stat(file).then(
            (s) => s.isFile(),
            () => false,
          )
        )
          add(entry.name, version.name, file);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(root, problems);
  if (found.length === 0)
    throw new ConfigError(root, ['(directory): no models found (expected <model>/<version>/model.onnx, <model>-v<version>.onnx or <model>.onnx)']);
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

/**
 * Makes a loaded config a runtime one: listen addresses from the flags (gRPC only with a `grpcPort`, as a runtime
 * container serves what its pod spec asks for; the file's other `server.grpc` settings apply), no admin API, no
 * reload, ONNX only.
 */
export function asRuntimeConfig(config: GatewayConfig, listen: RuntimeListen, source: string): GatewayConfig {
  const remote = Object.entries(config.models).flatMap(([name, model]) =>
    Object.entries(model.versions)
      .filter(([, v]) => v.backend.kind !== 'onnx')
      .map(([version]) => `models.${name}.versions.${version}.backend.kind: serve-model serves ONNX models in-process; it cannot proxy to another server`),
  );
  if (remote.length > 0) throw new ConfigError(source, remote);
  return { ...config, server: runtimeServer(config.server, listen), admin: { ...config.admin, enabled: false }, reload: { ...config.reload, watch: false } };
}

/** Where serve-model listens: REST always, gRPC when a port is given (0: any free one). */
export interface RuntimeListen {
  host: string;
  port: number;
  grpcPort?: number | undefined;
}

/** The server section with the flags' addresses applied. */
/** A quiet period of 1 s unless configured: long enough for a gateway's last forwarded request, short for a restart. */
const RUNTIME_DRAIN_QUIET_MS = 1_000;

export function runtimeServer(server: GatewayConfig['server'], { host, port, grpcPort }: RuntimeListen): GatewayConfig['server'] {
  return {
    ...server,
    host,
    port,
    drainQuietMs: server.drainQuietMs || RUNTIME_DRAIN_QUIET_MS,
    grpc: { ...server.grpc, enabled: grpcPort !== undefined, port: grpcPort ?? server.grpc.port },
  };
}

export interface RunningRuntime {
  readonly url: string;
  readonly port: number;
  readonly state: GatewayState;
  readonly server: http.Server;
  /** The gRPC data plane, when `server.grpc.enabled` (serve-model: `--grpc-port`). */
  readonly grpc: RunningGrpcDataPlane | undefined;
  /** Drains like the gateway: `drainDelayMs` (default 0; the CLI passes server.drainDelayMs on SIGTERM), then closes. */
  stop(drainDelayMs?: number): Promise<void>;
}

/** Loads every model, then serves them with the runtime chain (see runtimeChain). */
export async function startRuntime(config: GatewayConfig, log: Logger): Promise<RunningRuntime> {
  const catalog = ModelCatalog.fromConfig(config, (model, version, backend) => createBackend(model, version, backend, log));
  try {
    await catalog.start();
  } catch (err) {
    await catalog.close();
    throw err;
  }
  const guards = new GuardRegistry({ log });
  const state: GatewayState = { current: { catalog, pipeline: runtimeChain({ config, catalog, log, guards }) }, draining: false };
  // The runtime container protects its memory as the gateway does (its bodies are the biggest: whole tensors).
  const overload = new Overload(config.server);
  const server = createDataPlane(state, config.server, log, {}, overload);
  server.listen(config.server.port, config.server.host);
  let grpc: RunningGrpcDataPlane | undefined;
  try {
    await once(server, 'listening');
    if (config.server.grpc.enabled) grpc = await (await import('../server/grpc.js')).startGrpcDataPlane(state, config.server, log, {}, overload);
  } catch (err) {
    server.close();
    guards.close();
    overload.close();
    await catalog.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  let stopping: Promise<void> | undefined;
  // The gateway's drain timeline: not-ready at once, still accepting for the drain delay, in-flight requests finish
  // (Connection: close), then the workers close — all within shutdownTimeoutMs.
  const stop = (drainDelayMs = 0): Promise<void> => {
    stopping ??= drainGateway(
      {
        state,
        server,
        ...(grpc ? { alsoServing: [grpc] } : {}),
        log,
        release: async () => {
          guards.close();
          overload.close();
          await catalog.close();
        },
      },
      // Quiet only on a real drain (SIGTERM passes the delay); SIGINT from a terminal stops at once.
      { drainDelayMs, shutdownTimeoutMs: config.server.shutdownTimeoutMs, quietMs: drainDelayMs > 0 ? config.server.drainQuietMs : 0 },
    ).then(() => undefined);
    return stopping;
  };
  return { url: `http://${dialAddress(config.server.host, port)}`, port, state, server, grpc, stop };
}
