// The rate-limit store contract (memory or Redis), its process-wide counters, and the error a fail-closed rule turns into 503.

import type { BucketPolicy } from './token-bucket.js';

export interface BucketRequest {
  /** Full bucket key: rule name and key value. */
  key: string;
  policy: BucketPolicy;
  cost: number;
  /** What to do when a shared store cannot decide. */
  failureMode: 'open' | 'closed';
}

export interface BucketOutcome {
  allowed: boolean;
  /** Tokens left after this decision (fractional). */
  tokens: number;
  /** True when the shared store was unreachable and the local fallback bucket decided. */
  degraded: boolean;
}

/** Rate-limit counters, exported as metrics by app/state-metrics.ts; monotonic for the life of the process. */
export class RateLimitStats {
  /** Checks passed and refused (413/429); a request with rules in both phases is checked twice. */
  allowed = 0;
  denied = 0;
  /** Requests a dry-run rule would have refused. */
  dryRunDenied = 0;
  /** Decisions the shared store failed to make (unreachable, timeout, script error). */
  storeErrors = 0;
  /** Of those, decided by the local fallback bucket (failureMode open). */
  fallbackDecisions = 0;
  /** Of those, answered 503 (failureMode closed). */
  failedClosed = 0;
  /** Times the shared store's connection was lost. */
  disconnects = 0;
  /** Per rule: decisions by outcome (exported as model_gateway_ratelimit_decisions_total{rule, decision}). */
  readonly byRule = new Map<string, Record<RuleDecision, number>>();

  countRule(rule: string, decision: RuleDecision): void {
    let counts = this.byRule.get(rule);
    if (!counts) this.byRule.set(rule, (counts = { allowed: 0, limited: 0, dry_run_limited: 0, unavailable: 0 }));
    counts[decision]++;
  }
}

/** How one rule decided one request: `limited` covers 429 and batches over the burst (413). */
export type RuleDecision = 'allowed' | 'limited' | 'dry_run_limited' | 'unavailable';

export interface RateLimitStore {
  readonly kind: 'memory' | 'redis';
  readonly stats: RateLimitStats;
  /** Throws StoreUnavailableError only for failureMode closed. */
  take(request: BucketRequest): Promise<BucketOutcome>;
  /** The same decision at once, for a store that keeps its buckets in process; absent when a server must be asked. */
  decideNow?(request: BucketRequest): BucketOutcome;
  close(): Promise<void>;
}

export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
