// Token-bucket arithmetic shared by every store (the Redis Lua script mirrors it): pure functions of state, policy and time.

export interface BucketPolicy {
  /** Refill rate, tokens per second. */
  ratePerSecond: number;
  /** Capacity: the most tokens that can be spent at once. */
  burst: number;
}

export interface BucketState {
  tokens: number;
  /** Epoch ms of the last refill. */
  updatedAt: number;
}

/** Float refills (0.1 × 10) land a hair under whole numbers; a request must not be refused for that. */
export const EPSILON = 1e-9;

/**
 * Refills for the time since the last call, then spends `cost` if there is enough. A clock that steps back never
 * refills and never moves `updatedAt` back. A missing state is a full bucket.
 */
export function takeTokens(state: BucketState | undefined, policy: BucketPolicy, cost: number, now: number): { state: BucketState; allowed: boolean } {
  let tokens = policy.burst;
  let updatedAt = now;
  if (state !== undefined) {
    const elapsed = Math.max(0, now - state.updatedAt);
    tokens = Math.min(policy.burst, state.tokens + (elapsed * policy.ratePerSecond) / 1000);
    updatedAt = Math.max(state.updatedAt, now);
  }
  const allowed = tokens + EPSILON >= cost;
  if (allowed) tokens = Math.max(0, tokens - cost);
  return { state: { tokens, updatedAt }, allowed };
}

/** Whole tokens left (the `r` of the RateLimit header). */
export function remainingTokens(tokens: number): number {
  return Math.floor(tokens + EPSILON);
}

/** Seconds until `cost` tokens are available, at least 1 (Retry-After of a refused request). */
export function secondsUntilAvailable(tokens: number, cost: number, policy: BucketPolicy): number {
  return Math.max(1, Math.ceil((cost - tokens) / policy.ratePerSecond - EPSILON));
}

/** Seconds until the bucket is full again (the `t` of an allowed request's RateLimit header). */
export function secondsUntilFull(tokens: number, policy: BucketPolicy): number {
  return Math.max(0, Math.ceil((policy.burst - tokens) / policy.ratePerSecond - EPSILON));
}
