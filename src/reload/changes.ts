// What a reload changes and what it reports: the report's shape, the keys that need a restart, the rollout weights a
// new config keeps, and where relative paths resolve.

import path from 'node:path';
import type { GatewayConfig } from '../config/schema.js';
import type { DroppedOverride, RolloutRouting } from '../routing/table.js';

/** Rollout weights a reloaded config keeps: the model still has a rollout and every version it weighs. */
export function keptRollouts(rollouts: ReadonlyMap<string, RolloutRouting>, config: GatewayConfig): Map<string, RolloutRouting> {
  const kept = new Map<string, RolloutRouting>();
  for (const [model, r] of rollouts) {
    const m = config.models[model];
    if (m?.rollout && Object.keys(r.weights).every((v) => v in m.versions)) kept.set(model, r);
  }
  return kept;
}

export type ReloadTrigger = 'start' | 'file-change' | 'admin';

export interface ReloadReport {
  trigger: ReloadTrigger;
  at: string;
  /** applied: a new generation serves; unchanged: nothing to do; rejected: invalid config; failed: could not start it. */
  outcome: 'applied' | 'unchanged' | 'rejected' | 'failed';
  /** The generation serving after this attempt. */
  generation: number;
  backends?: { added: string[]; reused: string[]; retired: string[] };
  droppedOverrides?: DroppedOverride[];
  /** Changed keys that only take effect after a restart (listen addresses). */
  restartRequired?: string[];
  error?: string;
  problems?: string[];
}

/** Keys read once at start-up; a reload that changes them logs and reports it instead of pretending. */
export function restartOnlyChanges(before: GatewayConfig, after: GatewayConfig): string[] {
  const changed = (Object.keys(after.server) as (keyof GatewayConfig['server'])[])
    .filter((k) => before.server[k] !== after.server[k])
    .map((k) => `server.${k}`);
  for (const k of ['enabled', 'host', 'port'] as const) if (before.admin[k] !== after.admin[k]) changed.push(`admin.${k}`);
  for (const k of ['audit', 'console'] as const) if (JSON.stringify(before.admin[k]) !== JSON.stringify(after.admin[k])) changed.push(`admin.${k}`);
  if (JSON.stringify(before.coordination) !== JSON.stringify(after.coordination)) changed.push('coordination');
  if (JSON.stringify(before.rolloutState) !== JSON.stringify(after.rolloutState)) changed.push('rolloutState');
  return changed;
}

/** Relative paths in the config resolve against the config file's directory (the working directory without a file). */
export function baseDirOf(configFile: string | undefined): string {
  return configFile ? path.dirname(path.resolve(configFile)) : process.cwd();
}
