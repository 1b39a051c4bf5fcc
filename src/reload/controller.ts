// The control plane's single writer: applies a config (at start and on reload) and runtime weight changes, swapping atomically.

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { ConfigError, loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { ConfigWatcher, contentHash } from '../config/watch.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { BackendFactory } from '../models/catalog.js';
import type { GatewayState } from '../pipeline/generation.js';
import { reconcileOverrides, RoutingTable, type RolloutRouting, type RouteOptions, type WeightOverride } from '../routing/table.js';
import { completeWeights, sameWeights, weightProblems, type Rng } from '../routing/weighted.js';
import { ShadowRuntime } from '../shadow/runtime.js';
import { gatewayChain, type ChainState } from '../stages/chain.js';
import { BackendPool, type PreparedBackends } from './backend-pool.js';
import { baseDirOf, keptRollouts, restartOnlyChanges, type ReloadReport, type ReloadTrigger } from './changes.js';
import { LiveGeneration } from './generation.js';
import { modelView, shadowView, type ModelView, type ShadowView } from './views.js';

export type { ReloadReport, ReloadTrigger } from './changes.js';

export interface ControllerOptions {
  backendFactory: BackendFactory;
  /** The file the config came from: enables reloads. */
  configFile?: string;
  /** Re-applied to every reloaded config (command-line flags such as --port must keep winning over the file). */
  adjustConfig?: (config: GatewayConfig) => void;
  env?: NodeJS.ProcessEnv;
  route?: RouteOptions;
  shadowRng?: Rng;
  /** Rate-limit store, auth counters, breakers and clock shared by every generation (created once per process). */
  security?: ChainState;
}

export class GatewayController {
  readonly state: GatewayState;
  readonly shadow: ShadowRuntime;
  readonly #log: Logger;
  readonly #options: ControllerOptions;
  readonly #pool: BackendPool;
  #live: LiveGeneration;
  #overrides = new Map<string, WeightOverride>();
  #rollouts = new Map<string, RolloutRouting>();
  readonly #appliedListeners: ((config: GatewayConfig) => void)[] = [];
  /** Replaced generations that may still have requests in flight. */
  #draining: LiveGeneration[] = [];
  readonly #retiring = new Set<Promise<void>>();
  #serial: Promise<unknown> = Promise.resolve();
  #watcher: ConfigWatcher | undefined;
  #watchStopped = false;
  #lastAttempt: ReloadReport;
  #lastApplied: ReloadReport;
  #reloadWaiters: ((report: ReloadReport) => void)[] = [];
  readonly startedAt = new Date();

  private constructor(live: LiveGeneration, state: GatewayState, pool: BackendPool, shadow: ShadowRuntime, log: Logger, options: ControllerOptions) {
    this.#live = live;
    this.state = state;
    this.#pool = pool;
    this.shadow = shadow;
    this.#log = log;
    this.#options = options;
    this.#lastAttempt = this.#lastApplied = { trigger: 'start', at: new Date().toISOString(), outcome: 'applied', generation: 1 };
  }

  /**
   * Loads and warms every backend, then builds generation 1. Rejects (with everything closed) if any cannot start.
   * `config` comes from loadConfig/parseConfig, which have already checked the files it reads and writes.
   */
  static async start(config: GatewayConfig, log: Logger, options: ControllerOptions): Promise<GatewayController> {
    const pool = new BackendPool(options.backendFactory, log);
    const prepared = await pool.prepare(config);
    prepared.commit();
    try {
      const shadow = new ShadowRuntime({
        log,
        ...(options.shadowRng ? { rng: options.shadowRng } : {}),
        ...(options.security?.rolloutSignals ? { signals: options.security.rolloutSignals } : {}),
      });
      const live = new LiveGeneration(1, config, prepared.catalog, new RoutingTable(config, prepared.catalog));
      const state: GatewayState = {
        current: {
          catalog: live.catalog,
          pipeline: live.counted(
            gatewayChain({ config, catalog: live.catalog, log, routing: live.routing, shadow, route: options.route, ...options.security }),
          ),
        },
        draining: false,
      };
      const controller = new GatewayController(live, state, pool, shadow, log, options);
      controller.#reconcileShadow(config);
      return controller;
    } catch (err) {
      await pool.close();
      throw err;
    }
  }

  get config(): GatewayConfig {
    return this.#live.config;
  }

  get generation(): number {
    return this.#live.number;
  }

  get configFile(): string | undefined {
    return this.#options.configFile;
  }

  /** Starts watching the config file when the config asks for it (and there is a file). */
  async watch(): Promise<void> {
    const file = this.#options.configFile;
    if (!file || !this.config.reload.watch || this.#watcher || this.#watchStopped) return;
    this.#watcher = new ConfigWatcher({
      file,
      settings: this.config.reload,
      log: this.#log,
      onChange: () => this.reloadFromFile('file-change').then(() => undefined),
    });
    await this.#watcher.start();
  }

  /** Stops watching for good (shutdown): no later reload restarts the watcher. */
  stopWatching(): void {
    this.#watchStopped = true;
    this.#watcher?.close();
  }

  /** The watcher, for tests that want to check now rather than wait for an event. */
  get watcher(): ConfigWatcher | undefined {
    return this.#watcher;
  }

  /** Re-reads the config file and applies it. Rejects with a GatewayError when it is invalid or cannot start. */
  reloadFromFile(trigger: ReloadTrigger): Promise<ReloadReport> {
    return this.#serialized(async () => {
      const file = this.#options.configFile;
      if (!file) throw new GatewayError('GW_ERR_RELOAD_UNAVAILABLE');
      let config: GatewayConfig;
      try {
        const hash = contentHash(await readFile(file));
        this.#watcher?.seen(hash);
        ({ config } = await loadConfig(file, this.#options.env ?? process.env));
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
        this.#record({ trigger, outcome: 'rejected', problems, error: 'the config file is invalid; the running config is unchanged' });
        this.#log.error({ file, problems, trigger }, 'config reload rejected: invalid config; the running config is unchanged');
        throw new GatewayError('GW_ERR_CONFIG_INVALID', `the config file is invalid; the running config is unchanged: ${problems.join('; ')}`);
      }
      this.#options.adjustConfig?.(config);
      return this.#apply(config, trigger);
    });
  }

  /** Resolves with the report of the next reload attempt, whatever triggers it (a file change, the admin API). */
  nextReload(): Promise<ReloadReport> {
    return new Promise((resolve) => this.#reloadWaiters.push(resolve));
  }

  /** Applies an already-validated config (tests and embedders: from parseConfig, which checks its files). */
  applyConfig(config: GatewayConfig, trigger: ReloadTrigger = 'admin'): Promise<ReloadReport> {
    return this.#serialized(() => this.#apply(config, trigger));
  }

  async #apply(config: GatewayConfig, trigger: ReloadTrigger): Promise<ReloadReport> {
    let prepared: PreparedBackends;
    try {
      prepared = await this.#pool.prepare(config);
    } catch (err) {
      const message = (err as Error).message;
      this.#record({ trigger, outcome: 'failed', error: message });
      this.#log.error({ err, trigger }, 'config reload failed; the running config is unchanged');
      throw new GatewayError('GW_ERR_RELOAD_FAILED', `reload failed; the running config is unchanged: ${message}`, { cause: err });
    }
    const before = this.#live;
    if (prepared.added.length === 0 && prepared.retired.length === 0 && JSON.stringify(config) === JSON.stringify(before.config)) {
      prepared.commit();
      return this.#record({ trigger, outcome: 'unchanged' });
    }
    const { kept, dropped } = reconcileOverrides(this.#overrides, config);
    const rollouts = keptRollouts(this.#rollouts, config);
    let live: LiveGeneration;
    let pipeline;
    try {
      live = new LiveGeneration(before.number + 1, config, prepared.catalog, new RoutingTable(config, prepared.catalog, kept, rollouts));
      pipeline = live.counted(
        gatewayChain({
          config,
          catalog: live.catalog,
          log: this.#log,
          routing: live.routing,
          shadow: this.shadow,
          route: this.#options.route,
          ...this.#options.security,
        }),
      );
    } catch (err) {
      await prepared.abandon();
      this.#record({ trigger, outcome: 'failed', error: (err as Error).message });
      throw new GatewayError('GW_ERR_RELOAD_FAILED', `reload failed; the running config is unchanged: ${(err as Error).message}`, { cause: err });
    }
    // Nothing below can fail: the swap is one assignment, and requests already running keep their generation.
    const retired = prepared.commit();
    this.#overrides = kept;
    this.#rollouts = rollouts;
    this.#live = live;
    this.state.current = { pipeline, catalog: live.catalog };
    before.retire();
    this.#draining = [...this.#draining, before];
    void before.drained.then(() => (this.#draining = this.#draining.filter((g) => g !== before)));
    // A retired backend may still be called by any older generation's requests, not only the one just replaced.
    const drained = Promise.all(this.#draining.map((g) => g.drained)).then(() => undefined);
    this.#track(this.#pool.retire(retired, drained, config.reload.drainTimeoutMs));
    this.#reconcileShadow(config);
    this.#log.level = config.logging.level;
    this.#applyWatchSettings(config);
    for (const d of dropped) this.#log.warn({ model: d.model, reason: d.reason }, 'runtime weight override dropped by reload');
    const restartRequired = restartOnlyChanges(before.config, config);
    if (restartRequired.length > 0) this.#log.warn({ keys: restartRequired }, 'these config changes take effect only after a restart');
    const report = this.#record({
      trigger,
      outcome: 'applied',
      backends: { added: prepared.added, reused: prepared.reused, retired: prepared.retired },
      ...(dropped.length > 0 ? { droppedOverrides: dropped } : {}),
      ...(restartRequired.length > 0 ? { restartRequired } : {}),
    });
    this.#log.info({ generation: live.number, trigger, backends: report.backends }, 'config applied');
    for (const listener of this.#appliedListeners) listener(config);
    return report;
  }

  /** Calls `listener` after every config a reload applies (the rollout manager reconciles its rollouts). */
  onApplied(listener: (config: GatewayConfig) => void): void {
    this.#appliedListeners.push(listener);
  }

  /** A rollout's mirror to its candidate (the RolloutPort lever; shadow state outlives generations). */
  setRolloutShadow(model: string, target: { readonly version: string; readonly percent: number } | undefined): void {
    this.shadow.setRolloutTarget(model, target);
  }

  /**
   * Sets (or with undefined, ends) the weights and failover a progressive rollout imposes on a model. Not serialized
   * with reloads: a reload reads the map when it builds its routing, so the latest call always wins.
   */
  setRolloutRouting(model: string, rollout: RolloutRouting | undefined): void {
    if (!this.#live.routing.get(model)) return;
    if (rollout) this.#rollouts.set(model, rollout);
    else this.#rollouts.delete(model);
    this.#live.routing.setRollout(model, rollout);
  }

  /** Manual weights would fight the rollout that owns them. */
  #refuseDuringRollout(model: string): void {
    if (this.#live.config.models[model]?.rollout) {
      throw new GatewayError(
        'GW_ERR_ROLLOUT_CONFLICT',
        `model '${model}' is under a progressive rollout, which owns its weights: use \`model-gateway rollout\` (pause, promote, abort), or remove models.${model}.rollout from the config`,
      );
    }
  }

  /** Sets a model's weights at runtime (PUT /admin/models/{m}/weights); versions not named get 0. */
  setWeights(model: string, weights: unknown): Promise<ModelView> {
    return this.#serialized(async () => {
      const routing = this.#routing(model);
      this.#refuseDuringRollout(model);
      const problems = weightProblems(weights, routing.versions);
      if (problems.length > 0) throw new GatewayError('GW_ERR_INVALID_WEIGHTS', `invalid weights for model '${model}': ${problems.join('; ')}`);
      const complete = completeWeights(weights as Record<string, number>, routing.versions);
      const before = routing.choice?.weights;
      // Setting exactly the config's weights is "back to config", not an override that a later reload would keep.
      const override: WeightOverride | undefined =
        routing.configWeights && sameWeights(complete, routing.configWeights)
          ? undefined
          : { weights: complete, configWeights: routing.configWeights, setAt: new Date() };
      if (override) this.#overrides.set(model, override);
      else this.#overrides.delete(model);
      const updated = this.#live.routing.setOverride(model, override);
      this.#log.info({ model, from: before, to: complete, source: override ? 'override' : 'config' }, 'weights changed at runtime');
      return modelView(this.#live, updated, this.shadow);
    });
  }

  /** Drops a runtime override: the config's weights apply again. */
  clearWeights(model: string): Promise<ModelView> {
    return this.#serialized(async () => {
      this.#routing(model);
      this.#refuseDuringRollout(model);
      this.#overrides.delete(model);
      const updated = this.#live.routing.setOverride(model, undefined);
      this.#log.info({ model }, 'runtime weight override cleared');
      return modelView(this.#live, updated, this.shadow);
    });
  }

  models(): ModelView[] {
    return this.#live.routing.all().map((r) => modelView(this.#live, r, this.shadow));
  }

  model(name: string): ModelView {
    return modelView(this.#live, this.#routing(name), this.shadow);
  }

  shadowStats(model: string): ShadowView {
    this.#routing(model);
    return shadowView(this.#live, model, this.shadow);
  }

  resetShadowStats(model: string): ShadowView {
    this.#routing(model);
    this.shadow.stats.reset(model);
    return shadowView(this.#live, model, this.shadow);
  }

  status(): {
    generation: number;
    configFile: string | null;
    startedAt: string;
    watching: boolean;
    reload: { lastAttempt: ReloadReport; lastApplied: ReloadReport };
  } {
    return {
      generation: this.#live.number,
      configFile: this.#options.configFile ?? null,
      startedAt: this.startedAt.toISOString(),
      watching: this.#watcher !== undefined,
      reload: { lastAttempt: this.#lastAttempt, lastApplied: this.#lastApplied },
    };
  }

  /** Resolves once no reload is running and every retired backend has been closed. */
  async settled(): Promise<void> {
    await this.#serial;
    while (this.#retiring.size > 0) await Promise.allSettled([...this.#retiring]);
  }

  /** Stops watching, aborts shadow calls, and closes every backend (after the data plane has drained). */
  async close(): Promise<void> {
    this.#watcher?.close();
    await this.#serialized(async () => undefined).catch(() => undefined);
    await this.shadow.close();
    await Promise.allSettled([...this.#retiring]);
    await this.#pool.close();
  }

  #routing(model: string) {
    const routing = this.#live.routing.get(model);
    if (!routing) throw new GatewayError('GW_ERR_MODEL_NOT_FOUND', `unknown model '${model.slice(0, 128)}'`);
    return routing;
  }

  /** Reloads and weight changes run one at a time, so neither can interleave with the other. */
  #serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(work, work);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  #record(partial: Omit<ReloadReport, 'at' | 'generation'>): ReloadReport {
    const report: ReloadReport = { ...partial, at: new Date().toISOString(), generation: this.#live.number };
    this.#lastAttempt = report;
    if (report.outcome === 'applied' || report.outcome === 'unchanged') this.#lastApplied = report;
    for (const resolve of this.#reloadWaiters.splice(0)) resolve(report);
    return report;
  }

  #track(work: Promise<void>): void {
    const tracked = work.catch((err: unknown) => this.#log.error({ err }, 'closing retired backends failed'));
    this.#retiring.add(tracked);
    void tracked.finally(() => this.#retiring.delete(tracked));
  }

  /** `reload.watch` can be switched either way by a reload; the other reload settings apply to the running watcher. */
  #applyWatchSettings(config: GatewayConfig): void {
    if (!config.reload.watch && this.#watcher) {
      this.#watcher.close();
      this.#watcher = undefined;
    } else if (this.#watcher) {
      this.#watcher.configure(config.reload);
    } else {
      this.watch().catch((err: unknown) => this.#log.error({ err }, 'cannot watch the config file'));
    }
  }

  /** The shadow state follows the config: stale pairs' statistics go, the disagreement log is swapped if it changed. */
  #reconcileShadow(config: GatewayConfig): void {
    const previous = this.shadow.reconcile(config, baseDirOf(this.#options.configFile));
    if (previous) this.#track(previous.close());
  }
}
