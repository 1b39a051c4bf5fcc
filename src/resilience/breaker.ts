// Circuit breaker for one model version (opossum): 5xx, timeouts and connection failures count; 4xx and shedding never do.

import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import { GatewayError } from '../errors/gateway-error.js';
import { blameOf } from './blame.js';
import { systemClock, type Clock } from '../core/clock.js';

export interface BreakerSettings {
  enabled: boolean;
  /** Requests in the window before the error rate is looked at; opossum's default of 0 opens on the first failure. */
  volumeThreshold: number;
  /** Failed share of the window's requests above which the breaker opens, percent. */
  errorThresholdPercent: number;
  /** Rolling window length, ms. */
  windowMs: number;
  /** Slices the window is rotated in (resolution of the window). */
  windowBuckets: number;
  /** Time an open breaker stays open before one trial request is let through, ms. */
  resetTimeoutMs: number;
  /** Calls in a row that never reached the backend (GW_ERR_BACKEND_UNREACHABLE) after which it opens at once; 0: off. */
  consecutiveConnectFailures?: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open' | 'disabled';

export interface BreakerSnapshot {
  state: BreakerState;
  /** While open: ms until the next trial request is let through. */
  retryInMs?: number;
  /** Calls that ran through the breaker in the rolling window, and how many of them failed. */
  window: { requests: number; failures: number; errorPercent: number };
  /** Times the breaker opened since start. */
  opened: number;
  /** Requests refused without a backend call since start (open, or half-open with the trial in flight). */
  rejected: number;
}

/**
 * Whether an error from a backend call counts against the backend: only what resilience/blame.ts puts on the backend
 * (its failures, connection errors, timeouts, the model's deadline); never the request's, the caller's or the
 * gateway's own doing.
 */
export function isBackendFailure(err: unknown): boolean {
  if (err instanceof FailedResult) return true;
  return blameOf(err) === 'backend';
}

/** Carries a result that counts as a failure (a 5xx reply passed through from a remote) past opossum. */
class FailedResult {
  constructor(readonly result: unknown) {}
}

type Thunk = () => Promise<unknown>;

function isOpenRejection(err: unknown): boolean {
  return err instanceof Error && CircuitBreaker.isOurError(err) && (err as NodeJS.ErrnoException).code === 'EOPENBREAKER';
}

export class BackendBreaker {
  readonly #settings: BreakerSettings;
  readonly #label: string;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #circuit: CircuitBreaker<[Thunk], unknown>;
  readonly #rotation = new EventEmitter();
  readonly #bucketMs: number;
  #rotatedAt: number;
  #openedAt = 0;
  #opened = 0;
  #rejected = 0;
  /** Calls in a row that could not reach the backend. */
  #unreachableInARow = 0;
  readonly #listeners = new Set<(state: BreakerState) => void>();

  constructor(settings: BreakerSettings, label: string, log: Logger, clock: Clock = systemClock) {
    this.#settings = settings;
    this.#label = label;
    this.#log = log;
    this.#clock = clock;
    this.#bucketMs = Math.max(1, Math.floor(settings.windowMs / settings.windowBuckets));
    this.#rotatedAt = clock.now();
    this.#circuit = new CircuitBreaker<[Thunk], unknown>((call: Thunk) => call(), {
      name: label,
      // Deadlines are enforced per request with the request's own AbortSignal (see stages/deadline.ts); opossum's
      // timeout would neither abort the call nor know the per-model deadline.
      timeout: false,
      volumeThreshold: settings.volumeThreshold,
      errorThresholdPercentage: settings.errorThresholdPercent,
      rollingCountTimeout: settings.windowMs,
      rollingCountBuckets: settings.windowBuckets,
      resetTimeout: settings.resetTimeoutMs,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      // The window is rotated from the injected clock whenever it is read (see #rotate), instead of by an interval
      // timer per breaker: no timers to leak, and tests can move time.
      rotateBucketController: this.#rotation,
      // true = "not a failure". A client that hangs up during the half-open trial proves nothing either way; counting
      // it as a failure keeps the breaker open rather than closing it on no evidence.
      errorFilter: (err: unknown) => {
        this.#rotate(); // opossum reads the window right after this to decide whether to open
        return !(isBackendFailure(err) || (this.#circuit.halfOpen && isClientGone(err)));
      },
    });
    this.#circuit.on('open', () => {
      this.#openedAt = this.#clock.now();
      this.#opened++;
      const stats = this.#circuit.stats;
      log.warn({ breaker: label, failures: stats.failures, requests: stats.fires }, 'circuit breaker opened: failing fast');
      this.#notify('open');
    });
    this.#circuit.on('halfOpen', () => {
      log.info({ breaker: label }, 'circuit breaker half-open: letting one trial request through');
      this.#notify('half-open');
    });
    this.#circuit.on('close', () => {
      log.info({ breaker: label }, 'circuit breaker closed');
      this.#notify('closed');
    });
  }

  /** Calls `listener` on every state change (metrics, tests); returns the unsubscribe function. */
  onStateChange(listener: (state: BreakerState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(state: BreakerState): void {
    for (const listener of this.#listeners) listener(state);
  }

  /** True while calls are refused without running: open, or half-open with its one trial already in flight. */
  get rejecting(): boolean {
    return !this.#circuit.closed && !this.#circuit.pendingClose;
  }

  /** Throws the 503 for a refused call when the breaker refuses calls now; counts it. */
  refuseIfOpen(): void {
    if (!this.rejecting) return;
    this.#rejected++;
    throw this.openError();
  }

  /**
   * Runs `call` through the breaker. A resolved result for which `failed` is true (a 5xx reply) counts as a failure
   * and is still returned. Refused calls reject with GW_ERR_CIRCUIT_OPEN (503, Retry-After) without running.
   */
  async run<T>(call: () => Promise<T>, failed?: (result: T) => boolean): Promise<T> {
    let outcome: { result: T } | undefined;
    this.#rotate();
    try {
      await this.#circuit.fire(async () => {
        const result = await call();
        outcome = { result };
        if (failed?.(result)) throw new FailedResult(result);
      });
      this.#unreachableInARow = 0;
    } catch (err) {
      this.#countConnectFailure(err);
      if (err instanceof FailedResult && outcome) return outcome.result;
      if (isOpenRejection(err)) {
        this.#rejected++;
        throw this.openError();
      }
      if (err instanceof Error && CircuitBreaker.isOurError(err)) throw new GatewayError('GW_ERR_SHUTTING_DOWN', undefined, { cause: err });
      throw err;
    }
    return outcome!.result;
  }

  /**
   * A dead backend is known after a few refused connections: it opens the breaker at once instead of waiting for the
   * window's volume (20 calls by default), so the fallback takes over before, not after, a burst of failures.
   */
  #countConnectFailure(err: unknown): void {
    const threshold = this.#settings.consecutiveConnectFailures ?? 0;
    if (!(err instanceof GatewayError && err.code === 'GW_ERR_BACKEND_UNREACHABLE')) {
      if (!isOpenRejection(err)) this.#unreachableInARow = 0;
      return;
    }
    this.#unreachableInARow++;
    if (threshold > 0 && this.#unreachableInARow >= threshold && !this.#circuit.opened) {
      this.#log.warn({ breaker: this.#label, calls: this.#unreachableInARow }, 'backend unreachable on consecutive calls: opening the breaker');
      this.#unreachableInARow = 0;
      this.#circuit.open();
    }
  }

  /** The 503 a refused call gets, with Retry-After = seconds until the next trial (at least 1). */
  openError(): GatewayError {
    const seconds = Math.max(1, Math.ceil(this.#retryInMs() / 1000));
    return new GatewayError('GW_ERR_CIRCUIT_OPEN', `${this.#label} is failing; its circuit breaker is open and the next trial request is due in ${seconds} s`, {
      headers: { 'retry-after': String(seconds) },
    });
  }

  /** Forces the breaker open (admin action or tests). */
  open(): void {
    this.#circuit.open();
  }

  snapshot(): BreakerSnapshot {
    this.#rotate();
    const c = this.#circuit;
    const state: BreakerState = c.closed ? 'closed' : c.halfOpen ? 'half-open' : 'open';
    const stats = c.stats;
    const snapshot: BreakerSnapshot = {
      state,
      window: {
        requests: stats.fires - stats.rejects,
        failures: stats.failures,
        errorPercent: stats.fires > stats.rejects ? Math.round((stats.failures / (stats.fires - stats.rejects)) * 1000) / 10 : 0,
      },
      opened: this.#opened,
      rejected: this.#rejected,
    };
    if (state === 'open') snapshot.retryInMs = this.#retryInMs();
    return snapshot;
  }

  /** Stops the reset timer; later calls are refused. */
  shutdown(): void {
    this.#circuit.shutdown();
  }

  /** Drops the window slices that have aged out since the last look. */
  #rotate(): void {
    const elapsed = Math.floor((this.#clock.now() - this.#rotatedAt) / this.#bucketMs);
    if (elapsed <= 0) return;
    this.#rotatedAt += elapsed * this.#bucketMs;
    for (let i = Math.min(elapsed, this.#settings.windowBuckets); i > 0; i--) this.#rotation.emit('rotate');
  }

  #retryInMs(): number {
    if (!this.#circuit.opened) return 0;
    return Math.max(0, this.#openedAt + this.#settings.resetTimeoutMs - this.#clock.now());
  }
}

function isClientGone(err: unknown): boolean {
  return blameOf(err) === 'caller';
}
