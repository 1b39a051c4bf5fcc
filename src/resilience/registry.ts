// The guards (breaker + load shedder) of every served version, kept across config generations while a version's
// backend instance and settings are unchanged: a reload neither resets an open breaker nor doubles a concurrency cap.

import type { Logger } from 'pino';
import type { Backend } from '../backends/backend.js';
import type { GatewayConfig } from '../config/schema.js';
import type { ModelCatalog, ServedVersion } from '../models/catalog.js';
import { systemClock, type Clock } from '../core/clock.js';
import { VersionGuard, type GuardSnapshot } from './guard.js';

interface GuardTotals {
  opened: number;
  shed: number;
}

function countsOf(guard: VersionGuard): GuardTotals {
  const s = guard.snapshot();
  return { opened: s.breaker.opened, shed: s.limits.shed };
}

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
  /** Guards a reload replaced, still serving the old generation's calls until closed: guard → `model/version`. */
  readonly #retiring = new Map<VersionGuard, string>();
  /** The final counts of closed guards, per `model/version`: part of the version's totals for good. */
  readonly #closedTotals = new Map<string, GuardTotals>();
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
    const kept = new Set(next.values());
    const retired = [...this.#entries].filter(([, e]) => !kept.has(e)).map(([key, e]) => ({ key, guard: e.guard }));
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

  /**
   * Counts since start per version, over every guard it ever had: a reload that replaces a version's guard (new
   * limits or breaker settings, a new backend) or removes the version never makes them go down — they are exported as
   * Prometheus counters (model_gateway_breaker_opened_total, model_gateway_shed_total), which must only increase.
   */
  totals(): { model: string; version: string; opened: number; shed: number }[] {
    const sums = new Map<string, GuardTotals>();
    const add = (key: string, t: GuardTotals) => {
      const sum = sums.get(key) ?? { opened: 0, shed: 0 };
      sums.set(key, { opened: sum.opened + t.opened, shed: sum.shed + t.shed });
    };
    for (const [key, t] of this.#closedTotals) add(key, t);
    for (const [guard, key] of this.#retiring) add(key, countsOf(guard));
    for (const [key, entry] of this.#entries) add(key, countsOf(entry.guard));
    return [...sums].map(([key, t]) => {
      const slash = key.indexOf('/');
      return { model: key.slice(0, slash), version: key.slice(slash + 1), ...t };
    });
  }

  /** The current guard of one version, if it is served. */
  get(model: string, version: string): VersionGuard | undefined {
    return this.#entries.get(`${model}/${version}`)?.guard;
  }

  /** Shuts every breaker down (gateway stop). */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) entry.guard.close();
    for (const guard of this.#retiring.keys()) guard.close();
    this.#retiring.clear();
    this.#entries = new Map();
  }

  #retireLater(guards: { key: string; guard: VersionGuard }[], afterMs: number): void {
    if (guards.length === 0) return;
    if (this.#closed) {
      for (const { guard } of guards) guard.close();
      return;
    }
    for (const { key, guard } of guards) this.#retiring.set(guard, key);
    // A plain unref'd timer: the drain period is wall-clock policy, not something tests drive.
    setTimeout(() => {
      for (const { key, guard } of guards) {
        const last = countsOf(guard);
        const sum = this.#closedTotals.get(key) ?? { opened: 0, shed: 0 };
        this.#closedTotals.set(key, { opened: sum.opened + last.opened, shed: sum.shed + last.shed });
        this.#retiring.delete(guard);
        guard.close();
      }
    }, afterMs).unref();
  }
}
