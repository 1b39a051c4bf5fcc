// The guards (breaker + load shedder) of every served version, kept across config generations while a version's
// backend instance and settings are unchanged: a reload neither resets an open breaker nor doubles a concurrency cap.

import type { Logger } from 'pino';
import type { Backend } from '../backends/backend.js';
import type { GatewayConfig } from '../config/schema.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import { systemClock, type Clock } from '../core/clock.js';
import { VersionGuard, type GuardSnapshot } from './guard.js';

interface Entry {
  backend: Backend;
  settings: string;
  guard: VersionGuard;
}

/** The guards of one config generation, looked up per request by the version serving it. */
export class GuardSet {
  readonly #byVersion: ReadonlyMap<ServedVersion, VersionGuard>;

  constructor(byVersion: ReadonlyMap<ServedVersion, VersionGuard>) {
    this.#byVersion = byVersion;
  }

  get(target: ServedVersion): VersionGuard | undefined {
    return this.#byVersion.get(target);
  }
}

export class GuardRegistry {
  readonly #log: Logger;
  readonly #clock: Clock;
  #entries = new Map<string, Entry>();
  readonly #retiring = new Set<VersionGuard>();
  #closed = false;

  constructor(opts: { log: Logger; clock?: Clock }) {
    this.#log = opts.log;
    this.#clock = opts.clock ?? systemClock;
  }

  /**
   * The guards for a generation's catalog. A version keeps its guard while its backend object (reused by reload when
   * its config is unchanged) and its `limits`/`breaker` settings are the same; otherwise it gets a fresh one. Guards
   * no longer used are shut down after `reload.drainTimeoutMs`, once the old generation can no longer need them.
   */
  bind(config: GatewayConfig, catalog: ModelCatalog): GuardSet {
    const next = new Map<string, Entry>();
    const byVersion = new Map<ServedVersion, VersionGuard>();
    for (const model of catalog.all()) {
      for (const served of model.versions.values()) {
        const versionConfig = config.models[model.name]?.versions[served.version];
        if (!versionConfig) continue;
        const key = `${model.name}/${served.version}`;
        const settings = JSON.stringify({ limits: versionConfig.limits, breaker: versionConfig.breaker });
        const current = this.#entries.get(key);
        const entry =
          current && current.backend === served.backend && current.settings === settings
            ? current
            : {
                backend: served.backend,
                settings,
                guard: new VersionGuard(
                  versionConfig,
                  `model ${model.name} version ${served.version}`,
                  this.#log.child({ model: model.name, version: served.version }),
                  this.#clock,
                ),
              };
        next.set(key, entry);
        byVersion.set(served, entry.guard);
      }
    }
    const retired = [...this.#entries.values()].filter((e) => ![...next.values()].includes(e)).map((e) => e.guard);
    this.#entries = next;
    this.#retireLater(retired, config.reload.drainTimeoutMs);
    return new GuardSet(byVersion);
  }

  /** Breaker state and load of every current version: model → version → snapshot (for the admin API). */
  snapshot(): Record<string, Record<string, GuardSnapshot>> {
    const out: Record<string, Record<string, GuardSnapshot>> = {};
    for (const [key, entry] of this.#entries) {
      const slash = key.indexOf('/');
      (out[key.slice(0, slash)] ??= {})[key.slice(slash + 1)] = entry.guard.snapshot();
    }
    return out;
  }

  /** The current guard of one version, if it is served. */
  get(model: string, version: string): VersionGuard | undefined {
    return this.#entries.get(`${model}/${version}`)?.guard;
  }

  /** Shuts every breaker down (gateway stop). */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) entry.guard.close();
    for (const guard of this.#retiring) guard.close();
    this.#retiring.clear();
    this.#entries = new Map();
  }

  #retireLater(guards: VersionGuard[], afterMs: number): void {
    if (guards.length === 0) return;
    if (this.#closed) {
      for (const guard of guards) guard.close();
      return;
    }
    for (const guard of guards) this.#retiring.add(guard);
    // A plain unref'd timer: the drain period is wall-clock policy, not something tests drive.
    setTimeout(() => {
      for (const guard of guards) {
        guard.close();
        this.#retiring.delete(guard);
      }
    }, afterMs).unref();
  }
}
