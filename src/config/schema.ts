// The one strict config schema: every key, its default and its unit. Unknown keys are rejected everywhere.

import { z } from 'zod';

/** Model and version names appear in URL paths and metric labels: keep them to a safe alphabet. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const name = (what: string) =>
  z.string().regex(NAME, `${what} must match ${NAME.source} (letters, digits, '_', '.', '-')`);

const onnxBackend = z.strictObject({
  kind: z.literal('onnx'),
  /** Path to the .onnx file; relative paths are resolved against the config file's directory. */
  path: z.string().min(1),
  /** Worker threads, each holding its own ONNX Runtime session for this version. */
  workers: z.int().min(1).max(64).default(1),
  /** ONNX Runtime intra-op threads per session (parallelism inside one inference). */
  intraOpThreads: z.int().min(1).max(64).default(1),
  /** Requests waiting for a worker beyond this many are rejected with 503 (bounded memory under overload). */
  maxQueue: z.int().min(0).default(256),
});

export const backendSchema = z.discriminatedUnion('kind', [onnxBackend]);

export const versionSchema = z.strictObject({
  backend: backendSchema,
});

export const modelSchema = z.strictObject({
  /** Version answering requests without a version in the path; default: the highest version. */
  defaultVersion: name('defaultVersion').optional(),
  versions: z
    .record(name('version'), versionSchema)
    .refine((v) => Object.keys(v).length > 0, 'a model needs at least one version'),
});

export const serverSchema = z.strictObject({
  /** Data-plane listen address. */
  host: z.string().min(1).default('0.0.0.0'),
  /** Data-plane port; 0 picks a free port. */
  port: z.int().min(0).max(65535).default(8080),
  /** Largest accepted request body, in bytes; larger bodies get 413 before they are read. */
  maxBodyBytes: z.int().min(1024).default(16 * 1024 * 1024),
  /** Idle keep-alive socket lifetime, ms. Must exceed the idle timeout of the Envoy in front (see README). */
  keepAliveTimeoutMs: z.int().min(1000).default(75_000),
  /** Time allowed to receive the request headers, ms. */
  headersTimeoutMs: z.int().min(1000).default(10_000),
  /** Time allowed to receive the whole request, ms (0 disables). */
  requestTimeoutMs: z.int().min(0).default(60_000),
  /** On SIGTERM/SIGINT: how long in-flight requests may take to finish before the process exits anyway, ms. */
  shutdownTimeoutMs: z.int().min(0).default(30_000),
});

export const loggingSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export const configSchema = z
  .strictObject({
    server: serverSchema.prefault({}),
    logging: loggingSchema.prefault({}),
    models: z
      .record(name('model name'), modelSchema)
      .refine((m) => Object.keys(m).length > 0, 'at least one model must be configured'),
  })
  .superRefine((config, ctx) => {
    for (const [modelName, model] of Object.entries(config.models)) {
      if (model.defaultVersion !== undefined && !(model.defaultVersion in model.versions)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', modelName, 'defaultVersion'],
          message: `version '${model.defaultVersion}' is not one of ${Object.keys(model.versions).join(', ')}`,
        });
      }
    }
  });

export type GatewayConfig = z.output<typeof configSchema>;
export type ModelConfig = GatewayConfig['models'][string];
export type VersionConfig = ModelConfig['versions'][string];
export type BackendConfig = VersionConfig['backend'];
export type ServerConfig = GatewayConfig['server'];
