// One version's admission control, in one place: the circuit breaker decides first, then the load shedder's cap.

import type { Logger } from 'pino';
import { BackendBreaker, type BreakerSettings, type BreakerSnapshot, type BreakerState } from './breaker.js';
import { systemClock, type Clock } from '../core/clock.js';
import { ConcurrencyLimiter, type LimiterSnapshot, type LimitSettings, type Release } from './shedder.js';

export interface GuardSettings {
  limits: LimitSettings;
  breaker: BreakerSettings;
}

export interface GuardSnapshot {
  breaker: BreakerSnapshot;
  limits: LimiterSnapshot;
}

export class VersionGuard {
  readonly label: string;
  readonly #breaker: BackendBreaker | undefined;
  readonly #limiter: ConcurrencyLimiter;

  constructor(settings: GuardSettings, label: string, log: Logger, clock: Clock = systemClock) {
    this.label = label;
    this.#breaker = settings.breaker.enabled ? new BackendBreaker(settings.breaker, label, log, clock) : undefined;
    this.#limiter = new ConcurrencyLimiter(settings.limits, label, clock);
  }

  /** True while the breaker refuses calls (open, or half-open with its trial in flight). */
  get rejecting(): boolean {
    return this.#breaker?.rejecting ?? false;
  }

  /**
   * Runs one backend call under the version's limits. An open breaker refuses before a slot is taken (503
   * GW_ERR_CIRCUIT_OPEN); a full version refuses at once or after a bounded wait (503 GW_ERR_OVERLOADED). Either way
   * `call` has not run when those errors are thrown. `failed` marks resolved results that count as failures.
   */
  run<T>(signal: AbortSignal, call: () => Promise<T>, failed?: (result: T) => boolean): Promise<T> {
    try {
      this.#breaker?.refuseIfOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    // A free slot is taken at once, without a promise; only a full version waits (or sheds).
    const release = this.#limiter.tryAcquire(signal);
    if (release !== undefined) return this.#within(release, call, failed);
    return this.#limiter.acquire(signal).then((r) => this.#within(r, call, failed));
  }

  /** Runs `call` (through the breaker) holding a slot, and gives the slot back when it settles. */
  #within<T>(release: Release, call: () => Promise<T>, failed?: (result: T) => boolean): Promise<T> {
    let running: Promise<T>;
    try {
      running = this.#breaker ? this.#breaker.run(call, failed) : call();
    } catch (err) {
      release();
      return Promise.reject(err);
    }
    return running.finally(release);
  }

  /** Calls `listener` on every breaker state change; returns the unsubscribe function (a no-op without a breaker). */
  onBreakerStateChange(listener: (state: BreakerState) => void): () => void {
    return this.#breaker?.onStateChange(listener) ?? (() => undefined);
  }

  snapshot(): GuardSnapshot {
    const breaker: BreakerSnapshot = this.#breaker?.snapshot() ?? {
      state: 'disabled',
      window: { requests: 0, failures: 0, errorPercent: 0 },
      opened: 0,
      rejected: 0,
    };
    return { breaker, limits: this.#limiter.snapshot() };
  }

  /** Shuts the breaker down (its timers stop); call when the version is discarded. */
  close(): void {
    this.#breaker?.shutdown();
  }
}
