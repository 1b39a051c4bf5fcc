// The one strict config schema: every key, its default and its unit, one file per section under schema/. Unknown
// keys are rejected everywhere. This file puts the sections together, checks what crosses them, and names the types.

import { z } from 'zod';
import { authSchema, type accessRequirementSchema, type JWS_ALGORITHMS } from './schema/auth.js';
import { name } from './schema/common.js';
import { checkTraffic, modelSchema, type compareRuleSchema } from './schema/model.js';
import { rateLimitsSchema } from './schema/rate-limits.js';
import {
  adminSchema,
  coordinationSchema,
  disagreementLogSchema,
  extAuthzSchema,
  loggingSchema,
  reloadSchema,
  rolloutStateSchema,
  serverSchema,
  telemetrySchema,
} from './schema/server.js';

export * from './schema/auth.js';
export * from './schema/backend.js';
export * from './schema/model.js';
export * from './schema/rate-limits.js';
export * from './schema/server.js';

export const configSchema = z
  .strictObject({
    server: serverSchema.prefault({}),
    logging: loggingSchema.prefault({}),
    telemetry: telemetrySchema.prefault({}),
    admin: adminSchema.prefault({}),
    reload: reloadSchema.prefault({}),
    disagreementLog: disagreementLogSchema.optional(),
    auth: authSchema.optional(),
    rateLimits: rateLimitsSchema.optional(),
    extAuthz: extAuthzSchema.prefault({}),
    coordination: coordinationSchema.optional(),
    rolloutState: rolloutStateSchema.prefault({}),
    models: z.record(name('model name'), modelSchema).refine((m) => Object.keys(m).length > 0, 'at least one model must be configured'),
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
      for (const problem of checkTraffic(model)) ctx.addIssue({ code: 'custom', path: ['models', modelName, ...problem.path], message: problem.message });
      if (model.fallback !== undefined && !(model.fallback in model.versions)) {
        ctx.addIssue({
          code: 'custom',
          path: ['models', modelName, 'fallback'],
          message: `version '${model.fallback}' is not one of ${Object.keys(model.versions).join(', ')}`,
        });
      }
    }
    for (const problem of checkSecurity(config)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
    for (const problem of checkWorkers(config)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
  });

/**
 * Workers are replicas of one another: state they must agree on needs the store replicas share. In-memory buckets
 * would give each worker its own (a caller spread over N connections would get N times its limit), and each worker
 * would run its own rollout.
 */
function checkWorkers(config: {
  server: { workers: number };
  rateLimits?: { store: { kind: string } };
  coordination?: unknown;
  models: Record<string, { rollout?: unknown }>;
}): { path: (string | number)[]; message: string }[] {
  if (config.server.workers === 1) return [];
  const problems: { path: (string | number)[]; message: string }[] = [];
  if (config.rateLimits && config.rateLimits.store.kind !== 'redis') {
    problems.push({
      path: ['rateLimits', 'store', 'kind'],
      message: `server.workers is ${config.server.workers}: rate limits need the redis store, shared by the workers (memory buckets would be per worker)`,
    });
  }
  for (const [name, model] of Object.entries(config.models)) {
    if (model.rollout !== undefined && config.coordination === undefined) {
      problems.push({
        path: ['models', name, 'rollout'],
        message: `server.workers is ${config.server.workers}: a rollout needs coordination.redis, so the workers follow one leader`,
      });
    }
  }
  return problems;
}

/** Cross-field checks of auth and rate limits: model auth and claim keys need `auth`; rules name real models and versions. */
function checkSecurity(config: {
  auth?: unknown;
  models: Record<string, { versions: Record<string, unknown>; auth?: unknown }>;
  rateLimits?: { rules: { models?: string[]; versions?: string[]; key: { claim?: string } }[] };
}): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  for (const [modelName, model] of Object.entries(config.models)) {
    if (model.auth !== undefined && config.auth === undefined)
      problems.push({ path: ['models', modelName, 'auth'], message: 'needs the top-level auth section (issuers)' });
  }
  config.rateLimits?.rules.forEach((rule, i) => {
    const at = ['rateLimits', 'rules', i];
    if (rule.key.claim !== undefined && config.auth === undefined)
      problems.push({ path: [...at, 'key', 'claim'], message: 'a claim key needs the top-level auth section' });
    rule.models?.forEach((m, j) => {
      if (!(m in config.models)) problems.push({ path: [...at, 'models', j], message: `model '${m}' is not configured` });
    });
    const scope = (rule.models ?? Object.keys(config.models)).filter((m) => m in config.models);
    rule.versions?.forEach((v, j) => {
      if (!scope.some((m) => v in config.models[m]!.versions))
        problems.push({ path: [...at, 'versions', j], message: `no model of this rule has version '${v}'` });
    });
  });
  return problems;
}

export type GatewayConfig = z.output<typeof configSchema>;
export type ModelConfig = GatewayConfig['models'][string];
export type VersionConfig = ModelConfig['versions'][string];
export type BackendConfig = VersionConfig['backend'];
export type HttpBackendConfig = Extract<BackendConfig, { kind: 'http' }>;
export type GrpcBackendConfig = Extract<BackendConfig, { kind: 'grpc' }>;
export type ServerConfig = GatewayConfig['server'];
export type AdminConfig = GatewayConfig['admin'];
export type ReloadConfig = GatewayConfig['reload'];
export type CompareRule = z.output<typeof compareRuleSchema>;
export type DisagreementLogConfig = NonNullable<GatewayConfig['disagreementLog']>;
export type AuthConfig = NonNullable<GatewayConfig['auth']>;
export type IssuerConfig = AuthConfig['issuers'][number];
export type JwksSourceConfig = IssuerConfig['jwks'];
export type AccessRequirement = z.output<typeof accessRequirementSchema>;
export type RateLimitsConfig = NonNullable<GatewayConfig['rateLimits']>;
export type RateLimitRule = RateLimitsConfig['rules'][number];
export type RateLimitStoreConfig = RateLimitsConfig['store'];
export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];
export type RolloutConfig = NonNullable<ModelConfig['rollout']>;
export type CoordinationConfig = NonNullable<GatewayConfig['coordination']>;
