// Retry budget: retries may add at most `percent` of recent requests (plus a small floor), so they never multiply load.
// Modelled on Finagle's RetryBudget and Envoy's retry_budget: under a full outage retries stay a bounded fraction.

import { systemClock, type Clock } from '../core/clock.js';

export interface RetryBudgetSettings {
  /** Retries allowed as a share of requests in the window, percent. */
  percent: number;
  /** Retries always allowed per second of window, so a quiet backend can still be retried. */
  minPerSecond: number;
  /** The sliding window requests and retries are counted over, ms. */
  windowMs: number;
}

const BUCKETS = 10;

interface Bucket {
  epoch: number;
  requests: number;
  retries: number;
}

export class RetryBudget {
  readonly #settings: RetryBudgetSettings;
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #buckets: Bucket[] = Array.from({ length: BUCKETS }, () => ({ epoch: -1, requests: 0, retries: 0 }));

  constructor(settings: RetryBudgetSettings, clock: Clock = systemClock) {
    this.#settings = settings;
    this.#clock = clock;
    this.#bucketMs = Math.max(1, Math.floor(settings.windowMs / BUCKETS));
  }

  /** Counts one first attempt (not a retry). */
  recordRequest(): void {
    this.#current().requests++;
  }

  /** Takes one retry from the budget if there is one left; false means "do not retry". */
  tryRetry(): boolean {
    const { requests, retries } = this.totals();
    const allowed = Math.floor((this.#settings.minPerSecond * this.#settings.windowMs) / 1000 + (this.#settings.percent / 100) * requests);
    if (retries >= allowed) return false;
    this.#current().retries++;
    return true;
  }

  /** Requests and retries in the current window. */
  totals(): { requests: number; retries: number } {
    const epoch = this.#epoch();
    let requests = 0;
    let retries = 0;
    for (const b of this.#buckets) {
      if (b.epoch > epoch - BUCKETS) {
        requests += b.requests;
        retries += b.retries;
      }
    }
    return { requests, retries };
  }

  #epoch(): number {
    return Math.floor(this.#clock.now() / this.#bucketMs);
  }

  #current(): Bucket {
    const epoch = this.#epoch();
    const bucket = this.#buckets[epoch % BUCKETS]!;
    if (bucket.epoch !== epoch) {
      bucket.epoch = epoch;
      bucket.requests = 0;
      bucket.retries = 0;
    }
    return bucket;
  }
}
