// One model: its versions, traffic (weights, header override, sticky, shadow), rollout, deadline, fallback and auth.

import { z } from 'zod';
import { modelAuthSchema } from './auth.js';
import { versionSchema } from './backend.js';
import { HEADER_NAME, name } from './common.js';

/** Largest weight a version may have; weights are relative, so this only keeps sums far from float trouble. */
export const MAX_WEIGHT = 1_000_000;

/** Traffic split of requests without a version: version → integer weight (share = weight / sum). Unlisted versions get 0. */
export const weightsSchema = z.record(name('version'), z.int().min(0).max(MAX_WEIGHT));

/** The `x-model-version` request header (a version in the path still wins over it). */
export const overrideSchema = z.strictObject({
  /** Honour the header; when false it is ignored. */
  enabled: z.boolean().default(false),
  /** Only callers whose verified identity carries this scope may choose a version, with the header or in the path (needs the auth stage); others get 403. */
  requiredScope: z.string().min(1).optional(),
});

/** Sticky routing: the same key always lands on the same version for the same weights. Exactly one source. */
export const stickySchema = z
  .strictObject({
    /** Request header holding the key, e.g. `x-user-id` (matched case-insensitively). */
    header: z
      .string()
      .regex(HEADER_NAME, 'header must be a valid HTTP header name')
      .transform((h) => h.toLowerCase())
      .optional(),
    /** Verified JWT claim holding the key, e.g. `sub` (set by the auth stage). */
    claim: z.string().min(1).optional(),
  })
  .refine((s) => (s.header === undefined) !== (s.claim === undefined), 'set exactly one of header or claim');

/** How one output of a primary and its shadow are compared (docs/traffic.md "Shadow comparison"). */
export const compareRuleSchema = z.discriminatedUnion('mode', [
  /** Top-1 per row: exact match for labels; argmax (or p ≥ 0.5 for a single score) for floating-point scores. */
  z.strictObject({ mode: z.literal('classification') }),
  /** A row agrees when its relative L2 error ≤ maxRelL2 or its largest absolute difference ≤ maxAbsDiff. */
  z.strictObject({
    mode: z.literal('regression'),
    /** ‖shadow − primary‖₂ / ‖primary‖₂ per row, unitless. */
    maxRelL2: z.number().min(0).default(0.01),
    /** max |shadow − primary| per row, in the output's units (catches rows whose primary is ~0). */
    maxAbsDiff: z.number().min(0).default(1e-6),
  }),
  /** Not compared (e.g. a timestamp output). */
  z.strictObject({ mode: z.literal('ignore') }),
]);

export const shadowSchema = z.strictObject({
  /** Versions that get a fire-and-forget copy of this model's inference traffic (never of their own). */
  targets: z
    .array(
      z.strictObject({
        version: name('version'),
        /** Share of the primary's requests mirrored to this version, percent (0–100; fractions allowed). */
        percent: z.number().min(0).max(100).default(100),
      }),
    )
    .min(1, 'list at least one shadow target'),
  /** Each shadow call is abandoned after this long, ms. */
  timeoutMs: z.int().min(1).default(5_000),
  /** Shadow calls in flight for this model at most; a copy beyond it is dropped and counted, never queued. */
  maxConcurrent: z.int().min(1).default(8),
  /** Per output name; unlisted outputs: integer/BOOL/BYTES → classification, floating point → regression. */
  compare: z.record(z.string().min(1), compareRuleSchema).default({}),
});

/**
 * Progressive rollout of `candidate` over `stable` (docs/rollouts.md): a shadow phase, then weight
 * steps, each advanced only while the gates pass on a sliding window; a failing gate rolls back to stable and holds.
 */
export const rolloutSchema = z.strictObject({
  /** The version serving today; it takes all unversioned traffic until the candidate earns some. */
  stable: name('stable'),
  /** The version being rolled out. */
  candidate: name('candidate'),
  /** Phase 1: the candidate gets a copy of stable's traffic (never real traffic) until enough has been compared. */
  shadow: z
    .strictObject({
      /** Share of stable's requests mirrored to the candidate in the shadow phase (and in steps with duringSteps), percent. */
      percent: z.number().min(0.01).max(100).default(100),
      /**
       * Keep mirroring stable's traffic to the candidate during the weight steps below 100 %, so agreement keeps being
       * judged. The copies then load the candidate beyond its real share, so its real requests are slower than stable's
       * for that reason alone: the relative p99 limit is not applied then, only `gates.maxP99Ms`.
       */
      duringSteps: z.boolean().default(false),
      /** The phase may end once this many requests have been compared in it... */
      requests: z.int().min(1).default(1000),
      /** ...or once it has lasted this long, ms, whichever comes first (and only while every gate passes). */
      durationMs: z.int().min(1).default(600_000),
      /**
       * How each output is compared, per output name (see `shadow.compare`); unlisted outputs: the model's
       * `shadow.compare`, else the datatype default. Timeout and concurrency cap: the model's `shadow` section's.
       */
      compare: z.record(z.string().min(1), compareRuleSchema).default({}),
    })
    .prefault({}),
  /** Phase 2: the candidate's share of unversioned traffic, percent, step by step (ascending, 1–100). */
  steps: z
    .array(z.int().min(1).max(100))
    .min(1)
    .refine((s) => s.every((w, i) => i === 0 || w > s[i - 1]!), 'steps must be strictly ascending')
    .default([5, 25, 50, 100]),
  /** Each step is held at least this long, ms, and until every gate passes. */
  stepHoldMs: z.int().min(1).default(300_000),
  /** How often the gates are evaluated and the next decision taken, ms. */
  evaluationIntervalMs: z.int().min(1).default(30_000),
  /** Gates look at the last windowMs of samples, never before the current phase or step began, ms. */
  windowMs: z.int().min(1).default(120_000),
  gates: z
    .strictObject({
      /** Share of compared requests whose every output agreed, 0–1 (judged while stable traffic is mirrored). */
      minAgreement: z.number().min(0).max(1).default(0.99),
      /** Share of the candidate's backend calls that failed (5xx, timeouts, connection errors), 0–1. */
      maxErrorRate: z.number().min(0).max(1).default(0.01),
      /**
       * The candidate's p99 latency on real requests may be at most this multiple of stable's (over the same window)...
       * Mirrored copies are never timed: a copy queues behind its own primary.
       */
      maxP99Ratio: z.number().min(1).default(1.5),
      /** ...or at most this much above it, ms, whichever allows more (sub-ms models would fail on noise). */
      p99AllowanceMs: z.number().min(0).default(5),
      /** An absolute ceiling on the candidate's p99 on real requests, ms, whatever stable's; unset: none. */
      maxP99Ms: z.number().positive().optional(),
      /** A gate is judged only on at least this many samples (comparisons, or calls of each version); until then it waits. */
      minSamples: z.int().min(1).default(100),
    })
    .prefault({}),
});

export const modelSchema = z.strictObject({
  /**
   * Version answering unversioned metadata/ready requests, and unversioned inference when `weights` is unset.
   * Default: the version with the highest weight when `weights` is set, else the highest version.
   */
  defaultVersion: name('defaultVersion').optional(),
  versions: z.record(name('version'), versionSchema).refine((v) => Object.keys(v).length > 0, 'a model needs at least one version'),
  /** Unset: every unversioned inference goes to defaultVersion. */
  weights: weightsSchema.optional(),
  override: overrideSchema.prefault({}),
  /** Unset: each unversioned request is routed by weighted random choice. */
  sticky: stickySchema.optional(),
  shadow: shadowSchema.optional(),
  /** Deadline of one inference request, ms, from the moment its body is received; beyond it → 504. */
  timeoutMs: z.int().min(1).default(30_000),
  /**
   * Version that serves a request whose chosen version's circuit breaker is open, or whose backend could not be
   * reached (connection refused, reset before any answer, connect timeout); the answer carries x-model-fallback.
   */
  fallback: name('fallback').optional(),
  /** Re-serving unreachable calls from `fallback` may add at most this much load (the breaker opening is free). */
  fallbackBudget: z
    .strictObject({
      /** Share of the model's requests in the window that may be re-served, percent. */
      percent: z.number().min(0).max(100).default(20),
      /** Re-served calls always allowed per second of window, so a quiet model's first failures are covered. */
      minPerSecond: z.number().min(0).default(3),
      /** Window the budget is counted over, ms. */
      windowMs: z.int().min(1000).default(10_000),
    })
    .prefault({}),
  /** Who may call this model (docs/security.md); unset: any verified caller. */
  auth: modelAuthSchema.optional(),
  /** Automated canary of one version over another; while it runs it owns this model's weights. */
  rollout: rolloutSchema.optional(),
});

/** Cross-field checks of a model's traffic keys: weights and shadows may only name versions the model has. */
export function checkTraffic(model: z.output<typeof modelSchema>): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const known = Object.keys(model.versions);
  const unknown = (v: string) => `version '${v}' is not one of ${known.join(', ')}`;
  if (model.weights !== undefined) {
    for (const v of Object.keys(model.weights)) if (!known.includes(v)) problems.push({ path: ['weights', v], message: unknown(v) });
    if (Object.values(model.weights).every((w) => w === 0)) problems.push({ path: ['weights'], message: 'at least one weight must be above 0' });
  }
  const seen = new Set<string>();
  model.shadow?.targets.forEach((target, i) => {
    if (!known.includes(target.version)) problems.push({ path: ['shadow', 'targets', i, 'version'], message: unknown(target.version) });
    if (seen.has(target.version)) problems.push({ path: ['shadow', 'targets', i, 'version'], message: `version '${target.version}' is listed twice` });
    seen.add(target.version);
  });
  const rollout = model.rollout;
  if (rollout) {
    if (!known.includes(rollout.stable)) problems.push({ path: ['rollout', 'stable'], message: unknown(rollout.stable) });
    if (!known.includes(rollout.candidate)) problems.push({ path: ['rollout', 'candidate'], message: unknown(rollout.candidate) });
    if (rollout.stable === rollout.candidate) problems.push({ path: ['rollout', 'candidate'], message: 'must differ from rollout.stable' });
    const owned = model.shadow?.targets.findIndex((t) => t.version === rollout.candidate) ?? -1;
    if (owned >= 0)
      problems.push({
        path: ['shadow', 'targets', owned, 'version'],
        message: `version '${rollout.candidate}' is the rollout's candidate: the rollout mirrors traffic to it itself`,
      });
  }
  return problems;
}
