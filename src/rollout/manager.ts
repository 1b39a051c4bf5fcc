// Drives every model's progressive rollout: evaluates its gates on a timer, applies the state's weights, shadow and
// failover to the data plane, takes operators' actions, and (with Redis) shares one state between the replicas.

import { createHash } from 'node:crypto';
import type { GatewayConfig, RolloutConfig } from '../config/schema.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { RolloutRouting } from '../routing/table.js';
import type { Cancel, Clock } from '../core/clock.js';
import type { Logger } from '../telemetry/log.js';
import type { GatewayMetrics } from '../telemetry/metrics.js';
import { applyAction, effectsOf, evaluate, initialState, type Decision, type OperatorAction, type RolloutState } from './machine.js';
import { mergeWindow, type RolloutSignals, type SignalSnapshot } from './signals.js';
import type { RolloutStore } from './store.js';
import { rolloutView, type RolloutView } from './view.js';

/**
 * What a rollout needs of the gateway it steers (the reload controller provides it): the running config and its
 * reloads, and two levers — the model's routing (weights, failover) and its mirror to the candidate.
 */
export interface RolloutPort {
  /** The config serving now. */
  readonly config: GatewayConfig;
  /** Calls `listener` after every config a reload applies. */
  onApplied(listener: (config: GatewayConfig) => void): void;
  /** Sets, or with undefined ends, the weights and failover the rollout imposes on `model`. */
  setRolloutRouting(model: string, routing: RolloutRouting | undefined): void;
  /** Mirrors `percent` of `model`'s traffic to the candidate `version`, or with undefined stops. */
  setRolloutShadow(model: string, target: { readonly version: string; readonly percent: number } | undefined): void;
}

export interface RolloutManagerOptions {
  gateway: RolloutPort;
  signals: RolloutSignals;
  store: RolloutStore;
  clock: Clock;
  log: Logger;
  metrics?: GatewayMetrics;
  /** With a shared store: how often to renew the lease, publish samples and read the shared state, ms. */
  syncIntervalMs?: number;
}

interface Entry {
  readonly model: string;
  readonly config: RolloutConfig;
  /** `<model>:<hash of the rollout config>`: the state's name in the store. */
  readonly key: string;
  /** Unknown until read from a shared store (the data plane then gets the safe split: all on stable). */
  state: RolloutState | undefined;
  inSync: boolean;
  cancelEvaluation: Cancel | undefined;
}

const live = (s: RolloutState | undefined): s is RolloutState => s !== undefined && (s.status === 'running' || s.status === 'paused');

function keyOf(model: string, config: RolloutConfig): string {
  return `${model}:${createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16)}`;
}

const EMPTY_SNAPSHOT = (phaseId: number): SignalSnapshot => ({ phaseId, phaseCompared: 0, buckets: [] });

export class RolloutManager {
  readonly #o: RolloutManagerOptions;
  readonly #entries = new Map<string, Entry>();
  #serial: Promise<unknown> = Promise.resolve();
  #cancelSync: Cancel | undefined;
  #closed = false;

  private constructor(options: RolloutManagerOptions) {
    this.#o = options;
  }

  /** Starts the rollouts of the gateway's config and follows its reloads. */
  static async start(options: RolloutManagerOptions): Promise<RolloutManager> {
    const manager = new RolloutManager(options);
    manager.#reconcile(options.gateway.config);
    options.gateway.onApplied((config) => manager.#reconcile(config));
    // A store of this replica's own forgets rollouts whose section changed or went away while the gateway was down.
    const retain = options.store.retainOnly?.bind(options.store);
    if (retain) await manager.#serialized(() => retain([...manager.#entries.values()].map((e) => e.key)));
    if (options.store.mode !== 'local') {
      await manager.#serialized(() => manager.#sync());
      manager.#armSync();
    }
    await manager.idle();
    return manager;
  }

  get store(): RolloutStore {
    return this.#o.store;
  }

  /** Models with a rollout in the running config. */
  models(): string[] {
    return [...this.#entries.keys()];
  }

  view(model: string): RolloutView {
    const entry = this.#entry(model);
    if (!entry.state)
      throw new GatewayError(
        'GW_ERR_ROLLOUT_STORE_UNAVAILABLE',
        `the shared state of model '${model}''s rollout has not been read yet: ${this.#o.store.mode} store unreachable`,
      );
    return this.#view(entry, entry.state);
  }

  views(): RolloutView[] {
    return [...this.#entries.values()].filter((e) => e.state).map((e) => this.#view(e, e.state!));
  }

  /** An operator's pause, resume, promote or abort; answers with the new state. */
  act(model: string, action: OperatorAction, options: { full?: boolean } = {}): Promise<RolloutView> {
    const entry = this.#entry(model);
    return this.#serialized(async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const current = this.#shared ? await this.#o.store.read(entry.key) : entry.state;
        if (!current) throw new GatewayError('GW_ERR_ROLLOUT_STORE_UNAVAILABLE', `model '${model}''s rollout has no state in the store yet; try again`);
        const next = applyAction(entry.config, current, action, this.#o.clock.now(), options);
        if (await this.#o.store.compareAndSet(entry.key, current.revision, next)) {
          this.#commit(entry, next, true);
          return this.#view(entry, next);
        }
      }
      throw new GatewayError('GW_ERR_ROLLOUT_CONFLICT', `model '${model}''s rollout kept changing under this ${action}; look at its state and try again`);
    });
  }

  /** Resolves once no evaluation, sync or action is running (tests advance a manual clock, then wait for this). */
  async idle(): Promise<void> {
    let seen: Promise<unknown> | undefined;
    while (seen !== this.#serial) {
      seen = this.#serial;
      await seen;
    }
  }

  /** Stops every timer; the data plane keeps the last weights until it stops too. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelSync?.();
    for (const e of this.#entries.values()) e.cancelEvaluation?.();
    await this.idle();
    await this.#o.store.close();
  }

  get #shared(): boolean {
    return this.#o.store.mode !== 'local';
  }

  #entry(model: string): Entry {
    const entry = this.#entries.get(model);
    if (entry) return entry;
    if (this.#o.gateway.config.models[model]) throw new GatewayError('GW_ERR_NO_ROLLOUT', `model '${model.slice(0, 128)}' has no rollout configured`);
    throw new GatewayError('GW_ERR_MODEL_NOT_FOUND', `unknown model '${model.slice(0, 128)}'`);
  }

  #view(entry: Entry, state: RolloutState): RolloutView {
    return rolloutView(entry.model, entry.config, state, this.#coordination(entry), this.#nextEvaluationAt(entry.config, state));
  }

  #coordination(entry: Entry): RolloutView['coordination'] {
    const store = this.#o.store;
    return { mode: store.mode, replica: store.replicaId, leader: store.isLeader(), inSync: entry.inSync, ...store.durability };
  }

  #nextEvaluationAt(config: RolloutConfig, state: RolloutState): number | null {
    if (!live(state)) return null;
    return (state.lastEvaluation?.at ?? state.phaseStartedAt) + config.evaluationIntervalMs;
  }

  #serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(work, work);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  /** Starts rollouts the config adds or changes and ends the ones it removes. Runs right after a config is applied. */
  #reconcile(config: GatewayConfig): void {
    for (const [model, entry] of this.#entries) {
      const wanted = config.models[model]?.rollout;
      if (wanted && keyOf(model, wanted) === entry.key) continue;
      entry.cancelEvaluation?.();
      this.#entries.delete(model);
      // The same section coming back later is a new rollout, not this one resumed.
      void this.#serialized(() => this.#o.store.forget(entry.key));
      this.#o.signals.unwatch(model);
      this.#o.gateway.setRolloutShadow(model, undefined);
      this.#o.gateway.setRolloutRouting(model, undefined);
      if (!wanted) this.#o.log.info({ event: 'rollout.removed', model }, `rollout ${model}: removed from the config; the config's weights apply`);
    }
    for (const [model, m] of Object.entries(config.models)) {
      if (!m.rollout || this.#entries.has(model)) continue;
      const entry: Entry = { model, config: m.rollout, key: keyOf(model, m.rollout), state: undefined, inSync: false, cancelEvaluation: undefined };
      this.#entries.set(model, entry);
      this.#applyEffects(entry); // all on stable until the state is known
      void this.#serialized(() => this.#adoptOrCreate(entry)).catch((err: unknown) =>
        this.#o.log.error({ err, model }, `rollout ${model}: cannot read its state`),
      );
    }
  }

  /** Reads the entry's state from the store, creating the initial one if there is none. */
  async #adoptOrCreate(entry: Entry): Promise<void> {
    if (this.#entries.get(entry.model) !== entry) return;
    const store = this.#o.store;
    let current: RolloutState | undefined;
    try {
      current = await store.read(entry.key);
      if (!current) {
        const initial = initialState(this.#o.clock.now());
        if (await store.compareAndSet(entry.key, undefined, initial)) return this.#commit(entry, initial, true);
        current = await store.read(entry.key);
      }
    } catch (err) {
      entry.inSync = false;
      throw err;
    }
    if (current) {
      if (entry.state === undefined && current.revision > 1) this.#logResumed(entry, current);
      this.#commit(entry, current, false);
    }
  }

  /** A rollout picked up where it was (a restart, with a state file or Redis): one line, not a decision. */
  #logResumed(entry: Entry, state: RolloutState): void {
    const { kept, stateFile } = this.#o.store.durability;
    const from = kept === 'file' ? `the state file ${stateFile}` : 'the shared state';
    this.#o.log.info(
      { event: 'rollout.resumed', model: entry.model, status: state.status, phase: state.phase, step: state.step, revision: state.revision },
      `rollout ${entry.model}: resumed from ${from}: ${rolloutView(entry.model, entry.config, state, this.#coordination(entry), null).position}, ${state.status}`,
    );
  }

  /** Makes `state` the entry's, applies it to the data plane, and logs and counts it when this replica decided it. */
  #commit(entry: Entry, state: RolloutState, decidedHere: boolean): void {
    if (this.#entries.get(entry.model) !== entry) return; // removed by a reload meanwhile
    const changed = entry.state?.revision !== state.revision;
    entry.state = state;
    entry.inSync = true;
    if (changed) this.#applyEffects(entry);
    if (decidedHere) this.#record(entry, state.lastDecision);
    else if (changed) this.#o.log.debug({ model: entry.model, revision: state.revision }, `rollout ${entry.model}: following the shared state`);
    this.#armEvaluation(entry);
  }

  #applyEffects(entry: Entry): void {
    const { model, config, state } = entry;
    const effects = state ? effectsOf(config, state) : { weights: { [config.stable]: 100 }, shadowPercent: 0, failover: false };
    this.#o.gateway.setRolloutRouting(model, {
      weights: effects.weights,
      failover: effects.failover ? { candidate: config.candidate, stable: config.stable } : undefined,
    });
    this.#o.gateway.setRolloutShadow(model, effects.shadowPercent > 0 ? { version: config.candidate, percent: effects.shadowPercent } : undefined);
    if (state && live(state))
      this.#o.signals.watch(model, { stable: config.stable, candidate: config.candidate, windowMs: config.windowMs, phaseId: state.phaseId });
    else this.#o.signals.unwatch(model);
  }

  /** One structured log event and one counter increment per decision. */
  #record(entry: Entry, d: Decision): void {
    const effects = effectsOf(entry.config, entry.state!);
    const level = d.decision === 'rollback' || d.decision === 'abort' ? 'warn' : 'info';
    this.#o.log[level](
      {
        event: 'rollout.decision',
        model: entry.model,
        decision: d.decision,
        actor: d.actor,
        reason: d.reason,
        from: d.from,
        to: d.to,
        weights: effects.weights,
        shadowPercent: effects.shadowPercent,
        revision: entry.state!.revision,
        replica: this.#o.store.replicaId,
        ...(d.gates
          ? { gates: Object.fromEntries(d.gates.map((g) => [g.gate, { status: g.status, value: g.value, limit: g.limit, samples: g.samples }])) }
          : {}),
      },
      `rollout ${entry.model}: ${d.decision}: ${d.reason}`,
    );
    this.#o.metrics?.rolloutDecisions.inc({ model: entry.model, decision: d.decision, actor: d.actor });
  }

  #armEvaluation(entry: Entry): void {
    entry.cancelEvaluation?.();
    entry.cancelEvaluation = undefined;
    const at = entry.state && this.#nextEvaluationAt(entry.config, entry.state);
    if (this.#closed || at === undefined || at === null) return;
    entry.cancelEvaluation = this.#o.clock.after(Math.max(0, at - this.#o.clock.now()), () => {
      entry.cancelEvaluation = undefined;
      void this.#serialized(() => this.#evaluate(entry)).catch((err: unknown) => {
        this.#o.log.warn({ err, model: entry.model }, `rollout ${entry.model}: evaluation failed; trying again next interval`);
        if (this.#entries.get(entry.model) === entry && !entry.cancelEvaluation) this.#retryLater(entry);
      });
    });
  }

  #retryLater(entry: Entry): void {
    if (this.#closed) return;
    entry.cancelEvaluation = this.#o.clock.after(entry.config.evaluationIntervalMs, () => {
      entry.cancelEvaluation = undefined;
      void this.#serialized(() => this.#evaluate(entry)).catch(() => this.#retryLater(entry));
    });
  }

  /** The leader judges the gates on every replica's samples and decides; other replicas only follow. */
  async #evaluate(entry: Entry): Promise<void> {
    if (this.#closed || this.#entries.get(entry.model) !== entry || !live(entry.state)) return;
    const store = this.#o.store;
    if (!store.isLeader()) {
      // A follower keeps the timer going so it can take over on time if it becomes the leader.
      if (!entry.cancelEvaluation) this.#retryLater(entry);
      return;
    }
    const current = this.#shared ? await store.read(entry.key) : entry.state;
    if (!live(current) || current.revision !== entry.state.revision) {
      if (current) this.#commit(entry, current, false);
      return;
    }
    const own = this.#o.signals.snapshot(entry.model) ?? EMPTY_SNAPSHOT(current.phaseId);
    const snapshots = await store.collectSignals(entry.key, own);
    const now = this.#o.clock.now();
    const next = evaluate(entry.config, current, mergeWindow(snapshots, current.phaseId, now, entry.config.windowMs), now);
    if (await store.compareAndSet(entry.key, current.revision, next)) this.#commit(entry, next, true);
    else await this.#adoptOrCreate(entry);
  }

  #armSync(): void {
    if (this.#closed) return;
    this.#cancelSync = this.#o.clock.after(this.#o.syncIntervalMs ?? 1_000, () => {
      void this.#serialized(() => this.#sync()).finally(() => this.#armSync());
    });
  }

  /** Shared store: renew or take the lease, publish this replica's samples, follow the shared state. Never throws. */
  async #sync(): Promise<void> {
    if (this.#closed) return;
    const store = this.#o.store;
    const wasLeader = store.isLeader();
    const leader = await store.lead();
    if (leader !== wasLeader)
      this.#o.log.info(
        { event: 'rollout.leadership', replica: store.replicaId, leader },
        leader ? 'rollouts: this replica now leads' : 'rollouts: this replica no longer leads',
      );
    for (const entry of [...this.#entries.values()]) {
      const own = this.#o.signals.snapshot(entry.model);
      if (own) await store.publishSignals(entry.key, own);
      try {
        await this.#adoptOrCreate(entry);
      } catch (err) {
        this.#o.log.debug({ err, model: entry.model }, `rollout ${entry.model}: shared state unreachable; keeping the last one read`);
      }
    }
  }
}
