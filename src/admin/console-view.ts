// What the console shows, built once per tick for every open stream: each model's versions with weights, live
// figures, breaker and concurrency; shadow agreement (the same figures as GET /admin/models/{m}/shadow); rollouts;
// recent reloads and audit entries; the running config's hash.

import type { AuditEntry, AuditTrail } from './audit.js';
import type { ChartPoint, LiveStats, VersionLive } from './live-stats.js';
import { configHash } from './routes.js';
import type { ReloadReport } from '../reload/changes.js';
import type { GatewayController } from '../reload/controller.js';
import type { ModelView, VersionView } from '../reload/views.js';
import type { GuardRegistry } from '../resilience/registry.js';
import type { GuardSnapshot } from '../resilience/guard.js';
import type { RolloutManager } from '../rollout/manager.js';
import type { RolloutView } from '../rollout/view.js';
import type { PairSummary } from '../shadow/stats.js';

export const RECENT_RELOADS = 10;
export const RECENT_AUDIT = 15;

export interface ConsoleVersion extends VersionView {
  /** Breaker and concurrency cap (null when the version has no guard, e.g. just added). */
  guard: GuardSnapshot | null;
  /** Live figures over the last minute; null when metrics are off or before the second reading. */
  live: VersionLive | null;
}

export interface ConsoleModel extends Omit<ModelView, 'versions'> {
  versions: ConsoleVersion[];
  /** Comparison statistics per pair: exactly GET /admin/models/{m}/shadow's `pairs`. */
  shadowPairs: PairSummary[];
  rollout: RolloutView | null;
  /** Set when the rollout's state cannot be read (a shared store unreachable). */
  rolloutError?: string;
}

export interface ConsoleSnapshot {
  at: string;
  gateway: {
    generation: number;
    configHash: string;
    configFile: string | null;
    startedAt: string;
    watching: boolean;
    /** False when telemetry.metrics.enabled is false: no live figures or charts (not zeros). */
    metrics: boolean;
    disagreementLog: { path: string; includeInputs: boolean } | null;
    audit: ReturnType<AuditTrail['stats']> | null;
  };
  models: ConsoleModel[];
  /** Newest first. */
  reloads: ReloadReport[];
  /** Newest first. */
  audit: AuditEntry[];
  /** The newest chart point per `model/version` (epoch s), appended by the page to its 15-minute history. */
  chart: { t: number; points: Record<string, ChartPoint> } | null;
}

/** Every reload attempt's report, kept as they happen (the controller itself keeps only the last two). */
export class ReloadHistory {
  readonly #reports: ReloadReport[] = [];
  readonly #listeners = new Set<() => void>();
  #stopped = false;

  constructor(controller: GatewayController) {
    this.#reports.push(controller.status().reload.lastAttempt);
    const follow = (): void => {
      void controller.nextReload().then((report) => {
        if (this.#stopped) return;
        this.#reports.push(report);
        if (this.#reports.length > RECENT_RELOADS) this.#reports.shift();
        for (const listener of this.#listeners) listener();
        follow();
      });
    };
    follow();
  }

  recent(): ReloadReport[] {
    return [...this.#reports].reverse();
  }

  onReload(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  stop(): void {
    this.#stopped = true;
  }
}

export interface ConsoleSources {
  controller: GatewayController;
  guards?: GuardRegistry;
  rollouts?: RolloutManager;
  live?: LiveStats;
  audit?: AuditTrail;
  reloads: ReloadHistory;
}

export function consoleSnapshot(src: ConsoleSources): ConsoleSnapshot {
  const { controller: c } = src;
  const status = c.status();
  const guards = src.guards?.snapshot() ?? {};
  const log = c.config.disagreementLog;
  return {
    at: new Date().toISOString(),
    gateway: {
      generation: c.generation,
      configHash: configHash(c.config),
      configFile: status.configFile,
      startedAt: status.startedAt,
      watching: status.watching,
      metrics: src.live !== undefined,
      disagreementLog: log && c.shadow.disagreementLog ? { path: c.shadow.disagreementLog.path, includeInputs: log.includeInputs } : null,
      audit: src.audit?.stats() ?? null,
    },
    models: c.models().map((m) => consoleModel(src, m, guards[m.name] ?? {})),
    reloads: src.reloads.recent(),
    audit: src.audit?.recent(RECENT_AUDIT) ?? [],
    chart: src.live?.latestPoint() ?? null,
  };
}

function consoleModel(src: ConsoleSources, m: ModelView, guards: Record<string, GuardSnapshot>): ConsoleModel {
  const { versions, ...rest } = m;
  let rollout: RolloutView | null = null;
  let rolloutError: string | undefined;
  if (src.rollouts?.models().includes(m.name)) {
    try {
      rollout = src.rollouts.view(m.name);
    } catch (err) {
      rolloutError = (err as Error).message;
    }
  }
  return {
    ...rest,
    versions: versions.map((v) => ({ ...v, guard: guards[v.version] ?? null, live: src.live?.live(m.name, v.version) ?? null })),
    shadowPairs: src.controller.shadowStats(m.name).pairs,
    rollout,
    ...(rolloutError !== undefined ? { rolloutError } : {}),
  };
}
