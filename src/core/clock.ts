// Time as a dependency: deadlines, queue waits, retry budgets and breaker timings read it, so tests can drive it.

/** Cancels a timer started with `Clock.after`; calling it after the timer fired does nothing. */
export type Cancel = () => void;

export interface Clock {
  /** Milliseconds since the epoch (wall clock: also used for "opened N ms ago" in the admin API). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds unless cancelled. */
  after(ms: number, fn: () => void): Cancel;
}

/** A reading of the clock alone: epoch milliseconds (token expiry, JWKS cooldowns, token buckets). */
export type Now = Clock['now'];

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};
