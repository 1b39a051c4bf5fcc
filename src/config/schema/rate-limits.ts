// Token-bucket rate limits: rules (models, versions, key, rate, burst, cost) and the store (memory or Redis).

import { z } from 'zod';
import { httpHeaderName, name } from './common.js';

/**
 * Where a rate-limit rule takes its bucket key from: one source or several (a composite key, e.g. a claim and the
 * model). Requests without any value share one bucket.
 */
export const rateLimitKeySchema = z
  .strictObject({
    /**
     * A top-level claim of the verified token, e.g. `sub` or `tenant` (needs `auth`). Always qualified by the token's
     * issuer: a claim's value means something only within its issuer (RFC 7519 §4.1.2), so two trusted issuers with
     * the same `sub` never share a bucket.
     */
    claim: z.string().min(1).optional(),
    /** A request header, e.g. `x-tenant-id` (its first value when repeated). */
    header: httpHeaderName.optional(),
    /** The client address; with trustedHops N ≥ 1 the N-th X-Forwarded-For entry from the right (1 = set by the Envoy in front). */
    clientAddress: z.strictObject({ trustedHops: z.int().min(0).max(10).default(0) }).optional(),
    /** Add the model name to the key: one bucket per model (alone: a per-model limit for all callers together). */
    model: z.boolean().default(false),
    /** Add the serving version to the key (decided after routing). */
    version: z.boolean().default(false),
  })
  .refine(
    (k) => k.claim !== undefined || k.header !== undefined || k.clientAddress !== undefined || k.model || k.version,
    'set at least one of key.claim, key.header, key.clientAddress, key.model or key.version',
  );

export const rateLimitRuleSchema = z.strictObject({
  /** Policy name: shown in the RateLimit headers and used in store keys. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'name must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}'),
  /** Models the rule applies to; unset: every model. */
  models: z.array(name('model')).min(1).optional(),
  /** Versions (of those models) it applies to, the version actually serving; unset: every version. */
  versions: z.array(name('version')).min(1).optional(),
  operations: z
    .array(z.enum(['infer', 'model-metadata', 'model-ready']))
    .min(1)
    .default(['infer']),
  key: rateLimitKeySchema,
  /** Sustained refill rate, tokens per second. */
  ratePerSecond: z.number().positive().max(1_000_000),
  /** Bucket size: the most tokens a key can spend at once. */
  burst: z.int().min(1).max(1_000_000_000),
  /** `request`: 1 token per request; `rows`: the batch's first dimension (inference only; other operations cost 1). */
  cost: z.enum(['request', 'rows']).default('request'),
  /** When the shared store is unreachable: `open` decides with a per-replica local bucket, `closed` answers 503. */
  failureMode: z.enum(['open', 'closed']).default('open'),
  /** Dry run for this rule only; default: `rateLimits.enforce`. */
  enforce: z.boolean().optional(),
});

export const rateLimitStoreSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('memory'),
    /** Buckets kept at most (least recently used evicted: an evicted key starts again with a full bucket). */
    maxKeys: z.int().min(1).default(100_000),
  }),
  z.strictObject({
    kind: z.literal('redis'),
    /** e.g. `redis://:${REDIS_PASSWORD}@redis:6379/0` (rediss:// for TLS). */
    url: z.string().regex(/^rediss?:\/\//, 'url must start with redis:// or rediss://'),
    /** Prefix of every bucket key. */
    keyPrefix: z.string().default('model-gateway:rl:'),
    /** One decision may take this long before the rule's failureMode applies, ms. */
    commandTimeoutMs: z.int().min(1).default(100),
    /** Connect timeout, ms; the client reconnects on its own with backoff. */
    connectTimeoutMs: z.int().min(100).default(2_000),
    /** Buckets kept at most by the local fallback used while Redis is unreachable (failureMode open). */
    fallbackMaxKeys: z.int().min(1).default(100_000),
  }),
]);

/** Token-bucket rate limits, per model (and version), keyed by claim, header or client address. Absent: none. */
export const rateLimitsSchema = z.strictObject({
  /** false: dry run for every rule (would-be 429s are logged and counted, no RateLimit headers are sent). */
  enforce: z.boolean().default(true),
  /** Where buckets live; read once at start (a reload keeps the running store). */
  store: rateLimitStoreSchema.prefault({ kind: 'memory' }),
  rules: z.array(rateLimitRuleSchema).refine((rules) => new Set(rules.map((r) => r.name)).size === rules.length, 'rule names must be unique'),
});
