// In-process token buckets: the default store (one replica) and the Redis store's local fallback.

import { RateLimitStats, type BucketOutcome, type BucketRequest, type RateLimitStore } from './store.js';
import type { Now } from '../core/clock.js';
import { takeTokens, type BucketState } from './token-bucket.js';

export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory';
  readonly #buckets = new Map<string, BucketState>();

  constructor(
    /** Buckets kept at most; the least recently used is evicted (it starts again full, like a new key). */
    private readonly maxKeys: number,
    private readonly now: Now,
    readonly stats: RateLimitStats = new RateLimitStats(),
  ) {}

  get size(): number {
    return this.#buckets.size;
  }

  decideNow(request: BucketRequest): BucketOutcome {
    const previous = this.#buckets.get(request.key);
    const { state, allowed } = takeTokens(previous, request.policy, request.cost, this.now());
    if (previous !== undefined) this.#buckets.delete(request.key);
    else if (this.#buckets.size >= this.maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    this.#buckets.set(request.key, state); // most recently used goes last
    return { allowed, tokens: state.tokens, degraded: false };
  }

  async take(request: BucketRequest): Promise<BucketOutcome> {
    return this.decideNow(request);
  }

  async close(): Promise<void> {
    this.#buckets.clear();
  }
}
