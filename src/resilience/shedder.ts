// Load shedding: a per-version cap on in-flight requests with an optional short, bounded wait for a free slot.
// Rejecting at once beats queueing for inference: a queued request only adds latency to everything behind it.

import { GatewayError } from '../errors/gateway-error.js';
import { systemClock, type Cancel, type Clock } from '../core/clock.js';

export interface LimitSettings {
  /** Requests in flight to the backend at most (for ONNX: running on a worker or waiting for one). */
  maxConcurrent: number;
  /** Requests that may wait for a slot beyond that; 0 rejects at once. */
  maxQueue: number;
  /** How long a waiting request may wait for a slot, ms. */
  maxQueueWaitMs: number;
}

/** Gives the slot back; idempotent. */
export type Release = () => void;

export interface LimiterSnapshot {
  maxConcurrent: number;
  maxQueue: number;
  inFlight: number;
  queued: number;
  /** Requests admitted since start. */
  admitted: number;
  /** Requests rejected with 503 since start (limit reached, queue full or wait too long). */
  shed: number;
}

interface Waiter {
  grant(release: Release): void;
  fail(err: unknown): void;
}

/** Shed requests are retried by well-behaved clients; one second is enough for a slot to free up. */
const RETRY_AFTER = { 'retry-after': '1' };

export class ConcurrencyLimiter {
  readonly #settings: LimitSettings;
  readonly #label: string;
  readonly #clock: Clock;
  readonly #waiting: Waiter[] = [];
  #inFlight = 0;
  #admitted = 0;
  #shed = 0;

  constructor(settings: LimitSettings, label: string, clock: Clock = systemClock) {
    this.#settings = settings;
    this.#label = label;
    this.#clock = clock;
  }

  /**
   * A slot, or a 503 (GW_ERR_OVERLOADED) with Retry-After. The slot is taken synchronously when one is free, so a
   * burst cannot overshoot the cap between the check and the increment. Aborting `signal` while waiting gives up.
   */
  /** A slot at once when one is free and nobody waits (the common case, no promise); undefined otherwise. */
  tryAcquire(signal: AbortSignal): Release | undefined {
    if (signal.aborted || this.#inFlight >= this.#settings.maxConcurrent || this.#waiting.length > 0) return undefined;
    this.#inFlight++;
    this.#admitted++;
    return this.#releaser();
  }

  acquire(signal: AbortSignal): Promise<Release> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const { maxConcurrent, maxQueue, maxQueueWaitMs } = this.#settings;
    if (this.#inFlight < maxConcurrent && this.#waiting.length === 0) {
      this.#inFlight++;
      this.#admitted++;
      return Promise.resolve(this.#releaser());
    }
    if (this.#waiting.length >= maxQueue) {
      this.#shed++;
      const queue = maxQueue > 0 ? ` and ${maxQueue} waiting` : '';
      return Promise.reject(
        new GatewayError('GW_ERR_OVERLOADED', `${this.#label} is at its limit of ${maxConcurrent} concurrent requests${queue}`, { headers: RETRY_AFTER }),
      );
    }
    return new Promise<Release>((resolve, reject) => {
      let cancelTimer: Cancel = () => {};
      const leave = () => {
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        cancelTimer();
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        leave();
        reject(signal.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          leave();
          resolve(release);
        },
        fail: (err) => {
          leave();
          reject(err);
        },
      };
      this.#waiting.push(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
      cancelTimer = this.#clock.after(maxQueueWaitMs, () => {
        this.#shed++;
        waiter.fail(
          new GatewayError('GW_ERR_OVERLOADED', `${this.#label}: no free slot within ${maxQueueWaitMs} ms (limit ${maxConcurrent} concurrent requests)`, {
            headers: RETRY_AFTER,
          }),
        );
      });
    });
  }

  snapshot(): LimiterSnapshot {
    return {
      maxConcurrent: this.#settings.maxConcurrent,
      maxQueue: this.#settings.maxQueue,
      inFlight: this.#inFlight,
      queued: this.#waiting.length,
      admitted: this.#admitted,
      shed: this.#shed,
    };
  }

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting[0];
      if (next) {
        // The slot passes straight to the oldest waiter: in-flight stays the same.
        this.#admitted++;
        next.grant(this.#releaser());
      } else {
        this.#inFlight--;
      }
    };
  }
}
