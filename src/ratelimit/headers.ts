// The IETF draft RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers) for token buckets.

import { remainingTokens, secondsUntilAvailable, secondsUntilFull, type BucketPolicy } from './token-bucket.js';

/**
 * `"name";q=Q;w=W`: a token bucket expressed as a quota per window. W is the time to refill a full bucket (at least
 * 1 s, whole seconds) and Q the tokens the rate adds in W, so Q/W is the sustained rate and, when burst ≥ rate, Q is
 * the burst.
 */
export function policyItem(name: string, policy: BucketPolicy): string {
  const window = Math.max(1, Math.ceil(policy.burst / policy.ratePerSecond));
  const quota = Math.max(1, Math.round(policy.ratePerSecond * window));
  return `"${name}";q=${quota};w=${window}`;
}

/**
 * `"name";r=R;t=T`: R whole tokens left. T is the seconds until the bucket is full again; on a refusal it is the
 * seconds until this request's cost is available, the same value as Retry-After.
 */
export function limitItem(name: string, policy: BucketPolicy, outcome: { allowed: boolean; tokens: number }, cost: number): string {
  const t = outcome.allowed ? secondsUntilFull(outcome.tokens, policy) : secondsUntilAvailable(outcome.tokens, cost, policy);
  return `"${name}";r=${remainingTokens(outcome.tokens)};t=${t}`;
}

/** Adds list members to a structured-field list header that an earlier phase may already have started. */
export function appendListHeader(headers: Record<string, string>, name: string, items: readonly string[]): void {
  if (items.length === 0) return;
  const joined = items.join(', ');
  headers[name] = headers[name] ? `${headers[name]}, ${joined}` : joined;
}
