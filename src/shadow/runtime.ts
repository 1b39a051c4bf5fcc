// Shadow state that outlives config generations: statistics, per-model concurrency caps, the disagreement log, in-flight calls.

import path from 'node:path';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { RolloutSignals } from '../rollout/signals.js';
import type { Rng } from '../routing/weighted.js';
import { DisagreementLog } from './disagreement-log.js';
import { ShadowStats } from './stats.js';

/** A shadow target set at runtime by a progressive rollout (the candidate, at the rollout's shadow percent). */
export interface RolloutShadowTarget {
  readonly version: string;
  readonly percent: number;
}

export class ShadowRuntime {
  readonly stats = new ShadowStats();
  readonly rng: Rng;
  readonly log: Logger;
  /** Receives every stable→candidate comparison of a running rollout. */
  readonly signals: RolloutSignals | undefined;
  readonly #rolloutTargets = new Map<string, RolloutShadowTarget>();
  #disagreements: DisagreementLog | undefined;
  readonly #inFlight = new Map<string, number>();
  readonly #pending = new Set<Promise<void>>();
  readonly #calls = new Set<AbortController>();
  #closed = false;

  constructor(options: { log: Logger; rng?: Rng; signals?: RolloutSignals }) {
    this.log = options.log;
    this.rng = options.rng ?? Math.random;
    this.signals = options.signals;
  }

  /** The rollout's mirror to its candidate for `model`, if one is on. */
  rolloutTarget(model: string): RolloutShadowTarget | undefined {
    return this.#rolloutTargets.get(model);
  }

  /** Turns a rollout's mirror on (or changes its share) or, with undefined, off. */
  setRolloutTarget(model: string, target: RolloutShadowTarget | undefined): void {
    if (target) this.#rolloutTargets.set(model, target);
    else this.#rolloutTargets.delete(model);
  }

  get disagreementLog(): DisagreementLog | undefined {
    return this.#disagreements;
  }

  /** Installs the log a (re)loaded config asks for; returns the previous one for the caller to close. */
  swapDisagreementLog(next: DisagreementLog | undefined): DisagreementLog | undefined {
    const previous = this.#disagreements;
    this.#disagreements = next;
    return previous;
  }

  /**
   * Follows a (re)loaded config: statistics of pairs it can no longer produce are dropped (the admin API shows live
   * pairs only), and the disagreement log it asks for (paths relative to `baseDir`) replaces the running one unless
   * it is the same. Returns the replaced log, for the caller to close once nothing writes to it.
   */
  reconcile(config: GatewayConfig, baseDir: string): DisagreementLog | undefined {
    for (const model of this.stats.models()) {
      const versions = config.models[model]?.versions;
      this.stats.reset(model, (primary, shadow) => versions !== undefined && primary in versions && shadow in versions);
    }
    const wanted = config.disagreementLog;
    const file = wanted ? path.resolve(baseDir, wanted.path) : undefined;
    if (wanted && file && this.#disagreements?.sameAs(file, wanted)) return undefined;
    return this.swapDisagreementLog(wanted && file ? new DisagreementLog(file, wanted, this.log, this.rng) : undefined);
  }

  /** Takes one of the model's `limit` shadow slots; false when all are busy (the copy is then dropped). */
  tryAcquire(model: string, limit: number): boolean {
    if (this.#closed) return false;
    const busy = this.#inFlight.get(model) ?? 0;
    if (busy >= limit) return false;
    this.#inFlight.set(model, busy + 1);
    return true;
  }

  release(model: string): void {
    const busy = (this.#inFlight.get(model) ?? 1) - 1;
    if (busy <= 0) this.#inFlight.delete(model);
    else this.#inFlight.set(model, busy);
  }

  inFlight(model: string): number {
    return this.#inFlight.get(model) ?? 0;
  }

  /** An abort controller for one shadow call; aborted on close() so shutdown never waits for a slow shadow. */
  callController(): AbortController {
    const controller = new AbortController();
    if (this.#closed) controller.abort(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    else this.#calls.add(controller);
    return controller;
  }

  callDone(controller: AbortController): void {
    this.#calls.delete(controller);
  }

  /** Tracks one mirrored request until its comparison is recorded; failures are logged, never thrown. */
  track(work: Promise<void>): void {
    const tracked = work.catch((err: unknown) => this.log.error({ err }, 'shadow comparison failed'));
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  /** Resolves when every mirrored request seen so far has been compared and recorded. */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
    await this.#disagreements?.flush();
  }

  /** Aborts shadow calls in flight, waits for their bookkeeping, and closes the disagreement log. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const call of this.#calls) call.abort(new GatewayError('GW_ERR_SHUTTING_DOWN'));
    await this.idle();
    await this.#disagreements?.close();
  }
}
